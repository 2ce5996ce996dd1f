"""A backup read survives transient errors mid-stream: it resumes after its cursor (fake server)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterator

import grpc
import pytest

from firebackup.errors import SourceAccessDenied, SourceUnavailable
from firebackup.firestore import protos
from firebackup.firestore.documents import document_name, run_query_document
from firebackup.firestore.grpc import FirestoreConnection
from firebackup.firestore.reader import DocRange, SnapshotReader, name_sort_key
from firebackup.retry import RetryPolicy

READ_TIME = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


class RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return f"injected {self._code.name}\nsecond line"


class FakeCall:
    """A server stream: the given responses, then (optionally) an error instead of the rest."""

    def __init__(self, responses: list[bytes], fail_after: int | None, code: grpc.StatusCode) -> None:
        self._it: Iterator[bytes] = iter(responses)
        self._left = fail_after
        self._code = code
        self.cancelled = False

    def __iter__(self) -> "FakeCall":
        return self

    def __next__(self) -> bytes:
        if self._left == 0:
            raise RpcError(self._code)
        if self._left is not None:
            self._left -= 1
        return next(self._it)

    def cancel(self) -> None:
        self.cancelled = True


class FaultyChannel(grpc.Channel):
    """A gRPC channel to a fake Firestore that serves RunQuery over a sorted list of documents;
    query number k (1-based) fails after faults[k] responses. Nothing else is served."""

    def __init__(self, documents_path: str, names: list[str], faults: dict[int, int],
                 code: grpc.StatusCode, progress_responses: bool) -> None:
        self.names = sorted((f"{documents_path}/{n}" for n in names), key=name_sort_key)
        self.faults, self.code, self.progress_responses = faults, code, progress_responses
        self.queries: list[Any] = []
        self.calls: list[FakeCall] = []

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        assert method == "/google.firestore.v1.Firestore/RunQuery"
        return self._run_query

    def _run_query(self, request: bytes, *, metadata: Any = None, timeout: float | None = None) -> FakeCall:
        query = protos.RunQueryRequest.FromString(request)
        self.queries.append(query)
        sq = query.structured_query
        names = self.names
        if sq.HasField("start_at"):
            cursor = sq.start_at.values[0].reference_value
            key = name_sort_key(cursor)
            names = [n for n in names if name_sort_key(n) > key or (sq.start_at.before and n == cursor)]
        if sq.HasField("limit"):
            names = names[: sq.limit.value]
        read_time = query.read_time.SerializeToString()
        responses = []
        if self.progress_responses:  # a response with no document: only the read_time
            responses.append(b"\x1a" + bytes([len(read_time)]) + read_time)
        for n in names:
            doc = protos.Document(name=n).SerializeToString()
            responses.append(b"\x0a" + bytes([len(doc)]) + doc + b"\x1a" + bytes([len(read_time)]) + read_time)
        call = FakeCall(responses, self.faults.get(len(self.queries)), self.code)
        self.calls.append(call)
        return call

    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def stream_unary(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def stream_stream(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def subscribe(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    def unsubscribe(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class FaultyFirestore(FirestoreConnection):
    """A real FirestoreConnection over a FaultyChannel; .queries and .calls record the traffic."""

    def __init__(self, names: list[str], faults: dict[int, int], code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
                 *, progress_responses: bool = False) -> None:
        channel = FaultyChannel("projects/p/databases/(default)/documents", names, faults, code, progress_responses)
        super().__init__(channel, project="p", host="fake", emulator=True)
        self.queries, self.calls = channel.queries, channel.calls


NAMES = [f"c/d{i:02d}" for i in range(10)]


def read(conn: FaultyFirestore, *, after: str | None = None, limit: int | None = None, attempts: int = 5) -> list[str]:
    sleeps: list[float] = []
    reader = SnapshotReader(conn, READ_TIME, retry=RetryPolicy(attempts=attempts, sleep=sleeps.append))
    out = []
    for resp in reader.responses(DocRange(), after=after, limit=limit):
        doc = run_query_document(resp)
        if doc is not None:
            out.append(document_name(doc).rsplit("/documents/", 1)[1])
    return out


def cursor_of(query: Any) -> str | None:
    sq = query.structured_query
    return sq.start_at.values[0].reference_value.rsplit("/documents/", 1)[1] if sq.HasField("start_at") else None


def test_an_unavailable_stream_resumes_after_its_last_document_at_the_same_read_time():
    conn = FaultyFirestore(NAMES, faults={1: 3})
    assert read(conn) == NAMES  # every document once, in order
    first, second = conn.queries
    assert cursor_of(second) == "c/d02" and second.structured_query.start_at.before is False
    assert second.read_time == first.read_time
    assert conn.calls[0].cancelled


def test_a_resumed_stream_asks_only_for_what_is_left_of_its_limit():
    conn = FaultyFirestore(NAMES, faults={1: 3})
    assert read(conn, after=f"{conn.documents_path}/c/d01", limit=5) == NAMES[2:7]
    assert [q.structured_query.limit.value for q in conn.queries] == [5, 2]
    assert [cursor_of(q) for q in conn.queries] == ["c/d01", "c/d04"]


def test_a_failure_after_the_last_document_asked_for_ends_the_stream_without_a_new_query():
    conn = FaultyFirestore(NAMES, faults={1: 4})
    assert read(conn, limit=4) == NAMES[:4]
    assert len(conn.queries) == 1


def test_a_failure_before_the_first_document_reissues_the_same_query():
    conn = FaultyFirestore(NAMES, faults={1: 0, 2: 0})
    assert read(conn, after=f"{conn.documents_path}/c/d07") == NAMES[8:]
    assert [cursor_of(q) for q in conn.queries] == ["c/d07"] * 3


def test_responses_without_a_document_do_not_move_the_cursor_or_the_count():
    conn = FaultyFirestore(NAMES, faults={1: 4}, progress_responses=True)  # 1 progress response + 3 documents
    assert read(conn, limit=6) == NAMES[:6]
    assert [q.structured_query.limit.value for q in conn.queries] == [6, 3]
    assert cursor_of(conn.queries[1]) == "c/d02"


def test_each_stretch_of_progress_gets_a_fresh_retry_budget():
    conn = FaultyFirestore(NAMES, faults={k: 2 for k in range(1, 20)})  # every query fails after 2 documents
    assert read(conn, attempts=2) == NAMES
    assert len(conn.queries) == 5 + 1  # five failures, each after progress, then the last query ends


def test_a_stream_that_makes_no_progress_gives_up_when_the_budget_is_spent():
    conn = FaultyFirestore(NAMES, faults={1: 2, 2: 0, 3: 0, 4: 0})
    with pytest.raises(SourceUnavailable, match="gave up after 3 attempts") as e:
        read(conn, attempts=3)
    assert len(conn.queries) == 3 and "\n" not in str(e.value)


def test_permission_denied_mid_stream_is_raised_at_once_as_one_line_access_denied():
    conn = FaultyFirestore(NAMES, faults={1: 3}, code=grpc.StatusCode.PERMISSION_DENIED)
    with pytest.raises(SourceAccessDenied) as e:
        read(conn)
    assert len(conn.queries) == 1
    assert "\n" not in str(e.value) and e.value.exit_code == 2 and e.value.grpc_code == "PERMISSION_DENIED"


def test_cancel_ends_the_stream_even_between_retries():
    conn = FaultyFirestore(NAMES, faults={1: 3})
    reader = SnapshotReader(conn, READ_TIME, retry=RetryPolicy(sleep=lambda s: stream.cancel()))
    stream = reader.responses(DocRange())
    got = [next(stream) for _ in range(3)]
    assert len(got) == 3
    assert list(stream) == []  # the failure's backoff is where cancel() lands: nothing re-issued
    assert len(conn.queries) == 1 and conn.calls[0].cancelled
