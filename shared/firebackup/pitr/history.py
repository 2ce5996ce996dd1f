"""One document's history: its versions in backups and captured changes, and a field-level diff of two.

Fields are compared in Firestore's REST JSON form (`{"integerValue": "7"}`), maps walked into so a
change deep in a map names its dotted path; arrays compare whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf.json_format import MessageToDict

from firebackup.engine.repository import Repository
from firebackup.firestore.documents import name_bytes
from firebackup.firestore.protos import Document
from firebackup.crypto.keys import KeyEncryptionKey
from firebackup.pitr.events import DELETE, format_ns, parse_instant
from firebackup.pitr.restore import Change, last_versions

_DocumentPb: Any = Document


@dataclass(frozen=True)
class Version:
    """One version of a document: when, from where (a backup id or "capture"), what happened, its fields."""

    at: int
    source: str
    operation: str
    document: bytes | None

    def to_dict(self) -> dict[str, Any]:
        return {"at": format_ns(self.at), "source": self.source, "operation": self.operation,
                "fields": fields_json(self.document)}


def fields_json(document: bytes | None) -> dict[str, Any] | None:
    """The document's fields in REST JSON form; None for no document."""
    if document is None:
        return None
    fields: dict[str, Any] = MessageToDict(_DocumentPb.FromString(document)).get("fields", {})
    return fields


def in_backup(repo: Repository, backup_id: str, kek: KeyEncryptionKey | None, path: str) -> bytes | None:
    """The document at `path` in a backup (a scan of its chunks), or None."""
    manifest, dek = repo.read_manifest(backup_id, kek)
    source = manifest.source
    wanted = (f"projects/{source.get('project')}/databases/{source.get('database') or '(default)'}/documents/"
              f"{path}").encode()
    for entry in manifest.chunks:
        if entry.kind != "docs":
            continue
        for records in repo.iter_record_batches(backup_id, entry, dek):
            for raw in records:
                if name_bytes(raw) == wanted:
                    return raw
    return None


def history(path: str, changes: Iterable[Change], backups: Iterable[tuple[str, int, bytes | None]]) -> list[Version]:
    """Every known version of the document, oldest first: each backup's copy and each captured change."""
    out = [Version(c.version, "capture", c.operation, c.document) for c in changes if c.path == path]
    seen = {v.at for v in out}
    for backup_id, read_time, doc in backups:
        if read_time not in seen:
            out.append(Version(read_time, backup_id, "backup" if doc is not None else DELETE, doc))
    return sorted(out, key=lambda v: v.at)


def state_at(path: str, at: int, changes: Iterable[Change], base: tuple[int, bytes | None]) -> bytes | None:
    """The document as of `at`: its last captured version in (base read time, at], else the base's copy."""
    latest = last_versions(changes, after=base[0], upto=at, scope=path).get(path)
    return base[1] if latest is None else latest.document


def _flatten(fields: dict[str, Any] | None, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, value in (fields or {}).items():
        key = f"{prefix}{name}"
        inner = value.get("mapValue") if isinstance(value, dict) else None
        if isinstance(inner, dict) and inner.get("fields"):
            yield from _flatten(inner["fields"], key + ".")
        else:
            yield key, value


def diff(before: bytes | None, after: bytes | None) -> list[dict[str, Any]]:
    """Field-level differences: added, removed and changed fields by dotted path, with both values."""
    a, b = dict(_flatten(fields_json(before))), dict(_flatten(fields_json(after)))
    out = []
    for key in sorted(a.keys() | b.keys()):
        if key not in a:
            out.append({"field": key, "change": "added", "before": None, "after": b[key]})
        elif key not in b:
            out.append({"field": key, "change": "removed", "before": a[key], "after": None})
        elif a[key] != b[key]:
            out.append({"field": key, "change": "changed", "before": a[key], "after": b[key]})
    return out


def parse_instants(values: list[str]) -> tuple[int, int]:
    """The two --at instants of a diff."""
    from firebackup.errors import UsageError

    if len(values) != 2:
        raise UsageError("diff: pass --at twice: the two instants to compare")
    return parse_instant(values[0]), parse_instant(values[1])
