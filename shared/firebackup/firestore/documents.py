"""A tiny protobuf wire-format scanner for the few fields the backup hot path needs.

Firestore responses stay as the bytes the server sent (they are what we store); decoding
each one into Python objects would cost more than the rest of the backup together. These
functions pick single fields out of the wire bytes instead:

    RunQueryResponse:  1 document (Document bytes), 2 transaction, 3 read_time (Timestamp),
                       4 skipped_results, 6 done
    Document:          1 name (string), 2 fields (map), 3 create_time, 4 update_time
    Timestamp:         1 seconds (int64 varint), 2 nanos (int32 varint)

Malformed input raises CorruptData naming what was being scanned.
"""

from __future__ import annotations

import datetime as dt
from typing import Iterator

from firebackup.errors import CorruptData
from firebackup.firestore.wire import encode_varint, read_varint

_WT_VARINT, _WT_I64, _WT_LEN, _WT_I32 = 0, 1, 2, 5
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def iter_fields(buf: bytes, what: str = "message") -> Iterator[tuple[int, int, object]]:
    """Yield (field number, wire type, value) for every field; LEN values are bytes slices."""
    pos = 0
    n = len(buf)
    while pos < n:
        tag, pos = read_varint(buf, pos)
        field, wt = tag >> 3, tag & 7
        if wt == _WT_LEN:
            ln, pos = read_varint(buf, pos)
            end = pos + ln
            if end > n:
                raise CorruptData(f"{what}: field {field} runs past the end ({end} > {n})")
            yield field, wt, buf[pos:end]
            pos = end
        elif wt == _WT_VARINT:
            v, pos = read_varint(buf, pos)
            yield field, wt, v
        elif wt == _WT_I64:
            if pos + 8 > n:
                raise CorruptData(f"{what}: fixed64 field {field} runs past the end")
            yield field, wt, buf[pos : pos + 8]
            pos += 8
        elif wt == _WT_I32:
            if pos + 4 > n:
                raise CorruptData(f"{what}: fixed32 field {field} runs past the end")
            yield field, wt, buf[pos : pos + 4]
            pos += 4
        else:
            raise CorruptData(f"{what}: unsupported wire type {wt} for field {field}")


def first_len_field(buf: bytes, wanted: int, what: str = "message") -> bytes | None:
    """Return the bytes of the first length-delimited field `wanted`, or None; stops early."""
    pos = 0
    n = len(buf)
    while pos < n:
        tag = buf[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = read_varint(buf, pos)
        wt = tag & 7
        if wt == _WT_LEN:
            ln = buf[pos] if pos < n else 0x80
            if ln < 0x80:
                pos += 1
            else:
                ln, pos = read_varint(buf, pos)
            end = pos + ln
            if end > n:
                raise CorruptData(f"{what}: field {tag >> 3} runs past the end ({end} > {n})")
            if tag >> 3 == wanted:
                return buf[pos:end]
            pos = end
        elif wt == _WT_VARINT:
            _, pos = read_varint(buf, pos)
        elif wt == _WT_I64:
            pos += 8
        elif wt == _WT_I32:
            pos += 4
        else:
            raise CorruptData(f"{what}: unsupported wire type {wt} for field {tag >> 3}")
    return None


def run_query_document(response: bytes) -> bytes | None:
    """The Document bytes (field 1) of a RunQueryResponse, or None when it carries none."""
    # Hot path: servers put field 1 first, as tag 0x0A; take the slice without a loop.
    if response[:1] == b"\x0a":
        ln = response[1] if len(response) > 1 else 0x80
        if ln < 0x80:
            end = 2 + ln
            if end <= len(response):
                return response[2:end]
        else:
            ln, pos = read_varint(response, 1)
            end = pos + ln
            if end <= len(response):
                return response[pos:end]
        raise CorruptData("RunQueryResponse: document runs past the end")
    return first_len_field(response, 1, "RunQueryResponse")


def run_query_read_time(response: bytes) -> bytes | None:
    """The read_time (field 3, Timestamp bytes) of a RunQueryResponse, or None."""
    return first_len_field(response, 3, "RunQueryResponse")


def document_name(document: bytes) -> str:
    """The full resource name (field 1) of a Document."""
    raw = first_len_field(document, 1, "Document")
    if raw is None:
        raise CorruptData("Document has no name")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptData("Document name is not UTF-8") from None


def name_bytes(document: bytes) -> bytes:
    """The name (field 1) of a Document as raw UTF-8 bytes; fast when it comes first."""
    if document[:1] == b"\x0a":
        ln = document[1]
        if ln < 0x80:
            return document[2 : 2 + ln]
        ln, pos = read_varint(document, 1)
        return document[pos : pos + ln]
    raw = first_len_field(document, 1, "Document")
    if raw is None:
        raise CorruptData("Document has no name")
    return raw


def root_collection(document: bytes, prefix_len: int) -> bytes:
    """The root collection id of a Document, given len(b"projects/P/databases/D/documents/")."""
    name = name_bytes(document)
    end = name.find(b"/", prefix_len)
    return name[prefix_len:end] if end >= 0 else name[prefix_len:]


def decode_timestamp(raw: bytes) -> tuple[int, int]:
    """(seconds, nanos) of google.protobuf.Timestamp bytes."""
    seconds = nanos = 0
    for field, wt, value in iter_fields(raw, "Timestamp"):
        if wt != _WT_VARINT or not isinstance(value, int):
            continue
        if field == 1:
            seconds = value - (1 << 64) if value >= 1 << 63 else value
        elif field == 2:
            nanos = value
    return seconds, nanos


def encode_timestamp(seconds: int, nanos: int) -> bytes:
    out = b""
    if seconds:
        out += b"\x08" + encode_varint(seconds)
    if nanos:
        out += b"\x10" + encode_varint(nanos)
    return out


def timestamp_to_datetime(seconds: int, nanos: int) -> dt.datetime:
    """UTC datetime, truncated to the microsecond (what Python can hold)."""
    return _EPOCH + dt.timedelta(seconds=seconds, microseconds=nanos // 1000)


def datetime_to_timestamp(when: dt.datetime) -> tuple[int, int]:
    if when.tzinfo is None:
        raise ValueError("naive datetime; pass a UTC-aware one")
    delta = when - _EPOCH
    seconds = delta.days * 86400 + delta.seconds
    return seconds, delta.microseconds * 1000


def format_rfc3339(when: dt.datetime) -> str:
    """'2026-11-28T02:41:02.000336Z' (always six fractional digits, UTC)."""
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: str) -> dt.datetime:
    """Parse what format_rfc3339 writes (and RFC 3339 with an offset)."""
    t = text.strip()
    if t.endswith("Z") or t.endswith("z"):
        t = t[:-1] + "+00:00"
    when = dt.datetime.fromisoformat(t)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc)
