"""The backup task handlers: the only code that runs a backup, for the CLI, the API and every worker.

    backup.plan      {"job"}           fix read_time, split, save the plan, enqueue the first tasks
    backup.chunk     {"job", "task"}   stream one range into chunks, record each, hand on the rest
    backup.auth      {"job"}           Auth users into auth chunks
    backup.finalize  {"job"}           enqueued by whichever task finishes last: the manifest

Delivery is at least once. Each task first claims its lease in the JobStore: a task already
done, or of a job that stopped, does nothing; one whose lease another attempt holds raises
LeaseHeld (transient: the queue delivers it again later); one redelivered after its lease
expired resumes after the last chunk an earlier attempt recorded. Chunk ids and contents
depend only on the data at read_time, so a task run twice writes the same objects and the
store keeps one entry per chunk id. A transient error propagates (the queue retries); any
other ends the job once, `failed` with one line, and its partial objects are deleted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol

from firebackup.crypto.keys import KeyEncryptionKey
from firebackup.engine.backup.chunk import backup_auth_users, run_chunk
from firebackup.engine.backup.finalize import backup_result, finalize
from firebackup.engine.backup.model import AUTH_TASK, BackupPlan, BackupRequest, ChunkTask
from firebackup.engine.backup.plan import plan
from firebackup.engine.jobs import FINALIZE_KEY, Clock, Handler, JobCancelled, Jobs, JobStore, TaskRunner, utcnow
from firebackup.engine.ports import BackupRepository, DocumentSource
from firebackup.errors import FireBackupError
from firebackup.format.manifest import ChunkEntry
from firebackup.progress import ProgressCallback
from firebackup.runtime.queue import TaskQueue

from firebackup.engine.tasks import BACKUP_AUTH as AUTH
from firebackup.engine.tasks import BACKUP_CHUNK as CHUNK
from firebackup.engine.tasks import BACKUP_FINALIZE as FINALIZE
from firebackup.engine.tasks import BACKUP_PLAN as PLAN
_PLAN_KEY = "plan"



class AuthUsers(Protocol):
    """Firebase Auth of the source project, as the backup reads it."""

    def export_users(self, project: str) -> Iterator[bytes]:
        """Every user as one JSON record."""

    def hash_config(self, project: str) -> dict[str, Any] | None:
        """The project's password-hash parameters (secret: they go only into the sealed manifest)."""


@dataclass
class BackupJob:
    """What one job's tasks work with: its request and the adapters opened for it."""

    request: BackupRequest
    source: DocumentSource
    repo: BackupRepository
    kek: KeyEncryptionKey | None = None
    auth: AuthUsers | None = None
    read_time: dt.datetime | None = None  # None: the source's clock when the plan runs


