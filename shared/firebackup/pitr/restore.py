"""Restore to an instant T: the newest backup with read_time <= T, then every captured change in (read_time, T].

The last version per document wins (order by version instant, never by arrival) and deletes are
applied. The base backup streams through a BatchWriter as a restore writes it, minus the documents
the changes replace; then the changed documents' last versions follow, and documents whose last
change is a delete are deleted in the target (overwrite mode), so a rewind of the same database
also removes them. Scope: a whole database, a collection with its subcollections, or one document
(without its subcollections).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from typing import Any

from firebackup.crypto.keys import KeyEncryptionKey
from firebackup.engine.ports import BackupRepository, DocumentTarget
from firebackup.engine.restore.chunk import DEFAULT_BATCH_WRITES, DEFAULT_IN_FLIGHT, source_database
from firebackup.engine.restore.model import RestoreResult, check_target
from firebackup.errors import UsageError
from firebackup.firestore import protos
from firebackup.firestore.batch_writer import BatchWriter, WriteStats
from firebackup.firestore.documents import name_bytes
from firebackup.firestore.wire import batch_write_request, len_field, status_code_name
from firebackup.pitr.events import DELETE, format_ns

_BatchWriteResponsePb: Any = protos.BatchWriteResponse
_StatusPb: Any = protos.Status


@dataclass(frozen=True)
class Change:
    """One captured write: path relative to documents/, version instant (ns), operation, new document."""

    path: str
    version: int
    operation: str
    document: bytes | None  # Firestore wire bytes; None for a delete


def check_scope(scope: str | None) -> str | None:
    """A collection path (odd number of segments) or a document path (even); None is the whole database."""
    if scope is None or not scope.strip("/"):
        return None
    clean = scope.strip("/")
    if any(not part for part in clean.split("/")):
        raise UsageError(f"scope {scope!r} has an empty path segment; pass e.g. users or users/u1")
    return clean


def is_document(scope: str) -> bool:
    """A document path has an even number of segments (collection/doc/...); a collection path an odd one."""
    return scope.count("/") % 2 == 1


def in_scope(path: str, scope: str | None) -> bool:
    """Whether path is the scope's document, or lies anywhere under the scope's collection."""
    if scope is None or path == scope:
        return True
    return not is_document(scope) and path.startswith(scope + "/")


def last_versions(changes: Iterable[Change], *, after: int, upto: int, scope: str | None = None) -> dict[str, Change]:
    """Per document in scope, its change with the greatest version in (after, upto]."""
    out: dict[str, Change] = {}
    for c in changes:
        if after < c.version <= upto and in_scope(c.path, scope):
            cur = out.get(c.path)
            if cur is None or c.version > cur.version:
                out[c.path] = c
    return out


@dataclass
class PointInTimeRequest:
    """What to restore where, as of `at` (ns since the epoch)."""

    at: int
    project: str
    database: str = "(default)"
    scope: str | None = None
    mode: str = "overwrite"
    dry_run: bool = False
    keep_references: bool = False

    def __post_init__(self) -> None:
        check_target(self.project, self.mode)
        self.database = self.database or "(default)"
        self.scope = check_scope(self.scope)


@dataclass
class PointInTimeResult(RestoreResult):
    """A restore's result, plus the instant, the changes applied on top of the base and the deletes."""

    at: str = ""
    changes_applied: int = 0
    documents_deleted: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "at": self.at, "changes_applied": self.changes_applied,
                "documents_deleted": self.documents_deleted, "warnings": self.warnings}


def base_filter(prefix_len: int, scope: str | None,
                replaced: Container[str]) -> Callable[[list[bytes]], list[bytes]] | None:
    """Keeps a batch's base records in scope that no change replaces; None when every record is kept.

    prefix_len: the length of the source's `projects/P/databases/D/documents/` in a record's name.
    """
    if scope is None and not replaced:
        return None
    scope_b = None if scope is None else scope.encode()
    one = scope is not None and is_document(scope)  # one document: not its subcollections

    def keep(records: list[bytes]) -> list[bytes]:
        kept = []
        for r in records:  # only a point-in-time restore pays this per document
            rel = name_bytes(r)[prefix_len:]
            if scope_b is not None and not (rel == scope_b or (not one and rel.startswith(scope_b + b"/"))):
                continue
            if replaced and rel.decode() in replaced:
                continue
            kept.append(r)
        return kept

    return keep


