"""Restore a backup into a Firestore database (same or another project / database), then Auth users.

Plan: read and authenticate the manifest, then one task per document chunk, exactly the
unit the serverless restore_worker runs (RestoreTask -> run_restore_task): stream the
chunk's records, rewrite each document for the target and send it with BatchWrite
(firebackup.firestore.batch_writer). Locally a LocalQueue runs the tasks on a thread pool.

Accounting is exact: every document of the selected collections ends up counted once as
written, skipped (mode "skip", the target already had it) or failed. A chunk that cannot
be read counts its unread documents as failed and the restore goes on with the others; an
unreachable or refusing target aborts the restore with that error.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

from firebackup.errors import FireBackupError, IntegrityError, StorageError, UsageError
from firebackup.firestore.batch_writer import BatchWriter, WriteStats
from firebackup.firestore.rewrite import MODES, database_path

DEFAULT_THREADS = 4
# Batches in flight per chunk task; with DEFAULT_THREADS tasks that keeps ~8-16 requests at
# the server, enough to keep the emulator (and a Firestore database) busy.
DEFAULT_IN_FLIGHT = 4
# Writes per BatchWrite request: Firestore's maximum. Fewer, larger requests cost the client
# less CPU per document (measured on the emulator: ~7.5 vs ~10 us of client CPU per document at
# 500 vs 200; docs/performance.md), and the writes in one request are applied independently.
DEFAULT_BATCH_WRITES = 500
ERROR_LIMIT = 100

RESULT_KEYS = (
    "backup_id",
    "documents_written",
    "documents_skipped",
    "documents_failed",
    "auth_users",
    "dry_run",
    "duration_s",
)


@dataclass
class RestoreRequest:
    """What to restore where; the CLI's restore options."""

    backup_id: str
    project: str
    database: str = "(default)"
    collections: list[str] | None = None
    mode: str = "overwrite"
    include_auth: bool = False
    dry_run: bool = False
    keep_references: bool = False  # default: references into the source database follow the data

    def __post_init__(self) -> None:
        if not self.project:
            raise UsageError("restore: no target project; pass --project")
        if self.mode not in MODES:
            raise UsageError(f"restore: unknown mode {self.mode!r}; use one of {', '.join(MODES)}")
        self.database = self.database or "(default)"
        if isinstance(self.collections, str):
            self.collections = self.collections.split(",")
        if self.collections is not None:
            self.collections = [c.strip() for c in self.collections if c.strip()] or None


@dataclass
class RestoreResult:
    """The CLI's `restore --json` object (to_dict), plus the first errors for the human report."""

    backup_id: str
    documents_written: int = 0
    documents_skipped: int = 0
    documents_failed: int = 0
    auth_users: int = 0
    dry_run: bool = False
    duration_s: float = 0.0
    auth_users_failed: int = 0
    auth_users_skipped: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.documents_failed == 0 and self.auth_users_failed == 0

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in RESULT_KEYS}
        if self.auth_users_failed:
            d["auth_users_failed"] = self.auth_users_failed
        if self.auth_users_skipped:
            d["auth_users_skipped"] = self.auth_users_skipped
        return d


@dataclass
class RestoreTask:
    """One unit of restore work: one document chunk of one backup into one target database."""

    backup_id: str
    chunk_id: str
    project: str
    database: str = "(default)"
    source_database: str = ""  # projects/P/databases/D the backup was taken from
    mode: str = "overwrite"
    collections: list[str] | None = None
    dry_run: bool = False
    keep_references: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RestoreTask":
        return cls(**d)


def _source_database(manifest: Any) -> str:
    src = getattr(manifest, "source", None) or {}
    project = src.get("project")
    if not project:
        raise IntegrityError("the manifest does not name the source project", where=f"backup {manifest.backup_id}")
    return database_path(project, src.get("database") or "(default)")


def _entry_by_id(manifest: Any, chunk_id: str) -> Any:
    for e in manifest.chunks:
        if e.chunk_id == chunk_id:
            return e
    raise IntegrityError(f"chunk {chunk_id} is not in the manifest", where=f"backup {manifest.backup_id}")


def restore_chunk(
    task: RestoreTask,
    entry: Any,
    *,
    repo: Any,
    data_key: Any,
    conn: Any,
    in_flight: int = DEFAULT_IN_FLIGHT,
    batch_writes: int = DEFAULT_BATCH_WRITES,
    progress: Callable[..., None] | None = None,
) -> WriteStats:
    """Write one chunk's documents into conn's database; exact counts (raises only if the target fails)."""
    writer = BatchWriter(
        conn,
        source_database=task.source_database,
        mode=task.mode,
        keep_references=task.keep_references,
        collections=task.collections,
        dry_run=task.dry_run,
        max_in_flight=in_flight,
        max_writes=batch_writes,
        progress=progress,
    )
    problem: FireBackupError | None = None
    with writer:
        try:
            for records in repo.iter_record_batches(task.backup_id, entry, data_key):
                writer.add_many(records)
        except (IntegrityError, StorageError) as e:
            problem = e  # what was read before the damage is still written
    stats = writer.close()
    if problem is not None:
        unread = max(0, int(getattr(entry, "records", 0)) - stats.documents - stats.filtered)
        stats.failed += unread
        stats.errors.append(f"chunk {entry.chunk_id}: {unread} documents not restored: {problem}")
    return stats


