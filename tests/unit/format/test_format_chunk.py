"""Chunk writer/reader: round trips, and every kind of damage detected and named."""

from __future__ import annotations

import hashlib
import io

import pytest

from firebackup.compression import CODECS
from firebackup.crypto.keys import DataKey
from firebackup.errors import (
    BadKey,
    CorruptData,
    IntegrityError,
    TruncatedData,
    UnsupportedFormat,
    UsageError,
    WrongKeyOrTampered,
)
from firebackup.format.chunk import ChunkWriter, read_chunk, read_header
from fmt_helpers import BACKUP, CHUNK, FRAME, build_chunk, incompressible_records, recrc_header


def flip(data: bytes, pos: int, mask: int = 0x01) -> bytes:
    b = bytearray(data)
    b[pos] ^= mask
    return bytes(b)


# -- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("codec", sorted(CODECS))
@pytest.mark.parametrize("encrypted", [True, False])
def test_records_come_back_exactly_for_every_codec(codec, encrypted):
    recs = [b"", b"a", b"\x00" * 5000] + incompressible_records(30, 700) + [b"x" * 100_000]
    b = build_chunk(recs, encrypted=encrypted, codec=codec)
    assert b.read() == recs


def test_add_and_add_many_can_be_mixed_and_keep_order():
    buf = io.BytesIO()
    w = ChunkWriter(buf, backup_id=BACKUP, chunk_id=CHUNK, data_key=None, frame_size=FRAME)
    w.add(b"first")
    w.add_many(iter([b"2", b"3"]))
    w.add(b"4")
    w.add_many((b"5",))
    st = w.finish()
    assert list(read_chunk(buf.getvalue(), backup_id=BACKUP, chunk_id=CHUNK, data_key=None)) == [
        b"first", b"2", b"3", b"4", b"5",
    ]
    assert st.records == 5


def test_an_empty_chunk_round_trips_to_no_records():
    b = build_chunk([], encrypted=True)
    assert b.read() == []
    assert b.stats.records == 0


def test_stats_hold_the_sha256_and_size_of_the_stored_bytes(built):
    assert built.stats.sha256 == hashlib.sha256(built.data).hexdigest()
    assert built.stats.bytes_stored == len(built.data)
    assert built.stats.records == len(built.records)
    assert built.stats.bytes_raw == sum(map(len, built.records))


def test_finish_is_idempotent_and_adding_after_finish_is_refused():
    buf = io.BytesIO()
    w = ChunkWriter(buf, backup_id=BACKUP, chunk_id=CHUNK, data_key=None)
    w.add(b"r")
    st = w.finish()
    assert w.finish() == st
    with pytest.raises(UsageError):
        w.add(b"more")


def test_non_final_frames_are_exactly_the_frame_size(built):
    starts = built.frame_starts
    assert len(starts) > 2
    for s in starts[:-1]:
        v = int.from_bytes(built.data[s : s + 4], "big")
        assert v == FRAME  # no final bit, length = frame size
    assert int.from_bytes(built.data[starts[-1] : starts[-1] + 4], "big") & 0x80000000


def test_the_writer_streams_to_the_sink_before_finish():
    class Sink:
        n = 0

        def write(self, b):
            self.n += len(b)

    sink = Sink()
    w = ChunkWriter(sink, backup_id=BACKUP, chunk_id=CHUNK, data_key=DataKey.generate(), codec="none", frame_size=FRAME)
    recs = incompressible_records(200, 1000)
    w.add_many(recs)
    # At most one batch and one frame may be held back.
    assert sink.n >= 200 * 1000 - 2 * (256 << 10) - FRAME
    w.finish()


def test_the_reader_reads_lazily_about_one_batch_at_a_time():
    built = build_chunk(incompressible_records(3000, 300))

    class Counting(io.BytesIO):
        pulled = 0

        def read(self, n=-1):
            out = super().read(n)
            self.pulled += len(out)
            return out

    s = Counting(built.data)
    it = read_chunk(s, backup_id=BACKUP, chunk_id=CHUNK, data_key=built.key)
    next(it)
    # Enough frames for the first record batch, not the whole 900 kB chunk.
    assert s.pulled <= built.header_len + (256 << 10) + 2 * (4 + FRAME + 16)
    assert len(built.data) > 3 * s.pulled


def test_unknown_codec_name_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown compression"):
        ChunkWriter(io.BytesIO(), backup_id=BACKUP, chunk_id=CHUNK, data_key=None, codec="lzma")


def test_out_of_range_level_is_a_usage_error():
    with pytest.raises(UsageError, match="level"):
        ChunkWriter(io.BytesIO(), backup_id=BACKUP, chunk_id=CHUNK, data_key=None, codec="zstd", level=99)


