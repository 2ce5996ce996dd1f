"""Streaming compression codecs, identified by a one-byte id in chunk headers (docs/format.md).

Every codec compresses one continuous stream: `codec.compressor(level)` gives an object with
`.compress(b) -> bytes` and `.flush() -> bytes` (ends the stream); `codec.decompressor()` gives
one with `.decompress(b) -> bytes` and `.finish() -> bytes` (raises CorruptData if the stream is
damaged or incomplete). Only firebackup.errors types leave this module.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import brotli
import zstandard

# decompress_iter output pieces: small enough to bound memory, big enough to keep calls few.
MAX_OUT = 1 << 20

from firebackup.errors import CorruptData, UnsupportedFormat, UsageError


class Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class Decompressor(Protocol):
    def decompress(self, data: bytes) -> bytes: ...

    def decompress_iter(self, data: bytes, max_out: int = ...) -> Iterator[bytes]:
        """Like decompress(), in pieces of about max_out bytes at most (bounded memory)."""

    def finish(self) -> bytes: ...


@dataclass(frozen=True)
class Codec:
    """A compression codec: name, header id, default level and valid level range."""

    name: str
    id: int
    default_level: int
    min_level: int
    max_level: int
    _compressor: Callable[[int], Compressor]
    _decompressor: Callable[[], Decompressor]

    def compressor(self, level: int | None = None) -> Compressor:
        """Start a compressed stream; level None means the codec's default."""
        lvl = self.default_level if level is None else level
        if not isinstance(lvl, int) or not self.min_level <= lvl <= self.max_level:
            raise UsageError(
                f"compression level {level!r} is out of range for {self.name}: "
                f"use {self.min_level}..{self.max_level}"
            )
        return self._compressor(lvl)

    def decompressor(self) -> Decompressor:
        """Start decompressing one stream."""
        return self._decompressor()


# --- none -----------------------------------------------------------------------------------


class _NoneCompressor:
    __slots__ = ()

    def compress(self, data: bytes) -> bytes:
        return bytes(data)

    def flush(self) -> bytes:
        return b""


class _NoneDecompressor:
    __slots__ = ()

    def decompress(self, data: bytes) -> bytes:
        return bytes(data)

    def decompress_iter(self, data: bytes, max_out: int = MAX_OUT) -> Iterator[bytes]:
        if data:
            yield bytes(data)

    def finish(self) -> bytes:
        return b""


# --- gzip -----------------------------------------------------------------------------------


class _GzipCompressor:
    __slots__ = ("_c",)

    def __init__(self, level: int):
        self._c = zlib.compressobj(level, zlib.DEFLATED, 31)

    def compress(self, data: bytes) -> bytes:
        return self._c.compress(data)

    def flush(self) -> bytes:
        return self._c.flush(zlib.Z_FINISH)


class _GzipDecompressor:
    __slots__ = ("_d",)

    def __init__(self) -> None:
        self._d = zlib.decompressobj(31)

    def decompress(self, data: bytes) -> bytes:
        if self._d.eof:
            if data:
                raise CorruptData("gzip stream: bytes after the end of the stream")
            return b""
        try:
            out = self._d.decompress(data)
        except zlib.error as e:
            raise CorruptData(f"gzip stream is damaged ({e})") from e
        if self._d.unused_data:
            raise CorruptData("gzip stream: bytes after the end of the stream")
        return out

    def decompress_iter(self, data: bytes, max_out: int = MAX_OUT) -> Iterator[bytes]:
        d = self._d
        while True:
            if d.eof:
                if data:
                    raise CorruptData("gzip stream: bytes after the end of the stream")
                return
            try:
                out = d.decompress(data, max_out)
            except zlib.error as e:
                raise CorruptData(f"gzip stream is damaged ({e})") from e
            if d.unused_data:
                raise CorruptData("gzip stream: bytes after the end of the stream")
            if out:
                yield out
            data = d.unconsumed_tail
            # zlib may still hold output when it filled max_out exactly: ask again.
            if not data and len(out) < max_out:
                return

    def finish(self) -> bytes:
        try:
            out = self._d.flush()
        except zlib.error as e:
            raise CorruptData(f"gzip stream is damaged ({e})") from e
        if not self._d.eof:
            raise CorruptData("gzip stream ends early (incomplete)")
        return out


# --- zstd -----------------------------------------------------------------------------------


class _ZstdCompressor:
    __slots__ = ("_c",)

    def __init__(self, level: int):
        self._c = zstandard.ZstdCompressor(level=level, write_checksum=True).compressobj()

    def compress(self, data: bytes) -> bytes:
        return self._c.compress(data)

    def flush(self) -> bytes:
        return self._c.flush()


