"""Unit tests of the bulk writer: Write bytes built by hand, and exact accounting over a fake server."""

from __future__ import annotations

import math

import grpc
import pytest
from google.cloud.firestore_v1.types import BatchWriteRequest, BatchWriteResponse, Document, Write

from firebackup.errors import CorruptData, SourceAccessDenied, SourceUnavailable, UsageError
from firebackup.firestore.batch_writer import NO_LIMIT, RAMP_UP, BatchWriter, RampUp, RampUpRule, WriteLimiter
from firebackup.firestore.grpc import FirestoreConnection, translate_error
from firebackup.firestore.rewrite import DocumentRewriter, quote_field_path
from firebackup.firestore.wire import batch_write_request, varint
from firebackup.retry import RetryPolicy

DocPb = Document.pb()
WritePb = Write.pb()
RequestPb = BatchWriteRequest.pb()
ResponsePb = BatchWriteResponse.pb()

SRC = "projects/src-p/databases/(default)"
DST = "projects/dst-p/databases/named-db"


def stored(name: str, **fields) -> bytes:
    """A Document as the server sends it: name, fields, create_time, update_time."""
    d = DocPb(name=f"{SRC}/documents/{name}")
    for k, v in fields.items():
        if isinstance(v, bool):
            d.fields[k].boolean_value = v
        elif isinstance(v, int):
            d.fields[k].integer_value = v
        elif isinstance(v, float):
            d.fields[k].double_value = v
        else:
            d.fields[k].string_value = v
    d.create_time.seconds, d.create_time.nanos = 1_700_000_000, 123_000
    d.update_time.seconds, d.update_time.nanos = 1_700_000_100, 456_000
    return d.SerializeToString()


def as_write(b: bytes):
    return WritePb.FromString(b)


# -- DocumentRewriter ------------------------------------------------------------------------


def test_rewrite_moves_the_name_to_the_target_and_drops_output_only_timestamps():
    rel, w = DocumentRewriter(SRC, DST).rewrite(stored("users/ünï 1/posts/p", a=1, b="x"))
    write = as_write(w)
    assert rel == "users/ünï 1/posts/p"
    assert write.update.name == f"{DST}/documents/users/ünï 1/posts/p"
    assert not write.update.HasField("create_time") and not write.update.HasField("update_time")
    assert write.update.fields["a"].integer_value == 1 and write.update.fields["b"].string_value == "x"
    assert not write.HasField("current_document") and not write.HasField("update_mask")


def test_rewrite_keeps_every_field_byte_for_byte():
    d = DocPb(name=f"{SRC}/documents/c/d")
    d.fields["nan"].double_value = math.nan
    d.fields["negzero"].double_value = -0.0
    d.fields["blob"].bytes_value = bytes(range(256)) * 10
    d.fields["nested"].map_value.fields["x"].array_value.values.add().null_value = 0
    _, w = DocumentRewriter(SRC, SRC).rewrite(d.SerializeToString())
    got = as_write(w).update
    assert got.fields["nan"].SerializeToString() == d.fields["nan"].SerializeToString()
    assert math.copysign(1, got.fields["negzero"].double_value) == -1
    assert got.fields["blob"] == d.fields["blob"] and got.fields["nested"] == d.fields["nested"]


def test_references_into_the_source_database_are_remapped_at_any_depth():
    d = DocPb(name=f"{SRC}/documents/c/d")
    d.fields["r"].reference_value = f"{SRC}/documents/other/1"
    d.fields["m"].map_value.fields["r"].reference_value = f"{SRC}/documents/other/2"
    d.fields["a"].array_value.values.add().reference_value = f"{SRC}/documents/other/3"
    d.fields["foreign"].reference_value = "projects/elsewhere/databases/(default)/documents/x/1"
    d.fields["s"].string_value = f"{SRC}/documents/not/a/reference"
    got = as_write(DocumentRewriter(SRC, DST).rewrite(d.SerializeToString())[1]).update
    assert got.fields["r"].reference_value == f"{DST}/documents/other/1"
    assert got.fields["m"].map_value.fields["r"].reference_value == f"{DST}/documents/other/2"
    assert got.fields["a"].array_value.values[0].reference_value == f"{DST}/documents/other/3"
    assert got.fields["foreign"].reference_value == "projects/elsewhere/databases/(default)/documents/x/1"
    assert got.fields["s"].string_value == f"{SRC}/documents/not/a/reference"


