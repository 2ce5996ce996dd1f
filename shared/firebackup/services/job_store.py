"""The control plane's JobStore (engine/jobs.py): job rows (Backup, Restore) and their JobTask rows.

Every decision that two deliveries of a task could race on is one conditional UPDATE, or is
taken under a lock on the job row, so SQLite and PostgreSQL both give one winner:
    claim        UPDATE job_tasks SET lease WHERE not done AND the lease expired
    finish_task  marks the task done and counts what is left while holding the job row
    complete     running -> completed WHERE state = running
A task's result replaces an earlier attempt's; chunk rows are keyed by (backup, chunk id).
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, Callable, Generic, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from firebackup.db.models import Backup, BackupChunk, JobTask, KeyRotation, Restore
from firebackup.engine.jobs import DEFAULT_LEASE_SECONDS, FINALIZE_KEY, Claim, ClaimState, JobCancelled, utcnow
from firebackup.firestore.documents import parse_rfc3339
from firebackup.format.manifest import ChunkEntry
from firebackup.runtime.metrics import JobFinished, QueueDepth
from firebackup.services.context import Ctx, Ports

# One store serves one kind of job row; the type variable keeps that kind through s.get().
JobRow = TypeVar("JobRow", Backup, Restore)
# Any job row with a state and a lease (a key rotation too): what TaskLeases needs.
LeasedRow = TypeVar("LeasedRow", Backup, Restore, KeyRotation)
_ACTIVE = ("pending", "running")


class TaskLeases(Generic[LeasedRow]):
    """The leases of one kind of job's tasks (JobTask rows): claim and release, for at-least-once delivery."""

    def __init__(self, factory: sessionmaker[Session], ports: Ports, model: type[LeasedRow], *,
                 clock: Callable[[], dt.datetime] = utcnow, lease_seconds: float = DEFAULT_LEASE_SECONDS):
        self.factory, self.ports = factory, ports
        self.model: type[LeasedRow] = model
        self.clock = clock
        self.lease = dt.timedelta(seconds=lease_seconds)

    # --- leases ----------------------------------------------------------------------------------

    def claim(self, job_id: str, task_key: str) -> Claim:
        # One transaction and, on the common path, three statements: every chunk task starts here,
        # so its round trips are paid once per task on every worker (bench/fanout.py measures them).
        now = self.clock()
        with self.factory.begin() as s:
            state = s.scalar(sa.select(self.model.state).where(self.model.id == job_id))
            if state not in _ACTIVE:
                return Claim(ClaimState.GONE, job_state=state if state is not None else "deleted")
            took = self._take_lease(s, job_id, task_key, now)
            if took is None:
                task = s.scalar(sa.select(JobTask).where(JobTask.job_id == job_id, JobTask.task_key == task_key))
                if task is None:
                    try:
                        with s.begin_nested():
                            s.add(JobTask(job_id=job_id, task_key=task_key))
                    except sa.exc.IntegrityError:
                        pass  # another delivery inserted it first
                    took = self._take_lease(s, job_id, task_key, now)
                if took is None:
                    task = s.scalar(sa.select(JobTask).where(JobTask.job_id == job_id,
                                                             JobTask.task_key == task_key))
                    assert task is not None
                    return Claim(ClaimState.DONE if task.done else ClaimState.BUSY, task.attempts)
            attempts, resume_seq, resume_after = took
            # Only the first claim starts the job (SET sees the row's old values); a cancel that won
            # the race keeps it cancelled.
            pending = self.model.state == "pending"
            s.execute(sa.update(self.model).where(self.model.id == job_id).values(
                state=sa.case((pending, "running"), else_=self.model.state),
                started_at=sa.case((pending, now), else_=self.model.started_at),
                attempts=self.model.attempts + 1, heartbeat_at=now, lease_until=now + self.lease))
            return Claim(ClaimState.RUN, attempts, resume_seq=resume_seq, resume_after=resume_after)

    def _take_lease(self, s: Session, job_id: str, task_key: str,
                    now: dt.datetime) -> tuple[int, int | None, str | None] | None:
        """The lease on the task if it is not done and no unexpired lease holds it: (attempts, resume point)."""
        row = s.execute(
            sa.update(JobTask)
            .where(JobTask.job_id == job_id, JobTask.task_key == task_key, JobTask.done.is_(False),
                   sa.or_(JobTask.lease_until.is_(None), JobTask.lease_until <= now))
            .values(lease_until=now + self.lease, heartbeat_at=now, attempts=JobTask.attempts + 1)
            .returning(JobTask.attempts, JobTask.resume_seq, JobTask.resume_after)
        ).one_or_none()
        return None if row is None else (row[0], row[1], row[2])

    def release(self, job_id: str, task_key: str) -> None:
        with self.factory.begin() as s:
            s.execute(sa.update(JobTask).where(JobTask.job_id == job_id, JobTask.task_key == task_key,
                                               JobTask.done.is_(False)).values(lease_until=None))


