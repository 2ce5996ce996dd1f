"""Fuzz the chunk and manifest readers: random and mutated input raises only firebackup errors."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firebackup.crypto.keys import DataKey, LocalKey
from firebackup.errors import FireBackupError
from firebackup.format.chunk import ChunkWriter, read_chunk
from firebackup.format.manifest import Manifest, decode_manifest, encode_manifest, read_manifest_summary
from fmt_helpers import BACKUP, CHUNK

KEY = DataKey(bytes(range(32)))
KEK = LocalKey(bytes(range(1, 33)))


def _chunk(codec: str, encrypted: bool) -> bytes:
    buf = io.BytesIO()
    w = ChunkWriter(buf, backup_id=BACKUP, chunk_id=CHUNK, codec=codec, data_key=KEY if encrypted else None, frame_size=4096)
    w.add_many([bytes([i % 7]) * (i * 13 % 900) + b"doc" for i in range(120)])
    w.finish()
    return buf.getvalue()


VALID = {(c, e): _chunk(c, e) for c in ("none", "gzip", "zstd", "brotli") for e in (True, False)}
MANIFESTS = [
    encode_manifest(Manifest(BACKUP, documents=3), data_key=None, kek=None),
    encode_manifest(Manifest(BACKUP, documents=3), data_key=KEY, kek=KEK),
]


def _consume(data: bytes, key) -> None:
    try:
        for _ in read_chunk(data, backup_id=BACKUP, chunk_id=CHUNK, data_key=key):
            pass
    except FireBackupError:
        pass


mutation = st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup"]), st.integers(0, 10**6), st.integers(0, 255))


def mutate(data: bytes, muts) -> bytes:
    b = bytearray(data)
    for kind, pos, val in muts:
        if not b:
            break
        p = pos % len(b)
        if kind == "flip":
            b[p] ^= 1 << (val % 8)
        elif kind == "set":
            b[p] = val
        elif kind == "insert":
            b[p:p] = bytes([val]) * (1 + val % 5)
        elif kind == "delete":
            del b[p : p + 1 + val % 50]
        elif kind == "truncate":
            del b[p:]
        else:
            b[p:p] = b[p : p + 1 + val * 16]
    return bytes(b)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=5000), st.booleans())
def test_random_bytes_never_raise_anything_but_firebackup_errors(data, with_key):
    _consume(data, KEY if with_key else None)
    _consume(b"FBKC\x01" + data, KEY if with_key else None)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(VALID)), st.lists(mutation, min_size=1, max_size=4), st.booleans())
def test_mutated_chunks_never_raise_anything_but_firebackup_errors(which, muts, swap_key):
    codec, encrypted = which
    key = KEY if encrypted else None
    if swap_key:
        key = None if encrypted else KEY
    _consume(mutate(VALID[which], muts), key)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([0, 1]), st.lists(mutation, min_size=1, max_size=3))
def test_mutated_manifests_never_raise_anything_but_firebackup_errors(which, muts):
    data = mutate(MANIFESTS[which], muts)
    for fn in (lambda: read_manifest_summary(data), lambda: decode_manifest(data, kek=KEK), lambda: decode_manifest(data, kek=None)):
        try:
            fn()
        except FireBackupError:
            pass


@pytest.mark.parametrize("which", sorted(VALID))
def test_every_single_byte_flip_of_a_small_encrypted_or_unencrypted_chunk_is_detected(which):
    data = VALID[which]
    key = KEY if which[1] else None
    for pos in range(0, len(data), max(1, len(data) // 400)):
        b = bytearray(data)
        b[pos] ^= 0x20
        with pytest.raises(FireBackupError):
            list(read_chunk(bytes(b), backup_id=BACKUP, chunk_id=CHUNK, data_key=key))


_STREAMS = {}


def _stream(name: str) -> bytes:
    from firebackup.compression import get_codec

    if name not in _STREAMS:
        c = get_codec(name).compressor(None)
        _STREAMS[name] = c.compress(b"".join(b"doc %d " % i * (i % 9) for i in range(3000))) + c.flush()
    return _STREAMS[name]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["gzip", "zstd", "brotli"]), st.lists(mutation, min_size=1, max_size=3), st.integers(1, 5000))
def test_mutated_compressed_streams_raise_only_corrupt_data(name, muts, piece):
    from firebackup.compression import get_codec

    data = mutate(_stream(name), muts)
    d = get_codec(name).decompressor()
    try:
        for i in range(0, len(data), piece):
            for _ in d.decompress_iter(data[i : i + piece], 4096):
                pass
        d.finish()
    except FireBackupError:
        pass
