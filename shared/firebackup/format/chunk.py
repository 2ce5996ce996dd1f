"""Chunk objects: header + sealed frames of one compressed record stream (docs/format.md, "Chunk").

ChunkWriter streams records into a sink in bounded memory (one batch of records plus about one
frame of compressed bytes); read_chunk streams them back, checking every frame before any of
its bytes reach the decompressor, and names the chunk and frame in every error.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from dataclasses import dataclass
from itertools import chain, islice
from typing import Iterable, Iterator, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from firebackup.codec.framing import MAX_BATCH_BYTES, BatchDecoder, encode_batch
from firebackup.compression import DEFAULT_CODEC, Codec, Decompressor, codec_by_id, get_codec
from firebackup.crypto.aead import SALT_BYTES, TAG_BYTES, chunk_key, frame_aad_suffix, frame_nonce
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

MAGIC = b"FBKC"
FORMAT_VERSION = 1
KINDS = {"docs": 1, "auth": 2, "changes": 3}
KIND_NAMES = {v: k for k, v in KINDS.items()}
ENC_NONE = 0
ENC_AES256GCM = 1
# Measured in bench/pipeline.py: 1 MiB frames cost <1% over bigger ones and bound reader memory.
DEFAULT_FRAME_SIZE = 1 << 20
MIN_FRAME_SIZE = 4 << 10
MAX_FRAME_SIZE = 16 << 20
# Records are framed and handed to the compressor in batches of about this many raw bytes.
BATCH_TARGET_BYTES = 256 << 10
# A batch above this is split in two (bounds writer and reader memory when records are big, e.g.
# 1 MiB documents); one record may be
# up to MAX_RECORD_BYTES (Firestore documents are at most 1 MiB).
SPLIT_BATCH_BYTES = 4 << 20
MAX_RECORD_BYTES = MAX_BATCH_BYTES
_MIN_STEP, _MAX_STEP, _FIRST_STEP = 8, 2048, 64

_FIXED = struct.Struct(">4sBBBBI16s32s")  # magic .. salt: 60 bytes
_FINAL_BIT = 0x80000000
_ZERO_KEY_ID = bytes(16)
_ZERO_SALT = bytes(SALT_BYTES)


class Sink(Protocol):
    """Where a ChunkWriter puts the chunk's bytes, in order; the return value is ignored."""

    def write(self, data: bytes) -> object: ...


class Source(Protocol):
    """What read_chunk reads a chunk from: read(n) returns at most n bytes, b"" (or None) at the end."""

    def read(self, n: int = -1, /) -> bytes | None: ...


@dataclass(frozen=True)
class ChunkStats:
    """What a finished chunk holds: record count, record bytes, stored bytes and their SHA-256 (hex)."""

    records: int
    bytes_raw: int
    bytes_stored: int
    sha256: str


def _check_id(what: str, value: str) -> bytes:
    try:
        raw = value.encode("ascii")
    except (UnicodeEncodeError, AttributeError):
        raise UsageError(f"{what} {value!r} must be an ASCII string") from None
    if not 1 <= len(raw) <= 255:
        raise UsageError(f"{what} {value!r} must be 1..255 characters")
    return raw


def build_header(
    *, kind: int, codec_id: int, enc: int, frame_size: int, key_id: bytes, salt: bytes, backup_id: bytes, chunk_id: bytes
) -> bytes:
    """The chunk header bytes, CRC included (docs/format.md, "Chunk header")."""
    head = (
        _FIXED.pack(MAGIC, FORMAT_VERSION, kind, codec_id, enc, frame_size, key_id, salt)
        + bytes((len(backup_id),))
        + backup_id
        + bytes((len(chunk_id),))
        + chunk_id
    )
    return head + zlib.crc32(head).to_bytes(4, "big")


