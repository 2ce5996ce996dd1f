"""Compression codecs: streaming round trips, ids, levels and damaged input."""

from __future__ import annotations

import os

import pytest

from firebackup.compression import CODECS, DEFAULT_CODEC, DEFAULT_LEVEL, codec_by_id, get_codec
from firebackup.errors import CorruptData, UnsupportedFormat, UsageError

DATA = b"".join(os.urandom(8) + b"firestore document " * 20 for _ in range(2000))


def compress(name, data=DATA, level=None, piece=7777):
    c = get_codec(name).compressor(level)
    out = b"".join(c.compress(data[i : i + piece]) for i in range(0, len(data), piece))
    return out + c.flush()


def decompress(name, data, piece=3333):
    d = get_codec(name).decompressor()
    out = b"".join(d.decompress(data[i : i + piece]) for i in range(0, len(data), piece))
    return out + d.finish()


def test_codec_ids_are_the_documented_ones():
    assert {n: c.id for n, c in CODECS.items()} == {"none": 0, "gzip": 1, "zstd": 2, "brotli": 3}
    assert DEFAULT_CODEC in CODECS and CODECS[DEFAULT_CODEC].default_level == DEFAULT_LEVEL


@pytest.mark.parametrize("name", sorted(CODECS))
def test_streams_round_trip_in_any_pieces(name):
    assert decompress(name, compress(name)) == DATA
    assert decompress(name, compress(name, b"")) == b""


@pytest.mark.parametrize("name", ["gzip", "zstd", "brotli"])
def test_a_truncated_stream_is_corrupt_data(name):
    z = compress(name)
    with pytest.raises(CorruptData, match="ends early|damaged"):
        decompress(name, z[: len(z) - 5])


@pytest.mark.parametrize("name", ["gzip", "zstd", "brotli"])
def test_bytes_after_the_end_of_a_stream_are_corrupt_data(name):
    with pytest.raises(CorruptData):
        decompress(name, compress(name) + b"\x00junk")


@pytest.mark.parametrize("name", ["gzip", "zstd", "brotli"])
def test_a_damaged_stream_is_corrupt_data(name):
    z = bytearray(compress(name))
    for pos in (0, 1, 2, 3, len(z) // 2, len(z) - 2):
        bad = bytearray(z)
        bad[pos] ^= 0xFF
        try:
            out = decompress(name, bytes(bad))
        except CorruptData:
            continue
        # Brotli has no checksum, so damage may decode; it must never decode to the original.
        assert name == "brotli" and out != DATA, (name, pos)


def test_the_gzip_stream_is_a_real_gzip_member():
    import gzip

    assert gzip.decompress(compress("gzip")) == DATA


def test_the_zstd_stream_carries_a_content_checksum():
    import zstandard

    params = zstandard.get_frame_parameters(compress("zstd"))
    assert params.has_checksum


def test_an_unknown_codec_name_is_a_usage_error_listing_the_choices():
    with pytest.raises(UsageError, match="brotli, gzip, none, zstd"):
        get_codec("lz4")


def test_an_unknown_codec_id_is_unsupported_format():
    with pytest.raises(UnsupportedFormat, match="compression id 42"):
        codec_by_id(42)


@pytest.mark.parametrize("name,level", [("zstd", 0), ("zstd", 23), ("gzip", 10), ("brotli", 12), ("none", 1)])
def test_levels_out_of_range_are_usage_errors(name, level):
    with pytest.raises(UsageError, match="level"):
        get_codec(name).compressor(level)


@pytest.mark.parametrize("name", sorted(CODECS))
@pytest.mark.parametrize("piece", [1, 13, 4096, 1 << 20])
def test_decompress_iter_round_trips_for_any_input_pieces(name, piece):
    z = compress(name)
    d = get_codec(name).decompressor()
    out = b"".join(b"".join(d.decompress_iter(z[i : i + piece], 65536)) for i in range(0, len(z), piece))
    d.finish()
    assert out == DATA


@pytest.mark.parametrize("name", ["gzip", "zstd", "brotli"])
def test_decompress_iter_keeps_a_compression_bomb_in_bounded_pieces(name):
    c = get_codec(name).compressor(1)
    bomb = c.compress(bytes(64 << 20)) + c.flush()
    assert len(bomb) < 1 << 20
    d = get_codec(name).decompressor()
    total = biggest = 0
    for out in d.decompress_iter(bomb, 1 << 20):
        total += len(out)
        biggest = max(biggest, len(out))
    d.finish()
    assert total == 64 << 20
    assert biggest <= 3 << 20  # brotli may overshoot its limit by one decoder block


@pytest.mark.parametrize("name", ["gzip", "zstd", "brotli"])
def test_decompress_iter_rejects_truncated_and_trailing_streams(name):
    z = compress(name)
    d = get_codec(name).decompressor()
    list(d.decompress_iter(z[:-7]))
    with pytest.raises(CorruptData):
        d.finish()
    d = get_codec(name).decompressor()
    with pytest.raises(CorruptData):
        list(d.decompress_iter(z + b"\x00junk"))
        d.finish()
