"""Firestore `document.v1.written` CloudEvents as Eventarc delivers them, read without protobuf classes.

Binary content mode: the CloudEvent attributes arrive as `ce-*` headers (`document`, `database`,
`project`, `namespace` are extension attributes) and the body is a protobuf
`google.events.cloud.firestore.v1.DocumentEventData` (content type `application/protobuf`):

    DocumentEventData: 1 value (Document), 2 old_value (Document), 3 update_mask (DocumentMask)

The `google.events` Document has the field numbers of `google.firestore.v1.Document`, so `value`
is already the Firestore wire bytes a backup stores: it is kept as it is, never decoded.
A version instant is integer nanoseconds since the epoch (Firestore timestamps have nanoseconds).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Mapping

from firebackup.errors import CorruptData, UsageError
from firebackup.firestore.documents import datetime_to_timestamp, first_len_field, decode_timestamp, parse_rfc3339

WRITTEN = "google.cloud.firestore.document.v1.written"
CREATE, UPDATE, DELETE = "create", "update", "delete"
_NS = 1_000_000_000


def version_ns(seconds: int, nanos: int) -> int:
    """A version instant from a Timestamp's (seconds, nanos)."""
    return seconds * _NS + nanos


def instant_ns(when: dt.datetime) -> int:
    """A UTC datetime as a version instant (microsecond precision, like every datetime)."""
    return version_ns(*datetime_to_timestamp(when))


def ns_datetime(ns: int) -> dt.datetime:
    """The datetime of a version instant, truncated to the microsecond."""
    return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=ns // 1000)


def format_ns(ns: int) -> str:
    """A version instant in RFC 3339 with all nine fractional digits: '2026-11-29T10:15:00.123456789Z'."""
    return ns_datetime(ns).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ns % _NS:09d}Z"


def parse_instant(text: str) -> int:
    """An RFC 3339 instant as ns since the epoch, all nine fractional digits kept; UsageError if it is none."""
    t = text.strip()
    frac = 0
    m = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|z|[+-]\d\d:\d\d)?", t)
    if m is None:
        raise UsageError(f"{text!r} is not an RFC 3339 instant; write e.g. 2026-11-29T10:15:00Z")
    if m.group(2):
        frac = int(m.group(2).ljust(9, "0"))
    try:
        whole = parse_rfc3339(m.group(1) + (m.group(3) or "Z"))
    except ValueError:
        raise UsageError(f"{text!r} is not an RFC 3339 instant; write e.g. 2026-11-29T10:15:00Z") from None
    return instant_ns(whole) + frac


@dataclass(frozen=True)
class CapturedWrite:
    """One document write: where, what kind, when (the version instant) and the new document bytes."""

    project: str
    database: str
    path: str  # relative to documents/: "users/u1/orders/o7"
    operation: str  # create | update | delete
    version: int  # ns since the epoch: the new update_time; for a delete, the event time
    document: bytes | None  # the new Document as Firestore wire bytes; None for a delete
    incomplete: bool = False  # the body carried no document (too large): read it at `version`


def _attribute(attributes: Mapping[str, Any], name: str) -> str:
    value = attributes.get(name)
    if not isinstance(value, str) or not value:
        raise UsageError(f"the event has no {name} attribute; it is not a Firestore CloudEvent from Eventarc")
    return value


def _update_time(document: bytes, where: str) -> int:
    raw = first_len_field(document, 4, where)
    if raw is None:
        raise CorruptData(f"{where}: the document has no update_time")
    return version_ns(*decode_timestamp(raw))


def parse_written(attributes: Mapping[str, Any], body: bytes) -> CapturedWrite:
    """The write a `document.v1.written` event reports, from its attributes (no `ce-` prefix) and body."""
    kind = _attribute(attributes, "type")
    if kind != WRITTEN:
        raise UsageError(f"event type {kind!r} is not {WRITTEN}; point the trigger at document writes")
    project, database = _attribute(attributes, "project"), _attribute(attributes, "database")
    path = _attribute(attributes, "document").strip("/")
    where = f"event {_attribute(attributes, 'id')} for {path}"
    if not path or path.count("/") % 2 == 0:
        raise UsageError(f"{where}: {path!r} is not a document path")
    when = parse_instant(_attribute(attributes, "time"))
    value = first_len_field(body, 1, where) if body else None
    old = first_len_field(body, 2, where) if body else None
    if value is not None:
        return CapturedWrite(project, database, path, UPDATE if old is not None else CREATE,
                             _update_time(value, where), value)
    if old is not None:
        return CapturedWrite(project, database, path, DELETE, when, None)
    # Neither document: the event was too large to carry them. The event time is the commit time.
    return CapturedWrite(project, database, path, UPDATE, when, None, incomplete=True)