def test_keep_references_leaves_them_pointing_at_the_source():
    d = DocPb(name=f"{SRC}/documents/c/d")
    d.fields["r"].reference_value = f"{SRC}/documents/other/1"
    got = as_write(DocumentRewriter(SRC, DST, keep_references=True).rewrite(d.SerializeToString())[1]).update
    assert got.name == f"{DST}/documents/c/d"
    assert got.fields["r"].reference_value == f"{SRC}/documents/other/1"


def test_skip_mode_adds_the_precondition_that_the_document_does_not_exist():
    write = as_write(DocumentRewriter(SRC, DST, mode="skip").rewrite(stored("c/d", a=1))[1])
    assert write.HasField("current_document") and write.current_document.exists is False


def test_merge_mode_masks_exactly_the_top_level_fields_quoted_when_needed():
    d = DocPb(name=f"{SRC}/documents/c/d")
    names = ["plain_1", "a.b", "with space", "back`tick", "back\\slash", "ünïcode", "1digit", ""]
    for n in names:
        d.fields[n].string_value = "v"
    d.fields["map"].map_value.fields["inner"].integer_value = 1
    write = as_write(DocumentRewriter(SRC, DST, mode="merge").rewrite(d.SerializeToString())[1])
    assert sorted(write.update_mask.field_paths) == sorted(quote_field_path(n) for n in names + ["map"])
    assert "`a.b`" in write.update_mask.field_paths and "plain_1" in write.update_mask.field_paths
    assert "`back\\`tick`" in write.update_mask.field_paths
    assert "`back\\\\slash`" in write.update_mask.field_paths
    assert "map" in write.update_mask.field_paths  # the whole map, not its inner paths


def test_merge_mode_sends_an_empty_mask_for_an_empty_document():
    w = DocumentRewriter(SRC, DST, mode="merge").rewrite(DocPb(name=f"{SRC}/documents/c/e").SerializeToString())[1]
    assert w.endswith(b"\x1a\x00")
    assert as_write(w).HasField("update_mask") and list(as_write(w).update_mask.field_paths) == []


def test_quote_field_path_follows_firestore_rules():
    assert quote_field_path("abc_D9") == "abc_D9"
    assert quote_field_path("_x") == "_x"
    assert quote_field_path("9x") == "`9x`"
    assert quote_field_path("a`b") == "`a\\`b`"


def test_rewrite_rejects_bytes_that_are_not_a_document():
    with pytest.raises(CorruptData):
        DocumentRewriter(SRC, DST).rewrite(b"\x0a\x05hello")


def test_unknown_mode_is_a_usage_error():
    with pytest.raises(UsageError):
        DocumentRewriter(SRC, DST, mode="upsert")


def test_varint_and_request_bytes_parse_back():
    for n in (0, 1, 127, 128, 300, 2**21, 2**35):
        out, shift, value = varint(n), 0, 0
        for b in out:
            value |= (b & 0x7F) << shift
            shift += 7
        assert value == n
    writes = [DocumentRewriter(SRC, DST).rewrite(stored(f"c/{i}", i=i))[1] for i in range(3)]
    req = RequestPb.FromString(batch_write_request(DST, writes))
    assert req.database == DST and [w.update.name for w in req.writes] == [f"{DST}/documents/c/{i}" for i in range(3)]


# -- BatchWriter over a fake server ------------------------------------------------------------


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str = "boom"):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


class FakeConnection(FirestoreConnection):
    """Answers BatchWrite from a rule per document id; records every request (no network)."""

    def __init__(self, rule=None, request_error=None):
        super().__init__(grpc.insecure_channel("127.0.0.1:1"), project="dst-p", database="named-db",
                         host="fake", emulator=False)
        self.rule = rule or (lambda doc_id, attempt: 0)
        self.request_error = request_error  # (request_number) -> StatusCode | None
        self.requests: list = []
        self.attempts: dict[str, int] = {}

    def batch_write(self, request: bytes, *, timeout=None) -> bytes:
        req = RequestPb.FromString(request)
        self.requests.append(req)
        if self.request_error is not None:
            code = self.request_error(len(self.requests), req)
            if code is not None:
                raise translate_error(FakeRpcError(code), host="fake", what="BatchWrite")
        resp = ResponsePb()
        for w in req.writes:
            doc_id = w.update.name.rsplit("/", 1)[1]
            n = self.attempts[doc_id] = self.attempts.get(doc_id, 0) + 1
            resp.write_results.add()
            resp.status.add(code=self.rule(doc_id, n), message=f"status for {doc_id}")
        return resp.SerializeToString()


