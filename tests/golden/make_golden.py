"""Regenerate the v1 golden files (run by hand only for a NEW format version; never overwrite v1).

    .venv/bin/python tests/golden/make_golden.py

TEST ONLY: test-only-kek-v1.key is a published key. It protects nothing and must never be used
for a real backup.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import struct
import sys
from pathlib import Path

from firebackup.crypto.keys import DataKey, LocalKey
from firebackup.format.chunk import ChunkWriter
from firebackup.format.manifest import ChunkEntry, Manifest, encode_manifest

HERE = Path(__file__).parent
BACKUP_ID = "20261128T025000Z-0badc0de"
PREFIX = "projects/golden-project/databases/(default)/documents/"


def documents() -> list[bytes]:
    """Documents exercising every Firestore value type and edge bit patterns."""
    from google.cloud.firestore_v1.types import document

    Document = document.Document.pb()
    out = []
    for i in range(40):
        d = Document()
        d.name = f"{PREFIX}golden/doc{i:03d}"
        d.create_time.seconds, d.create_time.nanos = 1_764_000_000 + i, 123_456_789
        d.update_time.seconds, d.update_time.nanos = 1_764_000_100 + i, 999_999_999
        f = d.fields
        f["i64max"].integer_value = 2**63 - 1
        f["i64min"].integer_value = -(2**63)
        f["nan"].double_value = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000001 + i))[0]
        f["negzero"].double_value = -0.0
        f["inf"].double_value = math.inf
        f["ts"].timestamp_value.seconds, f["ts"].timestamp_value.nanos = -62135596800, 1
        f["str"].string_value = "héllo wörld ✓ " * (i % 5) + str(i)
        f["bytes"].bytes_value = bytes(range(256))[: i * 6]
        f["ref"].reference_value = f"projects/other/databases/db2/documents/x/{i}"
        f["geo"].geo_point_value.latitude, f["geo"].geo_point_value.longitude = -89.5, 179.25
        f["null"].null_value = 0
        f["bool"].boolean_value = bool(i % 2)
        # Incompressible bytes, so the chunk spans several 4 KiB frames.
        f["blob"].bytes_value = b"".join(hashlib.sha256(b"%d/%d" % (i, j)).digest() for j in range(8))
        arr = f["arr"].array_value.values
        for j in range(i % 4):
            arr.add().integer_value = j
        m = f["map"].map_value.fields
        m["nested"].map_value.fields["deep"].string_value = "x" * i
        vec = f["vector"].map_value.fields
        vec["__type__"].string_value = "__vector__"
        vals = vec["value"].array_value.values
        for j in range(3):
            vals.add().double_value = j / 3
        out.append(d.SerializeToString(deterministic=True))
    return out


def auth_users() -> list[bytes]:
    return [
        json.dumps(
            {"localId": f"uid{i}", "email": f"user{i}@example.com", "emailVerified": i % 2 == 0,
             "passwordHash": base64.b64encode(bytes([i]) * 32).decode(), "salt": base64.b64encode(b"salt%d" % i).decode(),
             "createdAt": str(1764000000000 + i)},
            sort_keys=True, separators=(",", ":"),
        ).encode()
        for i in range(5)
    ]


def main() -> None:
    if (HERE / "manifest-v1.fbm").exists() and "--force" not in sys.argv:
        sys.exit("golden v1 files exist; they are the contract. Add v2 files instead (or --force if you know why).")
    key_text = LocalKey.generate_text()
    kek = LocalKey.from_text(key_text)
    dek = DataKey.generate()
    (HERE / "test-only-kek-v1.key").write_text(key_text)
    docs, users = documents(), auth_users()
    entries = []
    for chunk_id, kind, codec, recs, data_key in [
        ("d00000-00000", "docs", "zstd", docs, dek),
        ("a00000", "auth", "gzip", users, dek),
    ]:
        buf = io.BytesIO()
        w = ChunkWriter(buf, backup_id=BACKUP_ID, chunk_id=chunk_id, kind=kind, codec=codec, data_key=data_key, frame_size=4096)
        w.add_many(recs)
        s = w.finish()
        (HERE / f"{chunk_id}-v1.fbc").write_bytes(buf.getvalue())
        entries.append(ChunkEntry(chunk_id, kind, f"backups/{BACKUP_ID}/chunks/{chunk_id}.fbc", s.records, s.bytes_raw, s.bytes_stored, s.sha256))
    # An unencrypted chunk too (CRC frames), outside the encrypted backup.
    buf = io.BytesIO()
    w = ChunkWriter(buf, backup_id=BACKUP_ID, chunk_id="plain", codec="brotli", data_key=None, frame_size=4096)
    w.add_many(docs[:10])
    w.finish()
    (HERE / "plain-v1.fbc").write_bytes(buf.getvalue())
    m = Manifest(
        backup_id=BACKUP_ID, created_at="2026-11-28T02:50:00.000000Z", read_time="2026-11-28T02:49:59.999999Z",
        source={"project": "golden-project", "database": "(default)"}, collections=["golden"], chunks=entries,
        documents=len(docs), auth_users=len(users), compression="zstd", level=3,
        auth_hash_config={"algorithm": "SCRYPT", "rounds": 8, "memCost": 14},
    )
    (HERE / "manifest-v1.fbm").write_bytes(encode_manifest(m, data_key=dek, kek=kek))
    (HERE / "records-v1.json").write_text(json.dumps(
        {"docs": [base64.b64encode(r).decode() for r in docs], "auth": [base64.b64encode(r).decode() for r in users]}, indent=0
    ) + "\n")


if __name__ == "__main__":
    main()