class _ZstdDecompressor:
    __slots__ = ("_d", "_eof", "_pending", "_need", "_checksum")

    def __init__(self) -> None:
        self._d = zstandard.ZstdDecompressor().decompressobj()
        self._eof = False
        self._pending = bytearray()  # decompress_iter input not yet cut at a block boundary
        self._need: int | None = None
        self._checksum = 0

    def decompress(self, data: bytes) -> bytes:
        if self._eof:
            if data:
                raise CorruptData("zstd stream: bytes after the end of the frame")
            return b""
        if not data:
            return b""
        try:
            out = self._d.decompress(data)
        except zstandard.ZstdError as e:
            raise CorruptData(f"zstd stream is damaged ({e})") from e
        if self._d.eof:
            self._eof = True
            if self._d.unused_data:
                raise CorruptData("zstd stream: bytes after the end of the frame")
        return out

    def decompress_iter(self, data: bytes, max_out: int = MAX_OUT) -> Iterator[bytes]:
        # A zstd block decodes to at most 128 KiB, so feeding whole blocks one at a time bounds
        # each call's output whatever the compression ratio (a "bomb" cannot inflate at once).
        self._pending += data
        for seg in self._segments():
            out = self.decompress(seg)
            if out:
                yield out

    def _segments(self) -> Iterator[bytes]:
        """Cut the pending input into frame header, blocks and checksum (RFC 8878 section 3.1.1)."""
        buf = self._pending
        pos = 0
        while True:
            if self._need is None:  # frame header not parsed yet
                if len(buf) - pos < 6:
                    break
                if buf[pos : pos + 4] != b"\x28\xb5\x2f\xfd":
                    raise CorruptData("zstd stream: bad frame magic")
                fhd = buf[pos + 4]
                single = (fhd >> 5) & 1
                fcs = (0, 2, 4, 8)[fhd >> 6] or (1 if single else 0)
                size = 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + fcs
                if fhd & 0x08:
                    raise CorruptData("zstd stream: reserved bit set in frame header")
                self._checksum = 4 if fhd & 0x04 else 0
                if len(buf) - pos < size:
                    break
                yield bytes(buf[pos : pos + size])
                pos += size
                self._need = 0
            elif self._need == -1:  # after the last block: the checksum, then nothing
                if self._checksum:
                    if len(buf) - pos < self._checksum:
                        break
                    yield bytes(buf[pos : pos + self._checksum])
                    pos += self._checksum
                    self._checksum = 0
                if len(buf) - pos:
                    yield bytes(buf[pos:])  # decompress() reports the trailing bytes
                    pos = len(buf)
                break
            else:
                if len(buf) - pos < 3:
                    break
                bh = int.from_bytes(buf[pos : pos + 3], "little")
                btype = (bh >> 1) & 3
                bsize = bh >> 3
                if btype == 3 or bsize > (128 << 10):
                    raise CorruptData("zstd stream: bad block header")
                total = 3 + (1 if btype == 1 else bsize)
                if len(buf) - pos < total:
                    break
                yield bytes(buf[pos : pos + total])
                pos += total
                if bh & 1:
                    self._need = -1
        if pos:
            del buf[:pos]

    def finish(self) -> bytes:
        if not self._eof or self._pending:
            raise CorruptData("zstd stream ends early (incomplete)")
        return b""


# --- brotli ---------------------------------------------------------------------------------


class _BrotliCompressor:
    __slots__ = ("_c",)

    def __init__(self, level: int):
        # lgwin 22 (4 MiB window) is brotli's default; it bounds decoder memory too.
        self._c = brotli.Compressor(quality=level, lgwin=22)

    # brotli ships no type information: the annotated locals say what it returns.
    def compress(self, data: bytes) -> bytes:
        out: bytes = self._c.process(data)
        return out

    def flush(self) -> bytes:
        out: bytes = self._c.finish()
        return out


class _BrotliDecompressor:
    __slots__ = ("_d",)

    def __init__(self) -> None:
        self._d = brotli.Decompressor()

    def decompress(self, data: bytes) -> bytes:
        if self._d.is_finished():
            if data:
                raise CorruptData("brotli stream: bytes after the end of the stream")
            return b""
        if not data:
            return b""
        try:
            out: bytes = self._d.process(data)
            return out
        except brotli.error as e:
            raise CorruptData(f"brotli stream is damaged ({e})") from e

    def decompress_iter(self, data: bytes, max_out: int = MAX_OUT) -> Iterator[bytes]:
        d = self._d
        if d.is_finished():
            if data:
                raise CorruptData("brotli stream: bytes after the end of the stream")
            return
        try:
            out = d.process(data, output_buffer_limit=max_out)
            # Output may still be pending while can_accept_more_data() is True: drain until empty.
            while out or not d.can_accept_more_data():
                if out:
                    yield out
                out = d.process(b"", output_buffer_limit=max_out)
        except brotli.error as e:
            raise CorruptData(f"brotli stream is damaged ({e})") from e

    def finish(self) -> bytes:
        if not self._d.is_finished():
            raise CorruptData("brotli stream ends early (incomplete)")
        return b""


# Default chosen from bench/pipeline.py (docs/performance.md, "Write pipeline (issue 2)").
DEFAULT_CODEC = "zstd"
DEFAULT_LEVEL = 3

CODECS: dict[str, Codec] = {
    "none": Codec("none", 0, 0, 0, 0, lambda lvl: _NoneCompressor(), _NoneDecompressor),
    "gzip": Codec("gzip", 1, 6, 1, 9, _GzipCompressor, _GzipDecompressor),
    "zstd": Codec("zstd", 2, DEFAULT_LEVEL, 1, 19, _ZstdCompressor, _ZstdDecompressor),
    "brotli": Codec("brotli", 3, 5, 0, 11, _BrotliCompressor, _BrotliDecompressor),
}

CODECS_BY_ID: dict[int, Codec] = {c.id: c for c in CODECS.values()}


def get_codec(name: str) -> Codec:
    """Return the codec called `name`. Raises UsageError if there is none."""
    try:
        return CODECS[name]
    except (KeyError, TypeError):
        raise UsageError(
            f"unknown compression {name!r}: use one of {', '.join(sorted(CODECS))}"
        ) from None


def codec_by_id(codec_id: int, *, where: str | None = None) -> Codec:
    """Return the codec with header id `codec_id`. Raises UnsupportedFormat if unknown."""
    try:
        return CODECS_BY_ID[codec_id]
    except KeyError:
        raise UnsupportedFormat(
            f"unknown compression id {codec_id}: written by a newer FireBackup? upgrade to read it",
            where=where,
        ) from None
