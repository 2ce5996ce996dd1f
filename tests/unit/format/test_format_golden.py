"""The checked-in v1 golden files still decode to the exact records (format can't change silently)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path

from firebackup.crypto.keys import LocalKey
from firebackup.format.chunk import ChunkWriter, read_chunk, read_header
from firebackup.format.manifest import decode_manifest, read_manifest_summary

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
BID = "20261128T025000Z-0badc0de"


def records(kind: str) -> list[bytes]:
    return [base64.b64decode(r) for r in json.loads((GOLDEN / "records-v1.json").read_text())[kind]]


def open_manifest():
    kek = LocalKey.from_file(GOLDEN / "test-only-kek-v1.key")
    return decode_manifest((GOLDEN / "manifest-v1.fbm").read_bytes(), kek=kek)


def test_the_golden_manifest_decodes_with_the_test_key():
    m, dek = open_manifest()
    assert m.backup_id == BID and m.encrypted and m.format_version == 1
    assert (m.documents, m.auth_users, m.compression, m.level) == (40, 5, "zstd", 3)
    assert m.read_time == "2026-11-28T02:49:59.999999Z"
    assert m.auth_hash_config == {"algorithm": "SCRYPT", "rounds": 8, "memCost": 14}
    assert [c.chunk_id for c in m.chunks] == ["d00000-00000", "a00000"]
    assert m.crypto["dek_id"] == dek.key_id


def test_the_golden_manifest_summary_reads_without_a_key():
    s = read_manifest_summary((GOLDEN / "manifest-v1.fbm").read_bytes())
    assert (s["backup_id"], s["documents"], s["encrypted"]) == (BID, 40, True)
    assert s["kek_id"] == LocalKey.from_file(GOLDEN / "test-only-kek-v1.key").key_id


def test_the_golden_chunks_decode_to_the_exact_records_and_match_the_manifest_hashes():
    m, dek = open_manifest()
    expected = {"d00000-00000": records("docs"), "a00000": records("auth")}
    for entry in m.chunks:
        data = (GOLDEN / f"{entry.chunk_id}-v1.fbc").read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry.sha256
        assert len(data) == entry.bytes_stored
        got = list(read_chunk(data, backup_id=BID, chunk_id=entry.chunk_id, data_key=dek))
        assert got == expected[entry.chunk_id]
        assert entry.records == len(got) and entry.bytes_raw == sum(map(len, got))


def test_the_golden_documents_chunk_spans_several_frames():
    data = (GOLDEN / "d00000-00000-v1.fbc").read_bytes()
    h = read_header(io.BytesIO(data), name="golden")
    assert (h.kind, h.codec.name, h.encrypted, h.frame_size) == ("docs", "zstd", True, 4096)
    assert len(data) > 3 * 4096


def test_the_golden_unencrypted_chunk_decodes():
    data = (GOLDEN / "plain-v1.fbc").read_bytes()
    got = list(read_chunk(data, backup_id=BID, chunk_id="plain", data_key=None))
    assert got == records("docs")[:10]


def test_todays_writer_produces_the_golden_header_layout():
    # Same ids, codec and frame size: only key id, salt and CRC may differ from the golden header.
    m, dek = open_manifest()
    golden = (GOLDEN / "d00000-00000-v1.fbc").read_bytes()
    gh = read_header(io.BytesIO(golden), name="golden").raw
    buf = io.BytesIO()
    w = ChunkWriter(buf, backup_id=BID, chunk_id="d00000-00000", codec="zstd", data_key=dek, frame_size=4096)
    w.finish()
    nh = w.header
    assert len(nh) == len(gh)
    assert nh[:28] == gh[:28]  # magic, version, kind, codec, encryption, frame size, key id
    assert nh[60:-4] == gh[60:-4]  # ids
