"""Property tests (hypothesis): framing, chunks and key wrapping round-trip for any input."""

from __future__ import annotations

import io
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firebackup.codec.framing import BatchDecoder, encode_batch
from firebackup.compression import CODECS
from firebackup.crypto.keys import DataKey, LocalKey
from firebackup.format.chunk import MIN_FRAME_SIZE, ChunkWriter, read_chunk
from firebackup.format.manifest import ChunkEntry, Manifest, decode_manifest, encode_manifest

records = st.lists(st.binary(max_size=3000), max_size=60)
ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-TZ", min_size=1, max_size=40)
DEK = DataKey(bytes(range(32)))
KEK = LocalKey(bytes(range(32, 64)))


@given(st.lists(records.filter(bool), max_size=5), st.data())
def test_batches_decode_to_the_same_records_whatever_the_feed_boundaries(batches, data):
    stream = b"".join(encode_batch(b)[0] for b in batches)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    dec, out, prev = BatchDecoder(), [], 0
    for c in cuts + [len(stream)]:
        out += dec.feed(stream[prev:c])
        prev = c
    dec.finish()
    assert out == [r for b in batches for r in b]


@given(records.filter(bool))
def test_encode_batch_reports_the_record_bytes(recs):
    data, raw = encode_batch(recs)
    assert raw == sum(map(len, recs))
    assert len(data) == 4 + 4 * len(recs) + raw


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    recs=records,
    codec=st.sampled_from(sorted(CODECS)),
    frame_size=st.integers(MIN_FRAME_SIZE, 3 * MIN_FRAME_SIZE),
    encrypted=st.booleans(),
    split=st.integers(0, 60),
    backup_id=ids,
    chunk_id=ids,
)
def test_any_records_round_trip_through_a_chunk(recs, codec, frame_size, encrypted, split, backup_id, chunk_id):
    buf = io.BytesIO()
    key = DEK if encrypted else None
    w = ChunkWriter(buf, backup_id=backup_id, chunk_id=chunk_id, codec=codec, data_key=key, frame_size=frame_size)
    for r in recs[:split]:
        w.add(r)
    w.add_many(iter(recs[split:]))
    st_ = w.finish()
    assert st_.records == len(recs) and st_.bytes_stored == len(buf.getvalue())
    assert list(read_chunk(buf.getvalue(), backup_id=backup_id, chunk_id=chunk_id, data_key=key)) == recs


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=64), st.binary(max_size=64))
def test_key_wrapping_round_trips_and_binds_its_context(raw, ctx, other_ctx):
    dek = DataKey(raw)
    w = KEK.wrap(dek, ctx)
    assert KEK.unwrap(w, ctx) == dek
    if other_ctx != ctx:
        try:
            KEK.unwrap(w, other_ctx)
        except Exception as e:  # noqa: BLE001 - asserting the type below
            assert type(e).__name__ == "WrongKeyOrTampered"
        else:
            raise AssertionError("unwrapped under another context")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.builds(
            ChunkEntry,
            chunk_id=ids,
            kind=st.sampled_from(["docs", "auth"]),
            key=st.text(max_size=80),
            records=st.integers(0, 2**40),
            bytes_raw=st.integers(0, 2**50),
            bytes_stored=st.integers(0, 2**50),
            sha256=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
        ),
        max_size=20,
    ),
    st.booleans(),
    st.lists(st.text(max_size=30), max_size=5),
)
def test_any_manifest_round_trips(chunks, encrypted, collections):
    m = Manifest(backup_id="20261128T025000Z-0123abcd", chunks=chunks, collections=collections, documents=len(chunks))
    data = encode_manifest(m, data_key=DEK if encrypted else None, kek=KEK if encrypted else None)
    got, dek = decode_manifest(data, kek=KEK if encrypted else None)  # a key for a plain one is refused
    assert got.chunks == chunks and got.collections == collections and got.encrypted == encrypted
    assert (dek == DEK) if encrypted else dek is None
