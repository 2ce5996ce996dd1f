"""The restore hot path (DocumentRewriter.frame_many, BatchWriter.add_many) must equal the one-document path."""

from __future__ import annotations

import grpc
import pytest
from google.cloud.firestore_v1.types import BatchWriteRequest, Document
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firebackup.firestore.batch_writer import NO_LIMIT, BatchWriter
from firebackup.firestore.grpc import FirestoreConnection
from firebackup.firestore.rewrite import MODES, DocumentRewriter
from firebackup.firestore.wire import framed_write_name, varint

DocPb = Document.pb()
SRC = "projects/src-p/databases/(default)"
DST = "projects/dst-p/databases/named-db"


def stored(name: str, *, ref: str | None = None, big: int = 0, times: bool = True) -> bytes:
    d = DocPb(name=name if name.startswith("projects/") else f"{SRC}/documents/{name}")
    d.fields["a"].integer_value = 7
    d.fields["odd name.`x`"].string_value = "é"
    d.fields["m"].map_value.fields["deep"].array_value.values.add().boolean_value = True
    if ref is not None:
        d.fields["r"].reference_value = ref
    if big:
        d.fields["blob"].bytes_value = b"\xff" * big
    if times:
        d.create_time.seconds, d.create_time.nanos = 1_700_000_000, 5_000
        d.update_time.seconds = 1_700_000_001
    return d.SerializeToString()


CORPUS = [
    stored("users/u1"),
    stored("users/ünï 2/posts/p"),
    stored("users/u3", times=False),
    stored("users/u4", ref=f"{SRC}/documents/users/u1"),  # remapped unless keep_references
    stored("users/u5", ref="projects/other/databases/(default)/documents/x/y"),
    stored("users/u6", big=20_000),  # lengths past the 2-byte varint table
    stored("users/" + "n" * 16_400),  # a name past the table: 3-byte name length
    stored("users/u7", big=16_300),  # a length right at the table's edge
    stored("projects/src-p/databases/other-db/documents/c/d"),  # a name outside the source prefix
    b"\x0a\x05hello",  # parses, but is not a document name
    b"\x0a\xff",  # does not parse
]


def framed_by_rewrite(rw: DocumentRewriter, raw: bytes) -> bytes | None:
    """What the one-document path makes of raw, framed as a writes entry; None if it refuses it."""
    try:
        _, write = rw.rewrite(raw)
    except Exception:  # noqa: BLE001 - refused documents are compared as refused
        return None
    return b"\x12" + varint(len(write)) + write


@pytest.mark.parametrize("keep_references", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_frame_many_equals_rewrite_framed_for_every_mode_and_edge(mode, keep_references):
    rw = DocumentRewriter(SRC, DST, mode=mode, keep_references=keep_references)
    want = [framed_by_rewrite(rw, raw) for raw in CORPUS]
    writes, failures, filtered = rw.frame_many(CORPUS)
    assert writes == [w for w in want if w is not None]
    assert len(failures) == want.count(None) == 2 and filtered == 0
    assert all(rel == "(unreadable document)" and why for rel, why in failures)
    for raw, w in zip(CORPUS, want):  # one at a time as well: nothing depends on the neighbours
        assert rw.frame_many([raw])[0] == ([] if w is None else [w])


@pytest.mark.parametrize("mode", ["overwrite", "skip"])
def test_documents_as_firestore_serves_them_take_the_byte_level_path(mode, monkeypatch):
    rw = DocumentRewriter(SRC, DST, mode=mode)
    docs = [stored("users/u1"), stored("users/ünï 2/posts/p"), stored("users/u5", ref="projects/other/databases/x/documents/x/y"),
            stored("users/u6", big=20_000), stored("users/u7", big=16_300), stored("users/" + "n" * 6000)]
    want = [framed_by_rewrite(rw, raw) for raw in docs]
    monkeypatch.setattr(DocumentRewriter, "rewrite", lambda self, raw: pytest.fail("took the protobuf path"))
    assert rw.frame_many(docs) == (want, [], 0)


def test_frame_many_applies_the_collection_filter_on_both_paths():
    docs = [stored("users/u1"), stored("orders/o1"), stored("users/u2", times=False), stored("orders/o2", times=False),
            stored("usersx/u9"), b"\x0a\xff"]
    rw = DocumentRewriter(SRC, DST, collections=["users"])
    writes, failures, filtered = rw.frame_many(docs)
    assert [framed_write_name(w) for w in writes] == [f"{DST}/documents/users/u1", f"{DST}/documents/users/u2"]
    assert (len(failures), filtered) == (1, 3)


# Any instant Firestore can store (years 1..9999, microseconds) and the edges of the wire
# encoding: zero seconds or nanos (omitted fields), negative seconds (ten-byte varints).
_SECONDS = st.one_of(st.integers(-62_135_596_800, 253_402_300_799), st.sampled_from([0, 1, -1, 127, 128, 2**31]))
_NANOS = st.one_of(st.integers(0, 999_999).map(lambda us: us * 1000), st.integers(0, 999_999_999), st.just(0))
_TAILISH = st.lists(st.sampled_from([0x1A, 0x22, 0x08, 0x10, 0x00, 0x06, 0x0B, 0x0C, 0x80, 0xFF, 0x7F]), max_size=40)


def random_document(draw, *, times: bool) -> bytes:
    d = DocPb(name=f"{SRC}/documents/c/{draw(st.text(min_size=1, max_size=30).filter(lambda t: '/' not in t))}")
    for i in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["bytes", "string", "int", "map"]))
        v = d.fields[draw(st.text(max_size=8)) + str(i)]
        if kind == "bytes":  # bytes that look like the timestamps at the end, the worst case for the tail search
            v.bytes_value = bytes(draw(_TAILISH))
        elif kind == "string":
            v.string_value = draw(st.text(max_size=20))
        elif kind == "int":
            v.integer_value = draw(st.integers(-(2**63), 2**63 - 1))
        else:
            v.map_value.fields["x"].bytes_value = bytes(draw(_TAILISH))
    if times:
        d.create_time.seconds, d.create_time.nanos = draw(_SECONDS), draw(_NANOS)
        d.update_time.seconds, d.update_time.nanos = draw(_SECONDS), draw(_NANOS)
    return d.SerializeToString()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from(["overwrite", "skip"]))