def run_restore_task(
    task: RestoreTask | dict,
    *,
    repo: Any,
    kek: Any = None,
    conn: Any = None,
    progress: Callable[..., None] | None = None,
) -> WriteStats:
    """The restore_worker's entry: read the manifest, restore one chunk, return its counts."""
    if isinstance(task, dict):
        task = RestoreTask.from_dict(task)
    manifest, data_key = repo.read_manifest(task.backup_id, kek)
    if not task.source_database:
        task.source_database = _source_database(manifest)
    entry = _entry_by_id(manifest, task.chunk_id)
    own = conn is None
    if own:
        import os

        from firebackup.firestore.grpc import open_firestore

        # TODO(lead): from Settings
        conn = open_firestore(task.project, task.database, emulator_host=os.environ.get("FIRESTORE_EMULATOR_HOST"))
    try:
        return restore_chunk(task, entry, repo=repo, data_key=data_key, conn=conn, progress=progress)
    finally:
        if own:
            conn.close()


def _auth_records(repo: Any, backup_id: str, entries: Iterable[Any], data_key: Any):
    for e in entries:
        yield from repo.iter_records(backup_id, e, data_key)


def run_restore(
    request: RestoreRequest | None = None,
    *,
    repo: Any,
    kek: Any = None,
    connection: Any = None,
    auth_app: Any = None,
    threads: int = DEFAULT_THREADS,
    in_flight: int = DEFAULT_IN_FLIGHT,
    batch_writes: int = DEFAULT_BATCH_WRITES,
    progress: Callable[..., None] | None = None,
    **options: Any,
) -> RestoreResult:
    """Restore a backup; returns the CLI's result (documents_failed > 0 means exit 1).

    Pass a RestoreRequest or its fields as keywords (backup_id=, project=, database=,
    collections=, mode=, include_auth=, dry_run=, keep_references=). `connection` is a
    FirestoreConnection to the target database; without it one is opened from the
    environment (FIRESTORE_EMULATOR_HOST, else Application Default Credentials).
    `auth_app` is the firebase_admin App for the target project's Auth (default: one is
    initialised for the project; FIREBASE_AUTH_EMULATOR_HOST honoured).
    """
    from firebackup.runtime.queue import LocalQueue

    started = time.monotonic()
    if request is None:
        options = {k: v for k, v in options.items() if v is not None}
        try:
            request = RestoreRequest(**options)
        except TypeError as e:
            raise UsageError(f"restore: {e}") from None
    elif options:
        raise UsageError(f"restore: pass either a RestoreRequest or options, not both ({sorted(options)})")

    manifest, data_key = repo.read_manifest(request.backup_id, kek)
    source_db = _source_database(manifest)
    doc_entries = [e for e in manifest.chunks if getattr(e, "kind", "docs") == "docs"]
    auth_entries = [e for e in manifest.chunks if getattr(e, "kind", "docs") == "auth"]
    result = RestoreResult(backup_id=request.backup_id, dry_run=request.dry_run)
    if progress is not None and hasattr(progress, "set_total") and request.collections is None:
        progress.set_total(documents=sum(int(e.records) for e in doc_entries))

    own = connection is None
    if own:
        import os

        from firebackup.firestore.grpc import open_firestore

        # TODO(lead): from Settings
        connection = open_firestore(
            request.project, request.database, emulator_host=os.environ.get("FIRESTORE_EMULATOR_HOST")
        )
    totals = WriteStats(error_limit=ERROR_LIMIT)
    lock = threading.Lock()
    # Keep threads * in_flight requests at the server however many chunks there are: a
    # backup of one big chunk gets all of them in its one task.
    running = max(1, min(threads, len(doc_entries)))
    per_task = max(in_flight, -(-threads * in_flight // running))
    entries = {e.chunk_id: e for e in doc_entries}
    try:
        q = LocalQueue(threads=max(1, threads))

        def handler(payload: dict) -> None:
            task = RestoreTask.from_dict(payload)
            stats = restore_chunk(
                task, entries[task.chunk_id], repo=repo, data_key=data_key, conn=connection,
                in_flight=per_task, batch_writes=batch_writes, progress=progress,
            )
            with lock:
                totals.add(stats)

        q.register("restore_chunk", handler)
        try:
            for e in doc_entries:
                q.enqueue("restore_chunk", RestoreTask(
                    backup_id=request.backup_id, chunk_id=e.chunk_id, project=request.project,
                    database=request.database, source_database=source_db, mode=request.mode,
                    collections=request.collections, dry_run=request.dry_run,
                    keep_references=request.keep_references,
                ).to_dict())
            q.join()
        finally:
            q.close()
    finally:
        if own:
            connection.close()
    result.documents_written = totals.written
    result.documents_skipped = totals.skipped
    result.documents_failed = totals.failed
    result.errors = list(totals.errors)

    if request.include_auth and auth_entries:
        import os

        from firebackup.firestore.auth import import_user_records

        records = _auth_records(repo, request.backup_id, auth_entries, data_key)
        outcome = import_user_records(
            request.project, records, getattr(manifest, "auth_hash_config", None),
            app=auth_app, dry_run=request.dry_run, mode=request.mode,
            emulator_host=os.environ.get("FIREBASE_AUTH_EMULATOR_HOST"),  # TODO(lead): from Settings
        )
        result.auth_users = outcome.imported
        result.auth_users_failed = outcome.failed
        result.auth_users_skipped = outcome.skipped
        result.errors.extend(outcome.errors[: max(0, ERROR_LIMIT - len(result.errors))])
    result.duration_s = round(time.monotonic() - started, 3)
    return result