def _delete(target: DocumentTarget, paths: list[str], stats: WriteStats, batch: int) -> int:
    """Delete documents in the target; returns how many deletes it accepted (failures go to stats)."""
    docs = target.database_path + "/documents/"
    done = 0
    for i in range(0, len(paths), batch):
        part = paths[i:i + batch]
        request = batch_write_request(target.database_path, (len_field(b"\x12", (docs + p).encode()) for p in part))
        response = _BatchWriteResponsePb.FromString(target.batch_write(request))
        for path, raw in zip(part, response.status):  # Status bytes, as BatchWriter reads them
            status = _StatusPb.FromString(raw)
            if status.code == 0:
                done += 1
            else:
                stats.fail(path, f"delete refused: {status_code_name(status.code)} {status.message}")
    return done


def apply_changes(target: DocumentTarget, latest: dict[str, Change], *, source: str, mode: str, dry_run: bool,
                  keep_references: bool, in_flight: int = DEFAULT_IN_FLIGHT,
                  batch_writes: int = DEFAULT_BATCH_WRITES) -> tuple[WriteStats, int]:
    """Write each changed document's last version; in overwrite mode delete those whose last change is a delete.

    Returns the write counts and the deletes done. Run again, it writes and deletes the same again.
    """
    writer = BatchWriter(target, source_database=source, mode=mode, keep_references=keep_references,
                         dry_run=dry_run, max_in_flight=in_flight, max_writes=batch_writes)
    with writer:
        writer.add_many([c.document for c in latest.values() if c.document is not None])
    stats = writer.close()
    gone = sorted(p for p, c in latest.items() if c.operation == DELETE)
    deleted = 0
    if gone and mode == "overwrite":
        deleted = len(gone) if dry_run else _delete(target, gone, stats, batch_writes)
    return stats, deleted


@dataclass
class PointInTime:
    """What makes a restore of a base backup a restore to an instant: the changes in (base_read_time, at]."""

    at: int
    base_read_time: int
    scope: str | None
    changes: Callable[[], Iterable[Change]]  # streamed when the changes task needs them (rows and segments)
    paths: Callable[[], Iterable[str]]  # the paths changed in the window and scope, documents left unread
    _latest: dict[str, Change] | None = field(default=None, repr=False)
    _replaced: frozenset[str] | None = field(default=None, repr=False)

    def latest(self) -> dict[str, Change]:
        """Per document in scope, its last change up to the instant; read once per opened job."""
        if self._latest is None:
            self._latest = last_versions(self.changes(), after=self.base_read_time, upto=self.at, scope=self.scope)
        return self._latest

    def replaced(self) -> frozenset[str]:
        """The documents in scope some change up to the instant replaces: what chunk tasks leave out; read once."""
        if self._replaced is None:
            self._replaced = frozenset(self.paths())
        return self._replaced


def restore_at(request: PointInTimeRequest, *, target: DocumentTarget, repo: BackupRepository, base_backup_id: str,
               base_read_time: int, kek: KeyEncryptionKey | None, changes: Iterable[Change],
               in_flight: int = DEFAULT_IN_FLIGHT, batch_writes: int = DEFAULT_BATCH_WRITES,
               warnings: list[str] | None = None) -> PointInTimeResult:
    """Write the state of the source at request.at into the target; exact counts, like a restore."""
    started = time.monotonic()
    if base_read_time > request.at:
        raise UsageError(f"backup {base_backup_id} was read after {format_ns(request.at)}; choose an older base")
    manifest, data_key = repo.read_manifest(base_backup_id, kek)
    source = source_database(manifest)
    latest = last_versions(changes, after=base_read_time, upto=request.at, scope=request.scope)
    keep = base_filter(len(source) + len("/documents/"), request.scope, latest)
    writer = BatchWriter(target, source_database=source, mode=request.mode, keep_references=request.keep_references,
                         dry_run=request.dry_run, max_in_flight=in_flight, max_writes=batch_writes)
    with writer:
        for entry in manifest.chunks:
            if entry.kind == "docs":
                for records in repo.iter_record_batches(base_backup_id, entry, data_key):
                    writer.add_many(records if keep is None else keep(records))
    stats = writer.close()
    changed, deleted = apply_changes(target, latest, source=source, mode=request.mode, dry_run=request.dry_run,
                                     keep_references=request.keep_references, in_flight=in_flight,
                                     batch_writes=batch_writes)
    stats.add(changed)
    return PointInTimeResult(
        backup_id=base_backup_id, documents_written=stats.written, documents_skipped=stats.skipped,
        documents_failed=stats.failed, dry_run=request.dry_run, duration_s=round(time.monotonic() - started, 3),
        errors=list(stats.errors), at=format_ns(request.at), changes_applied=len(latest), documents_deleted=deleted,
        warnings=list(warnings or []))