def test_byte_level_path_equals_the_protobuf_path_for_any_document_firestore_serves(data, mode):
    raws = [random_document(data.draw, times=True) for _ in range(data.draw(st.integers(1, 5)))]
    rw = DocumentRewriter(SRC, DST, mode=mode)
    assert rw.frame_many(raws) == ([framed_by_rewrite(rw, r) for r in raws], [], 0)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_document_without_timestamps_is_framed_exactly_as_the_protobuf_path_does(data):
    raws = [random_document(data.draw, times=data.draw(st.booleans())) for _ in range(data.draw(st.integers(1, 4)))]
    rw = DocumentRewriter(SRC, DST)
    assert rw.frame_many(raws) == ([framed_by_rewrite(rw, r) for r in raws], [], 0)


def test_bytes_that_mimic_the_timestamps_are_caught_by_the_check_and_kept():
    # Backups hold documents as Firestore serves them, always with both timestamps. Bytes
    # without them whose end mimics the timestamps are cut on the byte-level path; the cut
    # falls inside the last field, the batch check sees a Document that does not parse, and
    # that document goes through protobuf instead, bytes kept.
    d = DocPb(name=f"{SRC}/documents/c/d")
    d.fields["b"].bytes_value = b"\x1a\x02\x08\x01\x22\x02\x08\x01"  # create_time=1s, update_time=1s, as bytes
    mimic = d.SerializeToString()
    rw = DocumentRewriter(SRC, DST)
    cut = rw._frame([mimic], False)[0][0]
    with pytest.raises(Exception):  # what the check catches
        DocPb.FromString(_inner_document(cut))
    docs = [stored("users/u1"), mimic, stored("users/u2")]
    writes, failures, _ = rw.frame_many(docs)
    assert writes == [framed_by_rewrite(rw, r) for r in docs] and not failures
    assert DocPb.FromString(_inner_document(writes[1])).fields["b"].bytes_value == d.fields["b"].bytes_value


def test_a_name_that_is_not_utf8_is_refused_as_the_protobuf_path_refuses_it():
    d = DocPb(name=f"{SRC}/documents/c/NAME")
    d.create_time.seconds = d.update_time.seconds = 1_700_000_000
    bad = d.SerializeToString().replace(b"NAME", b"N\xffME")
    writes, failures, _ = DocumentRewriter(SRC, DST).frame_many([stored("users/u1"), bad])
    assert len(writes) == 1 and len(failures) == 1 and "does not parse" in failures[0][1]


def _inner_document(framed: bytes) -> bytes:
    """The Document bytes inside a framed write, taken by length prefixes without parsing them."""
    from firebackup.firestore.wire import read_varint

    _, pos = read_varint(framed, 1)  # writes entry length
    n, pos = read_varint(framed, pos + 1)  # Write.update length
    return framed[pos : pos + n]


def test_varint_table_and_encoder_agree_at_every_width_boundary():
    for n in (0, 127, 128, 16383, 16384, 2**21 - 1, 2**21, 2**63):
        value, shift = 0, 0
        out = varint(n)
        for b in out:
            value |= (b & 0x7F) << shift
            shift += 7
        assert value == n and out[-1] < 0x80 and all(b >= 0x80 for b in out[:-1])


class _Recorder(FirestoreConnection):
    """A target that accepts every write and keeps each request it was sent (no network)."""

    def __init__(self):
        super().__init__(grpc.insecure_channel("127.0.0.1:1"), project="dst-p", database="named-db",
                         host="fake", emulator=False)
        self.requests: list[bytes] = []

    def batch_write(self, request: bytes, *, timeout=None) -> bytes:
        from google.cloud.firestore_v1.types import BatchWriteResponse

        self.requests.append(request)
        n = len(BatchWriteRequest.pb().FromString(request).writes)
        resp = BatchWriteResponse.pb()()
        for _ in range(n):
            resp.status.add(code=0)
        return resp.SerializeToString()


def test_add_many_sends_the_same_requests_and_counts_as_add_one_by_one():
    docs = [stored(f"users/u{i}") for i in range(25)] + [stored("orders/o1"), b"\x0a\xff"]
    results = []
    for feed in ("one", "many"):
        conn = _Recorder()
        w = BatchWriter(conn, source_database=SRC, collections=["users"], max_writes=10, max_in_flight=1,
                        limiter=NO_LIMIT)
        if feed == "one":
            for d in docs:
                w.add(d)
        else:
            w.add_many(docs[:7])
            w.add_many(docs[7:])
        stats = w.close()
        results.append((conn.requests, stats.written, stats.failed, stats.filtered))
    assert results[0] == results[1]
    requests, written, failed, filtered = results[1]
    assert (written, failed, filtered) == (25, 1, 1) and len(requests) == 3