def test_non_ascii_chunk_id_is_a_usage_error():
    with pytest.raises(UsageError):
        ChunkWriter(io.BytesIO(), backup_id=BACKUP, chunk_id="d\u00e9", data_key=None)


# -- keys ----------------------------------------------------------------------------------


def test_read_rejects_the_wrong_data_key_with_the_standard_message(built):
    with pytest.raises(WrongKeyOrTampered, match="wrong key, or the data was altered") as e:
        built.read(key=DataKey.generate())
    assert CHUNK in str(e.value)


def test_read_of_an_encrypted_chunk_without_a_key_asks_for_the_key(built):
    with pytest.raises(BadKey, match="encrypted"):
        built.read(key=None)


def test_read_refuses_an_unencrypted_chunk_where_an_encrypted_one_is_expected():
    b = build_chunk(encrypted=False)
    with pytest.raises(WrongKeyOrTampered, match="not encrypted"):
        b.read(key=DataKey.generate())


def test_a_second_write_of_the_same_chunk_uses_a_fresh_salt():
    k = DataKey.generate()
    a = build_chunk([b"same"], key=k)
    b = build_chunk([b"same"], key=k)
    assert a.data[28:60] != b.data[28:60]
    assert a.data[a.header_len :] != b.data[b.header_len :]


# -- header damage -------------------------------------------------------------------------


@pytest.mark.parametrize("encrypted", [True, False])
def test_read_rejects_a_flipped_byte_anywhere_in_the_header(encrypted):
    b = build_chunk(encrypted=encrypted)
    for pos in range(b.header_len):
        with pytest.raises((CorruptData, UnsupportedFormat)) as e:
            b.read(flip(b.data, pos))
        assert CHUNK in str(e.value), pos


def test_read_rejects_a_header_edited_with_a_recomputed_crc_on_the_first_frame(built):
    # Frame size field: bump within range, fix the CRC; only the AEAD can tell.
    edited = bytearray(built.data)
    edited[11] ^= 0x01  # frame size 4096 -> 4097
    edited = recrc_header(bytes(edited), built.header_len)
    with pytest.raises(IntegrityError) as e:
        built.read(edited)
    assert "frame 0" in str(e.value)


def test_read_rejects_a_salt_edited_with_a_recomputed_crc_as_tampering(built):
    edited = recrc_header(flip(built.data, 40), built.header_len)
    with pytest.raises(WrongKeyOrTampered, match=f"chunk {CHUNK} frame 0"):
        built.read(edited)


def test_read_rejects_an_unknown_format_version(built):
    with pytest.raises(UnsupportedFormat, match="format version 2"):
        built.read(built.data[:4] + b"\x02" + built.data[5:])


def test_read_rejects_an_unknown_codec_id(built):
    edited = recrc_header(built.data[:6] + b"\x09" + built.data[7:], built.header_len)
    with pytest.raises(UnsupportedFormat, match="compression id 9"):
        built.read(edited)


def test_read_rejects_an_unknown_encryption_id(built):
    edited = recrc_header(built.data[:7] + b"\x07" + built.data[8:], built.header_len)
    with pytest.raises(UnsupportedFormat, match="encryption id 7"):
        built.read(edited)


def test_read_rejects_bytes_that_are_not_a_chunk():
    with pytest.raises(CorruptData, match="bad magic"):
        list(read_chunk(b"PK\x03\x04" + bytes(100), backup_id=BACKUP, chunk_id=CHUNK, data_key=None))


def test_read_rejects_an_empty_object_as_truncated():
    with pytest.raises(TruncatedData):
        list(read_chunk(b"", backup_id=BACKUP, chunk_id=CHUNK, data_key=None))


# -- misplaced chunks ----------------------------------------------------------------------


def test_read_rejects_a_chunk_swapped_in_from_another_backup():
    k = DataKey.generate()
    other = build_chunk(key=k, backup_id="20261127T000000Z-ffffffff")
    with pytest.raises(WrongKeyOrTampered, match="belongs to backup '20261127T000000Z-ffffffff'"):
        other.read(backup_id=BACKUP)


def test_read_rejects_a_chunk_swapped_between_chunk_ids_in_one_backup():
    b = build_chunk(chunk_id="d00001-00003")
    with pytest.raises(WrongKeyOrTampered, match="chunk 'd00001-00003'") as e:
        b.read(chunk_id=CHUNK)
    assert f"chunk {CHUNK}" in str(e.value)


