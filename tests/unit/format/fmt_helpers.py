"""Helpers for format tests: build chunks in memory and locate their frames."""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass

from firebackup.crypto.keys import DataKey
from firebackup.format.chunk import ChunkWriter, read_chunk

BACKUP = "20261128T025000Z-0123abcd"
CHUNK = "d00001-00002"
FRAME = 4096


@dataclass
class Built:
    data: bytes
    records: list[bytes]
    key: DataKey | None
    header_len: int
    frame_starts: list[int]  # offset of each frame's 4-byte prefix
    stats: object

    def read(self, data: bytes | None = None, *, backup_id: str = BACKUP, chunk_id: str = CHUNK, key="same"):
        k = self.key if key == "same" else key
        return list(read_chunk(self.data if data is None else data, backup_id=backup_id, chunk_id=chunk_id, data_key=k))


def frame_offsets(data: bytes, header_len: int, tag: int) -> list[int]:
    """Offsets of frame prefixes, walking the chunk."""
    out, pos = [], header_len
    while pos < len(data):
        out.append(pos)
        v = int.from_bytes(data[pos : pos + 4], "big")
        pos += 4 + (v & 0x7FFFFFFF) + tag
        if v & 0x80000000:
            break
    return out


def incompressible_records(n: int, size: int, seed: int = 1) -> list[bytes]:
    """Records that do not compress (so chunks have many frames)."""
    import random

    rnd = random.Random(seed)
    return [rnd.randbytes(size) for _ in range(n)]


def build_chunk(records=None, *, encrypted=True, codec="zstd", frame_size=FRAME, key=None, backup_id=BACKUP, chunk_id=CHUNK) -> Built:
    if records is None:
        records = incompressible_records(40, 300)
    dk = (key or DataKey.generate()) if encrypted else None
    buf = io.BytesIO()
    w = ChunkWriter(buf, backup_id=backup_id, chunk_id=chunk_id, codec=codec, data_key=dk, frame_size=frame_size)
    w.add_many(records)
    stats = w.finish()
    data = buf.getvalue()
    hl = len(w.header)
    return Built(data, list(records), dk, hl, frame_offsets(data, hl, 16 if encrypted else 4), stats)


def recrc_header(data: bytes, header_len: int) -> bytes:
    """Recompute the header CRC after an edit (an attacker can always do this)."""
    head = data[: header_len - 4]
    return head + zlib.crc32(head).to_bytes(4, "big") + data[header_len:]