class BackupHandlers(TaskRunner[BackupJob]):
    """plan, chunk, auth and finalize over a JobStore and a TaskQueue; register handlers() on the queue."""

    kind, finalize_task = "backup", FINALIZE

    def __init__(self, *, store: JobStore, queue: TaskQueue, jobs: Jobs[BackupJob],
                 progress: ProgressCallback | None = None,
                 on_plan: Callable[[str, BackupPlan, BackupJob], None] | None = None, clock: Clock = utcnow):
        super().__init__(store=store, queue=queue, jobs=jobs, clock=clock)
        self.progress, self.on_plan = progress, on_plan

    def handlers(self) -> dict[str, Handler]:
        return {PLAN: self.plan, CHUNK: self.chunk, AUTH: self.auth, FINALIZE: self.finalize}

    # --- the tasks ---------------------------------------------------------------------------

    def plan(self, payload: dict[str, Any]) -> None:
        job_id = payload["job"]

        def work(job: BackupJob, resume: tuple[int, str | None] | None) -> None:
            stored = self.store.load_plan(job_id)
            if stored is None:
                made = plan(job.request, source=job.source, repo=job.repo, kek=job.kek, read_time=job.read_time)
                # A redelivered plan task finds the first attempt's plan and enqueues the same tasks.
                stored = self.store.save_plan(job_id, made.to_dict(job.kek), made.task_keys())
            p = BackupPlan.from_dict(stored, job.kek)
            if self.on_plan is not None:
                self.on_plan(job_id, p, job)
            for task in p.tasks:
                self.queue.enqueue(CHUNK, {"job": job_id, "task": task.to_dict()})
            if p.include_auth:
                self.queue.enqueue(AUTH, {"job": job_id})
            self.finish(job_id, _PLAN_KEY)

        self.run(job_id, _PLAN_KEY, work)

    def chunk(self, payload: dict[str, Any]) -> None:
        job_id, task = payload["job"], ChunkTask.from_dict(payload["task"])

        def work(job: BackupJob, resume: tuple[int, str | None] | None) -> None:
            p = self._plan(job_id, job)
            follow_up: list[str] = []

            def record(entry: ChunkEntry, next_seq: int, last_name: str | None) -> None:
                self.store.record_chunk(job_id, task.key, entry, next_seq, last_name)

            def hand_on(follow: ChunkTask) -> None:
                follow_up.append(follow.key)
                self.queue.enqueue(CHUNK, {"job": job_id, "task": follow.to_dict()})

            result = run_chunk(p, task, source=job.source, repo=job.repo, resume=resume, on_chunk=record,
                               on_follow_up=hand_on, progress=self.progress)
            self.finish(job_id, task.key, {"documents": result.documents}, follow_up[0] if follow_up else None)

        self.run(job_id, task.key, work)

    def auth(self, payload: dict[str, Any]) -> None:
        job_id = payload["job"]

        def work(job: BackupJob, resume: tuple[int, str | None] | None) -> None:
            p = self._plan(job_id, job)
            if job.auth is None:
                raise FireBackupError("this backup includes Auth users but no Auth source was configured")
            entries, users = backup_auth_users(p, job.auth.export_users(p.project), repo=job.repo,
                                               progress=self.progress)
            for entry in entries:
                self.store.record_chunk(job_id, AUTH_TASK, entry, 0, None)
            self.finish(job_id, AUTH_TASK, {"auth_users": users})

        self.run(job_id, AUTH_TASK, work)

    def finalize(self, payload: dict[str, Any]) -> None:
        job_id = payload["job"]

        def work(job: BackupJob, resume: tuple[int, str | None] | None) -> None:
            p = self._plan(job_id, job)
            users = self.store.results(job_id).get(AUTH_TASK, {}).get("auth_users", 0)
            hash_config = None
            if p.include_auth:
                assert job.auth is not None  # the auth task, which ran first, refused otherwise
                hash_config = job.auth.hash_config(p.project)
            manifest = finalize(p, self.store.entries(job_id), repo=job.repo, kek=job.kek, auth_users=users,
                                auth_hash_config=hash_config)
            took = (self.clock() - p.created_at).total_seconds()
            summary = backup_result(p, manifest, took).to_dict()
            summary["manifest_key"] = job.repo.manifest_key(p.backup_id)
            if not self.store.complete(job_id, summary):
                raise JobCancelled(job_id)  # cancelled while the manifest was written: not a backup after all

        self.run(job_id, FINALIZE_KEY, work)

    # --- the policy shared by every task -------------------------------------------------------

    def _plan(self, job_id: str, job: BackupJob) -> BackupPlan:
        stored = self.store.load_plan(job_id)
        if stored is None:
            raise FireBackupError(f"job {job_id} has no plan; its tasks ran before the plan task")
        return BackupPlan.from_dict(stored, job.kek)

    def discard(self, job_id: str, job: BackupJob) -> None:
        """Best effort: a backup that will not complete leaves no objects behind."""
        stored = self.store.load_plan(job_id)
        if stored is None:
            return
        try:
            job.repo.delete_backup(stored["backup_id"])
        except FireBackupError:
            pass  # nothing there yet (BackupNotFound), or unreachable: leftovers stay an incomplete backup
