"""The restore task handlers: the only code that runs a restore, for the CLI, the API and every worker.

    restore.plan      {"job"}            read and authenticate the manifest, one task per chunk
    restore.chunk     {"job", "chunk"}   one document chunk into the target with BatchWrite
    restore.auth      {"job"}            the backed-up Auth users into the target project
    restore.changes   {"job"}            a point-in-time restore's captured changes: last versions, deletes
    restore.finalize  {"job"}            enqueued by the last task: the counts, the outcome

A point-in-time restore (RestoreJob.point_in_time) is a restore of its base backup whose chunk
tasks leave out what lies outside its scope and every document a change replaces; the changes
task writes those documents' last versions (and deletes), so the two touch disjoint documents and
run in any order, in parallel.

Delivery is at least once (engine/jobs.py TaskRunner): a chunk or changes task run twice writes the
same documents again, and its counts replace the first attempt's, so the totals stay exact.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

from firebackup.crypto.keys import DataKey, KeyEncryptionKey
from firebackup.engine.jobs import FINALIZE_KEY, Clock, Handler, Jobs, JobStore, TaskRunner, utcnow
from firebackup.engine.ports import BackupRepository, DocumentTarget
from firebackup.engine.restore.chunk import (
    DEFAULT_BATCH_WRITES,
    DEFAULT_IN_FLIGHT,
    entry_by_id,
    restore_chunk,
    source_database,
)
from firebackup.engine.restore.model import ERROR_LIMIT, RestoreRequest, RestoreResult, RestoreTask
from firebackup.format.manifest import Manifest
from firebackup.progress import ProgressCallback
from firebackup.runtime.queue import TaskQueue

from firebackup.engine.tasks import RESTORE_AUTH as AUTH
from firebackup.engine.tasks import RESTORE_CHANGES as CHANGES
from firebackup.engine.tasks import RESTORE_CHUNK as CHUNK
from firebackup.engine.tasks import RESTORE_FINALIZE as FINALIZE
from firebackup.engine.tasks import RESTORE_PLAN as PLAN

if TYPE_CHECKING:
    from firebackup.firestore.auth import ImportOutcome
    from firebackup.pitr.restore import PointInTime

_PLAN_KEY, _AUTH_KEY, _CHANGES_KEY = "plan", "auth", "changes"


class AuthImport(Protocol):
    """Firebase Auth of the target project, as a restore writes it."""

    def import_users(self, project: str, records: Iterable[bytes], hash_config: dict[str, Any] | None, *,
                     dry_run: bool, mode: str) -> ImportOutcome:
        """Import the records; how many were imported, failed and skipped, and the first errors."""


@dataclass
class RestoreJob:
    """What one restore's tasks work with: its request and the adapters opened for it."""

    request: RestoreRequest
    target: DocumentTarget
    repo: BackupRepository
    kek: KeyEncryptionKey | None = None
    auth: AuthImport | None = None
    in_flight: int = DEFAULT_IN_FLIGHT  # BatchWrite requests in flight per chunk task
    batch_writes: int = DEFAULT_BATCH_WRITES
    point_in_time: PointInTime | None = None  # set: restore the base backup plus changes up to an instant
    _manifest: tuple[Manifest, DataKey | None] | None = field(default=None, repr=False)

    def manifest(self) -> tuple[Manifest, DataKey | None]:
        """The authenticated manifest and data key, read once per opened job."""
        if self._manifest is None:
            self._manifest = self.repo.read_manifest(self.request.backup_id, self.kek,
                                                     allow_unencrypted=self.request.allow_unencrypted)
        return self._manifest


