"""The restore hot path (DocumentRewriter.frame_many, BatchWriter.add_many) must equal the one-document path."""

from __future__ import annotations

import pytest
from google.cloud.firestore_v1.types import BatchWriteRequest, Document

from firebackup.firestore.writer import MODES, BatchWriter, DocumentRewriter, varint

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
    stored("users/u7", big=16_300),  # a length right at the table's edge
    stored("projects/src-p/databases/other-db/documents/c/d"),  # a name outside the source prefix
    b"\x0a\x05hello",  # parses, but is not a document name
    b"\x0a\xff",  # does not parse
]


@pytest.mark.parametrize("keep_references", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_frame_many_equals_rewrite_framed_for_every_mode_and_edge(mode, keep_references):
    rw = DocumentRewriter(SRC, DST, mode=mode, keep_references=keep_references)
    got = rw.frame_many(CORPUS)
    assert len(got) == len(CORPUS)
    for raw, (rel, framed, n_raw) in zip(CORPUS, got):
        assert n_raw == len(raw)
        try:
            want_rel, write = rw.rewrite(raw)
        except Exception as e:  # noqa: BLE001 - the fast path must fail the same documents
            assert rel is None and isinstance(framed, str) and framed, type(e)
            continue
        assert rel == want_rel
        assert framed == b"\x12" + varint(len(write)) + write


def test_varint_table_and_encoder_agree_at_every_width_boundary():
    for n in (0, 127, 128, 16383, 16384, 2**21 - 1, 2**21, 2**63):
        value, shift = 0, 0
        out = varint(n)
        for b in out:
            value |= (b & 0x7F) << shift
            shift += 7
        assert value == n and out[-1] < 0x80 and all(b >= 0x80 for b in out[:-1])


class _Recorder:
    """A target that accepts every write and keeps each request it was sent."""

    database_path = DST
    emulator = False

    def __init__(self):
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
        w = BatchWriter(conn, source_database=SRC, collections=["users"], max_writes=10, max_in_flight=1)
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