class ChunkWriter:
    """Writes one chunk to `sink` (anything with .write(bytes)); call finish() to end it.

    Records go in with add() or, faster, add_many(); nothing is written to the sink after
    finish(), which returns ChunkStats. Without a data_key the chunk is unencrypted (CRC per frame).
    """

    def __init__(
        self,
        sink: Sink,
        *,
        backup_id: str,
        chunk_id: str,
        kind: str = "docs",
        codec: str | Codec = DEFAULT_CODEC,
        level: int | None = None,
        data_key: DataKey | None,
        frame_size: int = DEFAULT_FRAME_SIZE,
    ):
        if kind not in KINDS:
            raise UsageError(f"unknown chunk kind {kind!r}: use one of {', '.join(KINDS)}")
        if not MIN_FRAME_SIZE <= frame_size <= MAX_FRAME_SIZE:
            raise UsageError(f"frame size {frame_size} is out of range {MIN_FRAME_SIZE}..{MAX_FRAME_SIZE}")
        c = codec if isinstance(codec, Codec) else get_codec(codec)
        self._comp = c.compressor(level)
        self.codec = c
        self.backup_id = backup_id
        self.chunk_id = chunk_id
        self._sink = sink
        self._frame_size = frame_size
        if data_key is not None:
            salt = os.urandom(SALT_BYTES)
            self._aead: AESGCM | None = AESGCM(chunk_key(data_key, salt))
            enc, key_id = ENC_AES256GCM, data_key.key_id_bytes
        else:
            salt, self._aead, enc, key_id = _ZERO_SALT, None, ENC_NONE, _ZERO_KEY_ID
        self.header = build_header(
            kind=KINDS[kind],
            codec_id=c.id,
            enc=enc,
            frame_size=frame_size,
            key_id=key_id,
            salt=salt,
            backup_id=_check_id("backup id", backup_id),
            chunk_id=_check_id("chunk id", chunk_id),
        )
        self._crc_seed = zlib.crc32(self.header)
        self._sha = hashlib.sha256()
        self._stored = 0
        self._records = 0
        self._raw = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._step = _FIRST_STEP
        self._buf = bytearray()
        self._tag = TAG_BYTES if self._aead is not None else 4
        self._out_mv = memoryview(bytearray(4 + frame_size + self._tag))
        self._index = 0
        self._stats: ChunkStats | None = None
        self._emit(self.header)

    # -- records in --------------------------------------------------------------------------

    def add(self, record: bytes) -> None:
        """Append one record."""
        if self._stats is not None:
            raise UsageError(f"chunk {self.chunk_id}: add() after finish()")
        self._pending.append(record)
        self._pending_bytes += len(record)
        if self._pending_bytes >= BATCH_TARGET_BYTES:
            self._flush_pending()

    def add_many(self, records: Iterable[bytes]) -> None:
        """Append records in order; no Python work per record beyond slicing into batches."""
        if self._stats is not None:
            raise UsageError(f"chunk {self.chunk_id}: add_many() after finish()")
        if self._pending:
            self._flush_pending()
        if isinstance(records, (list, tuple)):
            i, n = 0, len(records)
            while i < n:
                step = self._step
                self._write_batch(records[i : i + step])
                i += step
        else:
            it = iter(records)
            while True:
                batch = list(islice(it, self._step))
                if not batch:
                    break
                self._write_batch(batch)

    def _flush_pending(self) -> None:
        batch, self._pending, self._pending_bytes = self._pending, [], 0
        self._write_batch(batch)

    def _write_batch(self, batch: list[bytes] | tuple[bytes, ...]) -> None:
        data, raw = encode_batch(batch, SPLIT_BATCH_BYTES)
        n = len(batch)
        if data is None and n == 1:
            data, raw = encode_batch(batch, MAX_RECORD_BYTES)
            if data is None:
                raise UsageError(
                    f"chunk {self.chunk_id}: a record of {raw} bytes is too large (limit {MAX_RECORD_BYTES})"
                )
        if data is None:
            # Unusually large records: split so no batch comes near the reader's limit.
            half = n // 2
            self._write_batch(batch[:half])
            self._write_batch(batch[half:])
            return
        self._records += n
        self._raw += raw
        # Size the next batch from this one's mean record size (memory ~ BATCH_TARGET_BYTES).
        self._step = max(_MIN_STEP, min(_MAX_STEP, BATCH_TARGET_BYTES * n // (raw + 4 * n)))
        out = self._comp.compress(data)
        if out:
            self._buf += out
            if len(self._buf) >= self._frame_size:
                self._drain(final=False)

    # -- frames out --------------------------------------------------------------------------

    def _drain(self, *, final: bool) -> None:
        buf, fs = self._buf, self._frame_size
        start = 0
        # Pieces are views into buf (no copy); every view is gone before buf is resized.
        with memoryview(buf) as mv:
            while len(buf) - start >= fs:
                self._seal(mv[start : start + fs], False)
                start += fs
            if final:
                self._seal(mv[start:], True)
                start = len(buf)
        if start:
            del buf[:start]

    def _seal(self, piece: memoryview, final: bool) -> None:
        i = self._index
        n = len(piece)
        out = self._out_mv[: 4 + n + self._tag]
        out[:4] = (n | (_FINAL_BIT if final else 0)).to_bytes(4, "big")
        if self._aead is not None:
            # Sealed into a reused buffer: one copy per frame (the bytes handed to the sink).
            self._aead.encrypt_into(frame_nonce(i), piece, self.header + frame_aad_suffix(i, final), out[4:])
        else:
            out[4 : 4 + n] = piece
            crc = zlib.crc32(piece, zlib.crc32(frame_aad_suffix(i, final), self._crc_seed))
            out[4 + n :] = crc.to_bytes(4, "big")
        piece.release()
        self._sha.update(out)  # hashed while still in cache
        data = bytes(out)
        out.release()
        self._stored += len(data)
        self._sink.write(data)
        self._index = i + 1

    def _emit(self, data: bytes) -> None:
        self._sha.update(data)
        self._stored += len(data)
        self._sink.write(data)

    def finish(self) -> ChunkStats:
        """End the stream, write the final frame and return the chunk's stats (idempotent)."""
        if self._stats is None:
            if self._pending:
                self._flush_pending()
            self._buf += self._comp.flush()
            self._drain(final=True)
            self._out_mv.release()
            self._stats = ChunkStats(self._records, self._raw, self._stored, self._sha.hexdigest())
        return self._stats

    @property
    def records(self) -> int:
        return self._records + len(self._pending)


# -- reading ---------------------------------------------------------------------------------


def _read_exact(stream: Source, n: int) -> bytes:
    data = stream.read(n)
    if data is None:
        data = b""
    if len(data) == n or not data:
        return bytes(data)
    parts = [data]
    got = len(data)
    while got < n:
        more = stream.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


@dataclass(frozen=True)
class ChunkHeader:
    """A parsed chunk header."""

    version: int
    kind: str
    codec: Codec
    encrypted: bool
    frame_size: int
    key_id: bytes
    salt: bytes
    backup_id: str
    chunk_id: str
    raw: bytes


def read_header(stream: Source, *, name: str) -> ChunkHeader:
    """Read and check a chunk header (magic, version, CRC, ids). Errors name `name`."""
    fixed = _read_exact(stream, _FIXED.size + 1)
    if len(fixed) < 5:
        if fixed and not MAGIC.startswith(fixed):
            raise CorruptData("not a FireBackup chunk (bad magic)", where=name)
        raise TruncatedData("the chunk ends inside its header", where=name)
    if fixed[:4] != MAGIC:
        raise CorruptData("not a FireBackup chunk (bad magic)", where=name)
    if fixed[4] != FORMAT_VERSION:
        raise UnsupportedFormat(
            f"chunk format version {fixed[4]} is not supported (this build reads {FORMAT_VERSION}): "
            "upgrade FireBackup, or the header is damaged",
            where=name,
        )
    if len(fixed) < _FIXED.size + 1:
        raise TruncatedData("the chunk ends inside its header", where=name)
    b_len = fixed[-1]
    rest = _read_exact(stream, b_len + 1)
    if len(rest) < b_len + 1:
        raise TruncatedData("the chunk ends inside its header", where=name)
    c_len = rest[-1]
    tail = _read_exact(stream, c_len + 4)
    if len(tail) < c_len + 4:
        raise TruncatedData("the chunk ends inside its header", where=name)
    raw = fixed + rest + tail
    if zlib.crc32(raw[:-4]) != int.from_bytes(raw[-4:], "big"):
        raise CorruptData("chunk header checksum mismatch (the header is damaged)", where=name)
    _, _, kind_id, codec_id, enc, frame_size, key_id, salt = _FIXED.unpack(fixed[: _FIXED.size])
    if kind_id not in KIND_NAMES:
        raise UnsupportedFormat(f"unknown chunk kind id {kind_id}: upgrade FireBackup to read it", where=name)
    codec = codec_by_id(codec_id, where=name)
    if enc not in (ENC_NONE, ENC_AES256GCM):
        raise UnsupportedFormat(f"unknown encryption id {enc}: upgrade FireBackup to read it", where=name)
    if not MIN_FRAME_SIZE <= frame_size <= MAX_FRAME_SIZE:
        raise CorruptData(f"frame size {frame_size} in the header is out of range", where=name)
    try:
        backup_id = rest[:-1].decode("ascii")
        chunk_id = tail[:c_len].decode("ascii")
    except UnicodeDecodeError:
        raise CorruptData("chunk header ids are not ASCII", where=name) from None
    return ChunkHeader(
        FORMAT_VERSION, KIND_NAMES[kind_id], codec, enc == ENC_AES256GCM, frame_size, key_id, salt, backup_id, chunk_id, raw
    )


class ReadStats:
    """Filled in while read_chunk runs: what ChunkStats the writer reported, recomputed.

    After the iterator is exhausted, compare with the manifest's ChunkEntry (verify in one pass).
    """

    __slots__ = ("records", "bytes_raw", "bytes_stored", "_sha")

    def __init__(self) -> None:
        self.records = 0
        self.bytes_raw = 0
        self.bytes_stored = 0
        self._sha = hashlib.sha256()

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


class _Hashing:
    """Wraps a stream so every byte read is counted and hashed."""

    __slots__ = ("_s", "_st")

    def __init__(self, stream: Source, stats: ReadStats) -> None:
        self._s, self._st = stream, stats

    def read(self, n: int = -1, /) -> bytes | None:
        b = self._s.read(n)
        if b:
            self._st.bytes_stored += len(b)
            self._st._sha.update(b)
        return b


def read_chunk(
    stream: Source | bytes | bytearray | memoryview,
    *,
    backup_id: str,
    chunk_id: str,
    data_key: DataKey | None,
    where: str = "",
    stats: ReadStats | None = None,
) -> Iterator[bytes]:
    """Yield the chunk's records in order, checking every frame first.

    `stream` has .read(n) (or is bytes). Raises WrongKeyOrTampered, CorruptData, TruncatedData
    or UnsupportedFormat naming the chunk (and `where`, e.g. the object key) and the frame.
    Records of a frame are yielded only after that frame passed its check (and, for the last
    frame, after the check for trailing bytes); frames are decompressed in bounded pieces, so
    memory does not depend on the compression ratio. Pass `stats` (a ReadStats) to get
    the record count, record bytes, stored bytes and SHA-256 of the stored bytes as read.
    """
    return chain.from_iterable(read_chunk_batches(
        stream, backup_id=backup_id, chunk_id=chunk_id, data_key=data_key, where=where, stats=stats))


def read_chunk_batches(
    stream: Source | bytes | bytearray | memoryview,
    *,
    backup_id: str,
    chunk_id: str,
    data_key: DataKey | None,
    where: str = "",
    stats: ReadStats | None = None,
) -> Iterator[list[bytes]]:
    """read_chunk(), the records handed on in lists (as they complete): no Python step per record."""
    source: Source = io.BytesIO(stream) if isinstance(stream, (bytes, bytearray, memoryview)) else stream
    if stats is not None:
        source = _Hashing(source, stats)
    name = f"chunk {chunk_id} ({where})" if where else f"chunk {chunk_id}"
    return _read_chunk(source, backup_id, chunk_id, data_key, name, stats)


def _read_chunk(
    stream: Source, backup_id: str, chunk_id: str, data_key: DataKey | None, name: str, stats: ReadStats | None
) -> Iterator[list[bytes]]:
    h = read_header(stream, name=name)
    if h.backup_id != backup_id or h.chunk_id != chunk_id:
        raise WrongKeyOrTampered(
            f"the chunk belongs to backup {h.backup_id!r} chunk {h.chunk_id!r}, not to this place: "
            "the data was altered or moved",
            where=name,
        )
    if h.encrypted:
        if data_key is None:
            raise BadKey(f"{name}: the chunk is encrypted: pass the backup's key (--key)")
        if h.key_id != data_key.key_id_bytes:
            raise WrongKeyOrTampered(
                f"wrong key, or the data was altered (the chunk was encrypted with data key "
                f"{h.key_id.hex()}, this backup's is {data_key.key_id})",
                where=name,
            )
        aead: AESGCM | None = AESGCM(chunk_key(data_key, h.salt))
        tag = TAG_BYTES
    else:
        if data_key is not None:
            # An unencrypted chunk inside an encrypted backup would bypass authentication.
            raise WrongKeyOrTampered(
                "wrong key, or the data was altered (the chunk is not encrypted, the backup is)", where=name
            )
        aead = None
        tag = 4
    header = h.raw
    crc_seed = zlib.crc32(header)
    fs = h.frame_size
    dec = h.codec.decompressor()
    records = BatchDecoder()
    i = 0
    while True:
        fname = f"{name} frame {i}"
        prefix = _read_exact(stream, 4)
        if len(prefix) < 4:
            if i == 0 and not prefix:
                raise TruncatedData("the chunk has no frames (missing final frame)", where=fname)
            if not prefix:
                raise TruncatedData(f"the chunk ends after frame {i - 1} without a final frame", where=fname)
            raise TruncatedData("the chunk ends inside a frame prefix (missing final frame)", where=fname)
        v = int.from_bytes(prefix, "big")
        final = bool(v & _FINAL_BIT)
        length = v & ~_FINAL_BIT
        if length > fs:
            raise CorruptData(f"frame length {length} exceeds the frame size {fs}", where=fname)
        if not final and length != fs:
            raise CorruptData(f"non-final frame has length {length}, expected {fs}", where=fname)
        body = _read_exact(stream, length + tag)
        if len(body) < length + tag:
            raise TruncatedData("the chunk ends inside this frame (missing final frame)", where=fname)
        suffix = frame_aad_suffix(i, final)
        if aead is not None:
            try:
                piece = aead.decrypt(frame_nonce(i), body, header + suffix)
            except InvalidTag:
                raise WrongKeyOrTampered(where=fname) from None
        else:
            piece = body[:length]
            if zlib.crc32(piece, zlib.crc32(suffix, crc_seed)) != int.from_bytes(body[length:], "big"):
                raise CorruptData("frame checksum mismatch (damaged, reordered or misplaced frame)", where=fname)
        if final and stream.read(1):
            raise CorruptData("trailing bytes after the final frame", where=fname)
        # Decompressed in bounded pieces (compression.MAX_OUT), records handed on as they
        # complete: memory does not depend on how well a frame compressed.
        pieces = _frame_records(dec, records, piece, final)
        while True:
            try:
                recs = next(pieces, None)
            except IntegrityError as e:
                raise type(e)(e.reason, where=fname) from None
            if recs is None:
                break
            if stats is not None:
                stats.records += len(recs)
                stats.bytes_raw += sum(map(len, recs))
            yield recs
        if final:
            return
        i += 1


def _frame_records(dec: Decompressor, records: BatchDecoder, piece: bytes, final: bool) -> Iterator[list[bytes]]:
    for out in dec.decompress_iter(piece):
        recs = records.feed(out)
        if recs:
            yield recs
    if final:
        tail = records.feed(dec.finish())
        records.finish()
        if tail:
            yield tail


def chunk_header_info(data: bytes) -> ChunkHeader:
    """Parse just the header of a chunk held in memory (for `show`/diagnostics)."""
    return read_header(io.BytesIO(data), name="chunk")


__all__ = [
    "ChunkHeader",
    "ChunkStats",
    "ChunkWriter",
    "DEFAULT_FRAME_SIZE",
    "KINDS",
    "ReadStats",
    "chunk_header_info",
    "read_chunk",
    "read_header",
]