class DbJobStore(TaskLeases[JobRow]):
    """A JobStore over the metadata database for one kind of job row (Backup or Restore)."""

    # A job's plan never changes once saved (save_plan keeps the first), so an instance keeps the
    # plans of its recent jobs instead of reading them again for every task it runs.
    _PLANS_KEPT = 16

    @functools.cached_property
    def _recent_plans(self) -> dict[str, dict[str, Any]]:
        return {}

    # --- the plan ----------------------------------------------------------------------------------

    def load_plan(self, job_id: str) -> dict[str, Any] | None:
        if job_id in self._recent_plans:
            return self._recent_plans[job_id]
        with self.factory() as s:
            plan = s.scalar(sa.select(self.model.plan).where(self.model.id == job_id))
        if plan is not None:
            self._keep_plan(job_id, plan)
        return plan

    def _keep_plan(self, job_id: str, plan: dict[str, Any]) -> None:
        plans = self._recent_plans
        plans[job_id] = plan
        while len(plans) > self._PLANS_KEPT:
            plans.pop(next(iter(plans)), None)  # the oldest (dicts keep insertion order)

    def save_plan(self, job_id: str, plan: dict[str, Any], task_keys: list[str]) -> dict[str, Any]:
        with self.factory.begin() as s:
            job = s.get(self.model, job_id, with_for_update=True)
            if job is None:
                raise JobCancelled(job_id)
            if job.plan is not None:
                return job.plan
            job.plan = plan
            if isinstance(job, Backup):
                job.repo_backup_id = plan["backup_id"]
                job.read_time = parse_rfc3339(plan["read_time"])
                job.chunks_total = len(task_keys)
            else:
                job.chunks_total = len(task_keys)
            known = set(s.scalars(sa.select(JobTask.task_key).where(JobTask.job_id == job_id)))
            s.add_all(JobTask(job_id=job_id, task_key=k) for k in task_keys if k not in known)
            return plan

    # --- progress ----------------------------------------------------------------------------------

    def record_chunk(self, job_id: str, task_key: str, entry: ChunkEntry, resume_seq: int,
                     resume_after: str | None) -> None:
        now = self.clock()
        with self.factory.begin() as s:
            job = s.get(self.model, job_id, with_for_update=True)
            if job is None or job.state != "running":
                raise JobCancelled(job_id)
            s.execute(sa.delete(BackupChunk).where(BackupChunk.backup_id == job_id,
                                                   BackupChunk.chunk_id == entry.chunk_id))
            s.add(BackupChunk(backup_id=job_id, chunk_id=entry.chunk_id, kind=entry.kind, key=entry.key,
                              records=entry.records, bytes_raw=entry.bytes_raw, bytes_stored=entry.bytes_stored,
                              sha256=entry.sha256, extra=entry.extra or None))
            s.execute(sa.update(JobTask).where(JobTask.job_id == job_id, JobTask.task_key == task_key)
                      .values(resume_seq=resume_seq, resume_after=resume_after, heartbeat_at=now,
                              lease_until=now + self.lease))
            s.flush()
            docs, raw, stored, chunks = s.execute(
                sa.select(sa.func.coalesce(sa.func.sum(sa.case((BackupChunk.kind == "docs", BackupChunk.records),
                                                               else_=0)), 0),
                          sa.func.coalesce(sa.func.sum(BackupChunk.bytes_raw), 0),
                          sa.func.coalesce(sa.func.sum(BackupChunk.bytes_stored), 0),
                          sa.func.count())
                .where(BackupChunk.backup_id == job_id)).one()
            pending = self._pending(s, job_id)
            if isinstance(job, Backup):
                job.documents, job.bytes_raw, job.bytes_stored = int(docs), int(raw), int(stored)
                job.chunks_done, job.chunks_total = int(chunks), int(chunks) + pending
            job.heartbeat_at, job.lease_until = now, now + self.lease

    def finish_task(self, job_id: str, task_key: str, result: dict[str, Any] | None = None,
                    follow_up: str | None = None) -> bool:
        with self.factory.begin() as s:
            # The job row lock makes "am I the last?" one decision: two tasks finishing together
            # cannot both see the other still pending.
            job = s.get(self.model, job_id, with_for_update=True)
            if follow_up is not None and s.scalar(sa.select(JobTask.id).where(
                    JobTask.job_id == job_id, JobTask.task_key == follow_up)) is None:
                try:
                    with s.begin_nested():
                        s.add(JobTask(job_id=job_id, task_key=follow_up))
                except sa.exc.IntegrityError:
                    pass  # the follow-up, already running elsewhere, registered itself (claim) meanwhile
            s.execute(sa.update(JobTask).where(JobTask.job_id == job_id, JobTask.task_key == task_key)
                      .values(done=True, result=result, lease_until=None))
            s.flush()
            if job is None or job.state != "running":
                raise JobCancelled(job_id)
            pending = self._pending(s, job_id)
            if isinstance(job, Restore):
                # chunks_total counts the plan's tasks (chunks, Auth users, changes): so does this.
                job.chunks_done = s.scalar(sa.select(sa.func.count()).select_from(JobTask).where(
                    JobTask.job_id == job_id, JobTask.done.is_(True),
                    JobTask.task_key.not_in(("plan", FINALIZE_KEY)))) or 0
            return pending == 0

    def ready_to_finalize(self, job_id: str) -> bool:
        with self.factory() as s:
            state = s.scalar(sa.select(self.model.state).where(self.model.id == job_id))
            pending = s.scalar(sa.select(sa.func.count()).select_from(JobTask).where(
                JobTask.job_id == job_id, JobTask.done.is_(False), JobTask.task_key != FINALIZE_KEY)) or 0
            return state == "running" and pending == 0

    @staticmethod
    def _pending(s: Session, job_id: str) -> int:
        return s.scalar(sa.select(sa.func.count()).select_from(JobTask).where(
            JobTask.job_id == job_id, JobTask.done.is_(False))) or 0

    def entries(self, job_id: str) -> list[ChunkEntry]:
        with self.factory() as s:
            rows = s.scalars(sa.select(BackupChunk).where(BackupChunk.backup_id == job_id)
                             .order_by(BackupChunk.chunk_id))
            return [ChunkEntry(chunk_id=r.chunk_id, kind=r.kind, key=r.key, records=r.records, bytes_raw=r.bytes_raw,
                               bytes_stored=r.bytes_stored, sha256=r.sha256, extra=dict(r.extra or {}))
                    for r in rows]

    def results(self, job_id: str) -> dict[str, dict[str, Any]]:
        with self.factory() as s:
            rows = s.execute(sa.select(JobTask.task_key, JobTask.result).where(
                JobTask.job_id == job_id, JobTask.done.is_(True)))
            # A JSON column stores None as JSON null, which SQL's IS NULL does not see.
            return {key: dict(result) for key, result in rows if result is not None}

    # --- outcome -------------------------------------------------------------------------------------

    def complete(self, job_id: str, summary: dict[str, Any]) -> bool:
        from firebackup.services.jobs import record_outcome

        with self.factory.begin() as s:
            job = s.get(self.model, job_id, with_for_update=True)
            if job is None or job.state != "running":
                return False
            if isinstance(job, Backup):
                job.documents, job.bytes_raw = summary["documents"], summary["bytes_raw"]
                job.bytes_stored, job.manifest_key = summary["bytes_stored"], summary["manifest_key"]
                job.chunks_done = job.chunks_total = summary["chunks"]
            else:
                job.documents_written = summary["documents_written"]
                job.documents_skipped = summary["documents_skipped"]
                job.documents_failed = summary["documents_failed"]
                job.auth_users = summary["auth_users"]
                job.changes_applied = summary.get("changes_applied", 0)
                job.documents_deleted = summary.get("documents_deleted", 0)
            job.lease_until = None
            failed = summary.get("error")
            record_outcome(Ctx(s, self.ports), job, "failed" if failed else "completed", failed)
            finished = _finished(job)
        # Reported after the commit: a rolled-back outcome is never counted.
        self.ports.metrics.job_finished(finished)
        return True

    def fail(self, job_id: str, reason: str) -> bool:
        from firebackup.services.jobs import record_outcome

        with self.factory.begin() as s:
            job = s.get(self.model, job_id, with_for_update=True)
            if job is None or job.state not in _ACTIVE:
                return False
            job.lease_until = None
            record_outcome(Ctx(s, self.ports), job, "failed", reason)
            finished = _finished(job)
        self.ports.metrics.job_finished(finished)
        return True


def _finished(job: Backup | Restore) -> JobFinished:
    """The metrics' view of a job that has just reached its outcome."""
    started = job.started_at or job.created_at
    seconds = (job.finished_at - started).total_seconds() if job.finished_at and started else 0.0
    outcome: Literal["completed", "failed"] = "completed" if job.state == "completed" else "failed"
    if isinstance(job, Backup):
        size = job.bytes_stored if outcome == "completed" else None  # a failed backup's bytes are partial
        return JobFinished("backup", job.org_id, job.project_id or "", outcome, seconds, size)
    return JobFinished("restore", job.org_id, job.target_project_id, outcome, seconds)


def queue_depth(factory: sessionmaker[Session]) -> list[QueueDepth]:
    """Pending and running jobs of each kind, counted in the database (what every instance sees)."""
    out = []
    with factory() as s:
        for kind, model in (("backup", Backup), ("restore", Restore)):
            counts: dict[str, int] = {state: n for state, n in s.execute(
                sa.select(model.state, sa.func.count()).where(model.state.in_(_ACTIVE)).group_by(model.state))}
            out.append(QueueDepth(kind, waiting=counts.get("pending", 0), active=counts.get("running", 0)))
    return out