def test_read_rejects_a_chunk_from_another_backup_relabelled_to_look_local():
    # Same data key on purpose (worst case); the header is rewritten and its CRC fixed.
    k = DataKey.generate()
    other = build_chunk(key=k, backup_id="20261127T000000Z-ffffffff")
    assert len("20261127T000000Z-ffffffff") == len(BACKUP)
    relabelled = other.data.replace(b"20261127T000000Z-ffffffff", BACKUP.encode(), 1)
    relabelled = recrc_header(relabelled, other.header_len)
    with pytest.raises(WrongKeyOrTampered, match="frame 0"):
        other.read(relabelled, backup_id=BACKUP)


@pytest.mark.parametrize("encrypted", [True, False])
def test_read_rejects_a_chunk_with_the_unencrypted_swap_of_ids_too(encrypted):
    b = build_chunk(encrypted=encrypted, backup_id="20261127T000000Z-ffffffff")
    with pytest.raises(WrongKeyOrTampered):
        b.read(backup_id=BACKUP)


# -- frame damage --------------------------------------------------------------------------


def test_read_rejects_a_flipped_byte_anywhere_in_any_frame_and_names_the_frame():
    b = build_chunk(incompressible_records(10, 1000), codec="none")
    starts = b.frame_starts + [len(b.data)]
    assert len(b.frame_starts) >= 3
    for pos in range(b.header_len, len(b.data)):
        frame = max(i for i, s in enumerate(starts) if s <= pos)
        with pytest.raises(IntegrityError) as e:
            b.read(flip(b.data, pos, 0x80))
        assert f"chunk {CHUNK}" in str(e.value)
        assert f"frame {frame}" in str(e.value), (pos, str(e.value))


def test_read_rejects_a_flipped_bit_in_a_sealed_frame_as_tampering(built):
    s = built.frame_starts[1]
    with pytest.raises(WrongKeyOrTampered, match=f"chunk {CHUNK} frame 1: wrong key, or the data was altered"):
        built.read(flip(built.data, s + 100))


def test_read_rejects_a_flipped_bit_in_the_tag_as_tampering(built):
    end = built.frame_starts[1]
    with pytest.raises(WrongKeyOrTampered, match="frame 0"):
        built.read(flip(built.data, end - 1))


def test_read_rejects_an_unencrypted_frame_with_a_bad_checksum():
    b = build_chunk(encrypted=False)
    with pytest.raises(CorruptData, match="frame 1: frame checksum mismatch"):
        b.read(flip(b.data, b.frame_starts[1] + 10))


@pytest.mark.parametrize("encrypted", [True, False])
def test_read_rejects_reordered_frames(encrypted):
    b = build_chunk(encrypted=encrypted)
    s0, s1, s2 = b.frame_starts[:3]
    swapped = b.data[:s0] + b.data[s1:s2] + b.data[s0:s1] + b.data[s2:]
    with pytest.raises(WrongKeyOrTampered if encrypted else CorruptData, match="frame 0"):
        b.read(swapped)


@pytest.mark.parametrize("encrypted", [True, False])
def test_read_rejects_a_frame_dropped_from_the_middle(encrypted):
    b = build_chunk(encrypted=encrypted)
    s1, s2 = b.frame_starts[1:3]
    with pytest.raises(WrongKeyOrTampered if encrypted else CorruptData, match="frame 1"):
        b.read(b.data[:s1] + b.data[s2:])


@pytest.mark.parametrize("encrypted", [True, False])
def test_read_rejects_a_duplicated_frame(encrypted):
    b = build_chunk(encrypted=encrypted)
    s1, s2 = b.frame_starts[1:3]
    with pytest.raises(IntegrityError, match="frame 2"):
        b.read(b.data[:s2] + b.data[s1:s2] + b.data[s2:])


@pytest.mark.parametrize("encrypted", [True, False])
def test_read_rejects_a_chunk_missing_its_final_frame(encrypted):
    b = build_chunk(encrypted=encrypted)
    last = b.frame_starts[-1]
    with pytest.raises(TruncatedData, match="without a final frame"):
        b.read(b.data[:last])


@pytest.mark.parametrize("encrypted", [True, False])
def test_read_rejects_a_chunk_truncated_at_any_point(encrypted):
    b = build_chunk(incompressible_records(10, 1000), encrypted=encrypted)
    for cut in range(0, len(b.data), 97):
        with pytest.raises(IntegrityError) as e:
            b.read(b.data[:cut])
        assert isinstance(e.value, TruncatedData), (cut, e.value)


def test_read_rejects_a_final_flag_set_on_an_earlier_frame(built):
    s = built.frame_starts[1]
    edited = bytearray(built.data)
    edited[s] |= 0x80
    with pytest.raises(WrongKeyOrTampered, match="frame 1"):
        built.read(bytes(edited))