def run_writer(conn, docs, *, attempts=8, limiter=NO_LIMIT, **kw) -> tuple:
    w = BatchWriter(conn, source_database=SRC, retry=RetryPolicy(attempts=attempts, sleep=lambda s: None),
                    limiter=limiter, **kw)
    w.add_many(docs)
    return w.close(), conn


def docs(n: int, collection: str = "c") -> list[bytes]:
    return [stored(f"{collection}/d{i:04d}", i=i) for i in range(n)]


def test_writer_counts_every_acknowledged_write_and_respects_the_batch_limit():
    stats, conn = run_writer(FakeConnection(), docs(1234), max_writes=500)
    assert (stats.written, stats.skipped, stats.failed) == (1234, 0, 0)
    assert [len(r.writes) for r in conn.requests] == [500, 500, 234]


def test_writer_splits_batches_by_request_bytes():
    big = [stored(f"c/big{i}", blob="x" * 300_000) for i in range(10)]
    stats, conn = run_writer(FakeConnection(), big, max_bytes=1_000_000)
    assert stats.written == 10
    assert all(r.ByteSize() <= 1_000_000 for r in conn.requests) and len(conn.requests) >= 4


def test_writer_retries_retryable_write_codes_and_counts_them_once():
    flaky = {"d0003": 2, "d0007": 3}  # fail this many times with ABORTED / UNAVAILABLE, then succeed

    def rule(doc_id, attempt):
        return (10 if attempt % 2 else 14) if attempt <= flaky.get(doc_id, 0) else 0

    stats, conn = run_writer(FakeConnection(rule), docs(10))
    assert (stats.written, stats.failed) == (10, 0)
    assert conn.attempts["d0007"] == 4 and conn.attempts["d0000"] == 1
    assert [len(r.writes) for r in conn.requests] == [10, 2, 2, 1]  # only the failed writes are resent


def test_writer_gives_up_after_max_attempts_and_counts_failed():
    stats, _ = run_writer(FakeConnection(lambda d, a: 4 if d == "d0001" else 0), docs(5), attempts=3)
    assert (stats.written, stats.failed) == (4, 1)
    assert "d0001" in stats.errors[0] and "DEADLINE_EXCEEDED after 3 attempts" in stats.errors[0]


def test_writer_counts_non_retryable_write_errors_as_failed_with_the_reason():
    stats, _ = run_writer(FakeConnection(lambda d, a: 3 if d in ("d0002", "d0004") else 0), docs(6))
    assert (stats.written, stats.failed) == (4, 2)
    assert sorted(e.split(":")[0] for e in stats.errors) == ["c/d0002", "c/d0004"]
    assert all("INVALID_ARGUMENT" in e for e in stats.errors)


def test_skip_mode_counts_already_existing_documents_as_skipped():
    stats, conn = run_writer(
        FakeConnection(lambda d, a: {"d0001": 6, "d0002": 9}.get(d, 0)), docs(4), mode="skip"
    )
    assert (stats.written, stats.skipped, stats.failed) == (2, 2, 0)
    assert all(w.current_document.exists is False for w in conn.requests[0].writes)


def test_already_exists_is_a_failure_outside_skip_mode():
    stats, _ = run_writer(FakeConnection(lambda d, a: 6 if d == "d0001" else 0), docs(3))
    assert (stats.written, stats.skipped, stats.failed) == (2, 0, 1)


def test_whole_request_retryable_failures_are_retried():
    conn = FakeConnection(request_error=lambda n, req: grpc.StatusCode.UNAVAILABLE if n <= 2 else None)
    stats, conn = run_writer(conn, docs(7))
    assert stats.written == 7 and len(conn.requests) == 3


