"""Protobuf wire-format primitives: varints, length-delimited fields and BatchWrite framing.

The backup and restore hot paths build and scan messages as bytes (no protobuf objects per
document); these are the pieces they share. Bulk writes are framed as

    Write             = 0x0a len Document  [0x1a len DocumentMask]  [0x22 len Precondition]
    BatchWriteRequest = 0x0a len database  (0x12 len Write)*

Malformed input raises CorruptData.
"""

from __future__ import annotations

from typing import Iterable

from firebackup.errors import CorruptData


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at pos; return (value, position after it)."""
    result = 0
    shift = 0
    try:
        while True:
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result, pos
            shift += 7
            if shift > 63:
                raise CorruptData("varint longer than 10 bytes")
    except IndexError:
        raise CorruptData("protobuf ends inside a varint") from None


def encode_varint(value: int) -> bytes:
    """Protobuf base-128 varint; a negative value is encoded as int64 (ten bytes)."""
    if value < 0:
        value &= (1 << 64) - 1  # int64 negatives are ten-byte two's complement on the wire
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


# Every 1- and 2-byte varint (lengths up to 16 KiB, i.e. nearly every document): a list index
# is ~10x cheaper than a call, and the restore hot path needs two per document.
VARINTS = [encode_varint(i) for i in range(1 << 14)]
N_VARINTS = len(VARINTS)


def varint(n: int) -> bytes:
    """encode_varint for a non-negative int, from the table when it is in it."""
    if n < N_VARINTS:
        return VARINTS[n]
    return encode_varint(n)


def len_field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag byte(s), the payload's length, the payload."""
    return tag + varint(len(payload)) + payload


def batch_write_request(database: str, writes: Iterable[bytes]) -> bytes:
    """BatchWriteRequest bytes for already-serialized Write messages."""
    return len_field(b"\x0a", database.encode()) + b"".join(len_field(b"\x12", w) for w in writes)


def framed_write_name(framed: bytes) -> str:
    """The document name in a framed write (0x12 len Write{update: 0x0a len Document{0x0a len name}})."""
    pos = n = 0
    for tag in (0x12, 0x0A, 0x0A):  # writes entry, Write.update, Document.name: each first in what we build
        if framed[pos : pos + 1] != bytes((tag,)):
            raise CorruptData(f"not a framed Firestore write: {framed[:40]!r}")
        n, pos = read_varint(framed, pos + 1)
    return framed[pos : pos + n].decode("utf-8", "replace")


# google.rpc.Code: the status of each write in a BatchWriteResponse, by number.
STATUS_CODE_NAMES = {
    0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
    6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION",
    10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE",
    15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}


def status_code_name(code: int) -> str:
    """The canonical name of a google.rpc.Code number ("UNAVAILABLE"); the number if unknown."""
    return STATUS_CODE_NAMES.get(code, str(code))