def test_read_rejects_a_final_flag_cleared_on_the_last_frame():
    # Make the last frame full-length so clearing the flag passes the length rule.
    recs = incompressible_records(1, FRAME * 3)
    b = build_chunk(recs, codec="none")
    last = b.frame_starts[-1]
    v = int.from_bytes(b.data[last : last + 4], "big")
    edited = b.data[:last] + (v & 0x7FFFFFFF).to_bytes(4, "big") + b.data[last + 4 :]
    with pytest.raises(IntegrityError, match=f"frame {len(b.frame_starts) - 1}"):
        b.read(edited)


@pytest.mark.parametrize("encrypted", [True, False])
def test_read_rejects_trailing_bytes_after_the_final_frame(encrypted):
    b = build_chunk(encrypted=encrypted)
    with pytest.raises(CorruptData, match="trailing bytes after the final frame"):
        b.read(b.data + b"\x00")


def test_read_error_names_the_object_given_in_where(built):
    damaged = flip(built.data, built.frame_starts[1] + 9)
    with pytest.raises(WrongKeyOrTampered, match=r"chunk d00001-00002 \(backups/x/chunks/d00001-00002.fbc\) frame 1"):
        list(
            read_chunk(
                damaged, backup_id=BACKUP, chunk_id=CHUNK, data_key=built.key,
                where="backups/x/chunks/d00001-00002.fbc",
            )
        )


def test_read_header_reports_codec_kind_and_ids(built):
    h = read_header(io.BytesIO(built.data), name="x")
    assert (h.kind, h.codec.name, h.encrypted, h.frame_size) == ("docs", "zstd", True, FRAME)
    assert (h.backup_id, h.chunk_id) == (BACKUP, CHUNK)
    assert h.key_id == built.key.key_id_bytes


def test_read_stats_recompute_what_the_writer_reported(built):
    from firebackup.format.chunk import ReadStats

    st = ReadStats()
    recs = list(read_chunk(built.data, backup_id=BACKUP, chunk_id=CHUNK, data_key=built.key, stats=st))
    assert recs == built.records
    assert (st.records, st.bytes_raw, st.bytes_stored, st.sha256) == (
        built.stats.records, built.stats.bytes_raw, built.stats.bytes_stored, built.stats.sha256,
    )


def test_a_batch_of_large_records_is_split_so_the_reader_accepts_it(monkeypatch):
    import firebackup.format.chunk as chunk_mod

    monkeypatch.setattr(chunk_mod, "SPLIT_BATCH_BYTES", 10_000)
    recs = incompressible_records(50, 3000)  # ~150 kB in one add_many call
    b = build_chunk(recs, codec="none")
    assert b.read() == recs
    # More batches than one: each batch starts with its u32 count; count them by decoding.
    assert b.stats.records == 50


def test_a_record_over_the_limit_is_refused_with_a_usage_error(monkeypatch):
    import firebackup.format.chunk as chunk_mod

    monkeypatch.setattr(chunk_mod, "MAX_RECORD_BYTES", 1000)
    monkeypatch.setattr(chunk_mod, "SPLIT_BATCH_BYTES", 1000)
    w = ChunkWriter(io.BytesIO(), backup_id=BACKUP, chunk_id=CHUNK, data_key=None)
    with pytest.raises(UsageError, match="too large"):
        w.add_many([b"x" * 1001])


def test_reading_a_highly_compressible_chunk_holds_bounded_memory():
    import tracemalloc

    recs = [bytes(1 << 20)] * 48  # 48 MiB that compress to almost nothing
    b = build_chunk(recs, encrypted=True, codec="zstd")
    assert len(b.data) < 1 << 20
    tracemalloc.start()
    try:
        n = 0
        for r in read_chunk(b.data, backup_id=BACKUP, chunk_id=CHUNK, data_key=b.key):
            n += len(r)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 48 << 20
    assert peak < 20 << 20  # a 4 MiB batch, its copies and pieces; never the whole 48 MiB


@pytest.mark.parametrize("encrypted", [True, False])
def test_record_batches_hold_exactly_the_records_in_order_and_damage_is_still_named(encrypted):
    from firebackup.format.chunk import read_chunk_batches

    recs = [b""] + incompressible_records(300, 700) + [b"y" * 50_000]
    b = build_chunk(recs, encrypted=encrypted)
    batches = list(read_chunk_batches(b.data, backup_id=BACKUP, chunk_id=CHUNK, data_key=b.key))
    assert all(isinstance(x, list) and x for x in batches)
    assert [r for x in batches for r in x] == recs
    damaged = flip(b.data, b.frame_starts[-1] + 6)
    with pytest.raises(IntegrityError, match=f"chunk {CHUNK} frame"):
        list(read_chunk_batches(damaged, backup_id=BACKUP, chunk_id=CHUNK, data_key=b.key))