class RestoreHandlers(TaskRunner[RestoreJob]):
    """plan, chunk, auth and finalize over a JobStore and a TaskQueue; register handlers() on the queue."""

    kind, finalize_task = "restore", FINALIZE

    def __init__(self, *, store: JobStore, queue: TaskQueue, jobs: Jobs[RestoreJob],
                 progress: ProgressCallback | None = None,
                 on_plan: Callable[[str, Manifest, RestoreJob], None] | None = None, clock: Clock = utcnow):
        super().__init__(store=store, queue=queue, jobs=jobs, clock=clock)
        self.progress, self.on_plan = progress, on_plan
        self._started: dict[str, float] = {}

    def handlers(self) -> dict[str, Handler]:
        return {PLAN: self.plan, CHUNK: self.chunk, AUTH: self.auth, CHANGES: self.changes, FINALIZE: self.finalize}

    def plan(self, payload: dict[str, Any]) -> None:
        job_id = payload["job"]

        def work(job: RestoreJob, resume: tuple[int, str | None] | None) -> None:
            manifest, _ = job.manifest()  # authenticates it: a wrong key or a tampered backup stops here
            chunks = [e.chunk_id for e in manifest.chunks if e.kind == "docs"]
            auth = job.request.include_auth and any(e.kind == "auth" for e in manifest.chunks)
            changes = job.point_in_time is not None
            stored = self.store.save_plan(job_id, {"backup_id": job.request.backup_id, "chunks": chunks,
                                                   "auth": auth, "changes": changes, "started": time.time()},
                                          chunks + ([_AUTH_KEY] if auth else []) + ([_CHANGES_KEY] if changes else []))
            if self.on_plan is not None:
                self.on_plan(job_id, manifest, job)
            for chunk_id in stored["chunks"]:
                self.queue.enqueue(CHUNK, {"job": job_id, "chunk": chunk_id})
            if stored["auth"]:
                self.queue.enqueue(AUTH, {"job": job_id})
            if stored.get("changes"):
                self.queue.enqueue(CHANGES, {"job": job_id})
            self.finish(job_id, _PLAN_KEY)

        self.run(job_id, _PLAN_KEY, work)

    def chunk(self, payload: dict[str, Any]) -> None:
        job_id, chunk_id = payload["job"], payload["chunk"]

        def work(job: RestoreJob, resume: tuple[int, str | None] | None) -> None:
            manifest, data_key = job.manifest()
            r = job.request
            task = RestoreTask(backup_id=r.backup_id, chunk_id=chunk_id, project=r.project, database=r.database,
                               source_database=source_database(manifest), mode=r.mode, collections=r.collections,
                               dry_run=r.dry_run, keep_references=r.keep_references)
            keep = None
            if job.point_in_time is not None:
                from firebackup.pitr.restore import base_filter

                pit = job.point_in_time
                keep = base_filter(len(task.source_database) + len("/documents/"), pit.scope, pit.replaced())
            stats = restore_chunk(task, entry_by_id(manifest, chunk_id), repo=job.repo, data_key=data_key,
                                  conn=job.target, in_flight=job.in_flight, batch_writes=job.batch_writes,
                                  progress=self.progress, keep=keep)
            self.finish(job_id, chunk_id, {"written": stats.written, "skipped": stats.skipped,
                                           "failed": stats.failed, "errors": stats.errors[:ERROR_LIMIT]})

        self.run(job_id, chunk_id, work)

    def auth(self, payload: dict[str, Any]) -> None:
        job_id = payload["job"]

        def work(job: RestoreJob, resume: tuple[int, str | None] | None) -> None:
            from firebackup.errors import FireBackupError

            if job.auth is None:
                raise FireBackupError("this restore includes Auth users but no Auth target was configured")
            manifest, data_key = job.manifest()
            records = (rec for e in manifest.chunks if e.kind == "auth"
                       for rec in job.repo.iter_records(job.request.backup_id, e, data_key))
            out = job.auth.import_users(job.request.project, records, manifest.auth_hash_config,
                                        dry_run=job.request.dry_run, mode=job.request.mode)
            self.finish(job_id, _AUTH_KEY, {"auth_users": out.imported, "auth_users_failed": out.failed,
                                            "auth_users_skipped": out.skipped, "errors": out.errors[:ERROR_LIMIT]})

        self.run(job_id, _AUTH_KEY, work)

    def changes(self, payload: dict[str, Any]) -> None:
        job_id = payload["job"]

        def work(job: RestoreJob, resume: tuple[int, str | None] | None) -> None:
            from firebackup.errors import FireBackupError
            from firebackup.pitr.restore import apply_changes

            if job.point_in_time is None:
                raise FireBackupError("this restore is of a backup as it is; it has no captured changes to apply")
            manifest, _ = job.manifest()
            latest, r = job.point_in_time.latest(), job.request
            stats, deleted = apply_changes(job.target, latest, source=source_database(manifest), mode=r.mode,
                                           dry_run=r.dry_run, keep_references=r.keep_references,
                                           in_flight=job.in_flight, batch_writes=job.batch_writes)
            self.finish(job_id, _CHANGES_KEY, {"written": stats.written, "skipped": stats.skipped,
                                               "failed": stats.failed, "errors": stats.errors[:ERROR_LIMIT],
                                               "changes_applied": len(latest), "documents_deleted": deleted})

        self.run(job_id, _CHANGES_KEY, work)

    def finalize(self, payload: dict[str, Any]) -> None:
        job_id = payload["job"]

        def work(job: RestoreJob, resume: tuple[int, str | None] | None) -> None:
            stored = self.store.load_plan(job_id) or {}
            results = self.store.results(job_id)
            result = RestoreResult(backup_id=job.request.backup_id, dry_run=job.request.dry_run)
            for chunk_id in stored.get("chunks", []) + ([_CHANGES_KEY] if stored.get("changes") else []):
                got = results.get(chunk_id, {})
                result.documents_written += got.get("written", 0)
                result.documents_skipped += got.get("skipped", 0)
                result.documents_failed += got.get("failed", 0)
                result.errors.extend(got.get("errors", [])[: max(0, ERROR_LIMIT - len(result.errors))])
            auth = results.get(_AUTH_KEY, {})
            result.auth_users = auth.get("auth_users", 0)
            result.auth_users_failed = auth.get("auth_users_failed", 0)
            result.auth_users_skipped = auth.get("auth_users_skipped", 0)
            result.errors.extend(auth.get("errors", [])[: max(0, ERROR_LIMIT - len(result.errors))])
            result.duration_s = round(time.time() - stored.get("started", time.time()), 3)
            changed = results.get(_CHANGES_KEY, {})
            summary = {**result.to_dict(), "auth_users_failed": result.auth_users_failed,
                       "auth_users_skipped": result.auth_users_skipped, "errors": result.errors,
                       "changes_applied": changed.get("changes_applied", 0),
                       "documents_deleted": changed.get("documents_deleted", 0),
                       "error": None if result.ok else _failure_line(result)}
            self.store.complete(job_id, summary)

        self.run(job_id, FINALIZE_KEY, work)


def _failure_line(result: RestoreResult) -> str:
    first = (result.errors or ["see the restore log"])[0]
    return (f"{result.documents_failed} documents and {result.auth_users_failed} Auth users failed to restore; "
            f"first: {first}")[:500]