def test_an_unreachable_target_raises_after_the_retries():
    conn = FakeConnection(request_error=lambda n, req: grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(SourceUnavailable):
        run_writer(conn, docs(3), attempts=3)
    assert len(conn.requests) == 3


def test_a_refusing_target_raises_at_once_instead_of_counting():
    conn = FakeConnection(request_error=lambda n, req: grpc.StatusCode.PERMISSION_DENIED)
    with pytest.raises(SourceAccessDenied) as e:
        run_writer(conn, docs(3))
    assert len(conn.requests) == 1 and "\n" not in str(e.value)


def test_an_invalid_write_that_spoils_its_request_is_isolated_by_splitting():
    def bad_request(n, req):
        names = [w.update.name.rsplit("/", 1)[1] for w in req.writes]
        return grpc.StatusCode.INVALID_ARGUMENT if {"d0013", "d0040"} & set(names) else None

    stats, _ = run_writer(FakeConnection(request_error=bad_request), docs(50))
    assert (stats.written, stats.failed) == (48, 2)
    assert sorted(e.split(":")[0] for e in stats.errors) == ["c/d0013", "c/d0040"]


def test_dry_run_sends_nothing_but_decodes_and_counts_everything():
    conn = FakeConnection()
    stats, _ = run_writer(conn, docs(700), dry_run=True)
    assert stats.written == 700 and conn.requests == []
    stats, _ = run_writer(FakeConnection(), docs(2) + [b"\x0a\x03bad"], dry_run=True)
    assert (stats.written, stats.failed) == (2, 1) and "unreadable" in stats.errors[0]


def test_a_record_that_is_not_a_document_is_counted_failed_and_the_rest_written():
    stats, conn = run_writer(FakeConnection(), docs(3) + [b"\xff\xff\xff"] + docs(2, "more"))
    assert (stats.written, stats.failed) == (5, 1)
    assert sum(len(r.writes) for r in conn.requests) == 5


def test_collection_filter_keeps_named_root_collections_with_their_subcollections():
    mixed = docs(3, "keep") + docs(2, "drop") + [stored("keep/x/sub/y", a=1), stored("dropped/keep/z/1", a=1)]
    stats, conn = run_writer(FakeConnection(), mixed, collections=["keep"])
    sent = sorted(w.update.name.split("/documents/")[1] for r in conn.requests for w in r.writes)
    assert sent == ["keep/d0000", "keep/d0001", "keep/d0002", "keep/x/sub/y"]
    assert (stats.written, stats.filtered) == (4, 3)


def test_writer_reports_progress_in_documents():
    seen = []
    run_writer(FakeConnection(), docs(1100), progress=lambda documents=0, bytes=0: seen.append(documents))
    assert sum(seen) == 1100


def test_writer_rejects_a_batch_limit_above_firestores():
    with pytest.raises(UsageError):
        BatchWriter(FakeConnection(), source_database=SRC, max_writes=501)


# -- the ramp-up limiter (Firestore's 500/50/5 rule) ---------------------------------------------


class FakeClock:
    """Monotonic seconds that move only when the limiter sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds


def ramp(rule: RampUpRule = RampUpRule()) -> tuple[RampUp, FakeClock]:
    clock = FakeClock()
    return RampUp(rule, clock=clock, sleep=clock.sleep), clock


def write_for(limiter: RampUp, clock: FakeClock, key: str, seconds: float) -> list[float]:
    """Send full batches to `key` without a pause for `seconds` of the fake clock; their start times."""
    until, starts = clock.now + seconds, []
    while clock.now < until:
        starts.append(limiter.acquire(key, 500))
    return starts


def test_the_ramp_allows_500_writes_a_second_for_5_minutes_then_50_percent_more_every_5_minutes() -> None:
    limiter, clock = ramp()
    t0 = clock.now
    per_window = [0, 0, 0]
    for start in write_for(limiter, clock, "db/users", 900):
        window = int((start - t0) // 300)
        if window < 3:
            per_window[window] += 500
    # writes let through in each 5-minute window: 500/s, 750/s, 1125/s (give or take the batch at the edge)
    for got, rate in zip(per_window, (500, 750, 1125)):
        assert abs(got - rate * 300) <= 500, per_window
    schedule = []
    for minute in (0, 4.9, 5, 10, 15):
        clock.now = t0 + minute * 60
        schedule.append(limiter.rate("db/users"))
    assert schedule == [500, 500, 750, 1125, 1687.5]


def test_each_collection_ramps_on_its_own_starting_when_first_written() -> None:
    limiter, clock = ramp()
    write_for(limiter, clock, "db/users", 600)
    limiter.acquire("db/orders", 500)
    assert (limiter.rate("db/users"), limiter.rate("db/orders")) == (1125, 500)


def test_a_collection_left_idle_for_5_minutes_starts_again_at_500() -> None:
    limiter, clock = ramp()
    write_for(limiter, clock, "db/users", 900)
    assert limiter.rate("db/users") == 1687.5
    clock.now += 301
    limiter.acquire("db/users", 500)
    assert limiter.rate("db/users") == 500


def test_resource_exhausted_halves_the_rate_and_the_ramp_starts_again_from_there() -> None:
    limiter, clock = ramp()
    [first, *_] = write_for(limiter, clock, "db/users", 400)
    assert limiter.rate("db/users") == 750
    limiter.slow_down("db/users", since=first)
    assert limiter.rate("db/users") == 375
    limiter.slow_down("db/users", since=first)  # the same wave of refusals: counted once
    assert limiter.rate("db/users") == 375
    *_, later = write_for(limiter, clock, "db/users", 300)
    assert limiter.rate("db/users") == 562.5
    limiter.slow_down("db/users", since=later)  # refused again after the slowdown: slower still
    assert limiter.rate("db/users") == 281.25


def test_after_a_slowdown_batches_are_spaced_at_the_lower_rate() -> None:
    limiter, clock = ramp()
    sent = limiter.acquire("db/users", 500)
    limiter.slow_down("db/users", since=sent)
    starts = [limiter.acquire("db/users", 250) for _ in range(3)]
    assert [b - a for a, b in zip(starts, starts[1:])] == [1.0, 1.0]  # 250 writes at 250/s


class RecordingLimiter(WriteLimiter):
    def __init__(self) -> None:
        self.acquired: list[tuple[str, int]] = []
        self.slowed: list[str] = []

    def acquire(self, key: str, writes: int) -> float:
        self.acquired.append((key, writes))
        return float(len(self.acquired))

    def slow_down(self, key: str, since: float) -> None:
        self.slowed.append(key)


def test_the_writer_accounts_once_per_batch_keyed_by_database_and_root_collection() -> None:
    limiter = RecordingLimiter()
    stats, conn = run_writer(FakeConnection(), docs(700, "users") + docs(3, "orders"), limiter=limiter,
                             max_in_flight=1)
    assert stats.written == 703
    assert limiter.acquired == [(f"{DST}/users", 500), (f"{DST}/users", 203)]  # a batch: its first write's
    assert limiter.slowed == []


def test_the_writer_slows_down_on_resource_exhausted_and_aborted_writes_and_requests() -> None:
    limiter = RecordingLimiter()
    stats, _ = run_writer(FakeConnection(lambda d, a: 8 if a == 1 else 0), docs(3), limiter=limiter)
    assert stats.written == 3 and limiter.slowed == [f"{DST}/c"]
    assert limiter.acquired == [(f"{DST}/c", 3), (f"{DST}/c", 3)]  # the retried writes are paced too
    limiter = RecordingLimiter()
    conn = FakeConnection(request_error=lambda n, req: grpc.StatusCode.ABORTED if n == 1 else None)
    stats, _ = run_writer(conn, docs(2), limiter=limiter)
    assert stats.written == 2 and limiter.slowed == [f"{DST}/c"]
    limiter = RecordingLimiter()
    stats, _ = run_writer(FakeConnection(lambda d, a: 14 if a == 1 else 0), docs(2), limiter=limiter)
    assert stats.written == 2 and limiter.slowed == []  # UNAVAILABLE is retried, but is no sign of speed


def test_real_firestore_gets_the_shared_ramp_and_the_emulator_none() -> None:
    emulator = FirestoreConnection(grpc.insecure_channel("127.0.0.1:1"), project="p", host="fake", emulator=True)
    with BatchWriter(emulator, source_database=SRC) as on_emulator, \
            BatchWriter(FakeConnection(), source_database=SRC) as on_firestore:
        assert (on_emulator.limiter, on_firestore.limiter) == (NO_LIMIT, RAMP_UP)
