"""What a backup or restore job's tasks share between deliveries: the JobStore port and its in-memory adapter.

A job runs as tasks on a TaskQueue (runtime/queue.py) that delivers each task at least once. The
handlers (engine/backup/handlers.py, engine/restore/handlers.py) keep everything that must
survive a redelivery in a JobStore:

    claim(job, key)        take the task's lease: RUN (with where to resume), DONE (already
                           finished: do nothing), BUSY (another attempt holds an unexpired lease:
                           do nothing now, be delivered again later) or GONE (the job was
                           cancelled, failed or completed: do nothing)
    save_plan(job, ...)    the plan and the first tasks; the first plan saved wins, so a
                           redelivered plan task reuses it instead of planning again
    record_chunk(...)      one chunk written: its entry, where a redelivery resumes, a heartbeat
                           that extends the lease; raises JobCancelled once the job stopped running
    finish_task(...)       the task's result (replacing any earlier attempt's) and its follow-up
                           task; True when no task is left, so the caller enqueues `finalize`
    complete / fail        the job's outcome, recorded once

The CLI keeps a job in memory (MemoryJobStore); the control plane in its database
(services/job_store.py), where leases and counts outlive a killed function instance.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import logging
import threading
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Callable, ContextManager, Generic, Iterator, Protocol, TypeVar

from firebackup.errors import FireBackupError, TransientError, is_transient
from firebackup.format.manifest import ChunkEntry
from firebackup.runtime.queue import TaskQueue

log = logging.getLogger("firebackup.jobs")

Clock = Callable[[], dt.datetime]

DEFAULT_LEASE_SECONDS = 600.0  # longer than a chunk takes; a heartbeat renews it at every chunk


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class JobCancelled(Exception):
    """The job left the running state (cancelled, failed elsewhere, deleted) while a task worked on it."""


FINALIZE_KEY = "finalize"  # the task key every job's finalize task claims


class LeaseHeld(TransientError):
    """Another attempt holds this task's lease; the queue should deliver it again later."""

    def __init__(self, job_id: str, task_key: str):
        super().__init__(f"task {task_key} of job {job_id} is running elsewhere; it will be retried after its lease")


class ClaimState(enum.Enum):
    RUN = "run"
    DONE = "done"
    BUSY = "busy"
    GONE = "gone"


@dataclass(frozen=True)
class Claim:
    """The outcome of claim(): what to do, and for RUN where an earlier attempt got to."""

    state: ClaimState
    attempt: int = 0
    _: KW_ONLY
    job_state: str = "running"  # for GONE: cancelled, failed or completed (a missing job counts as cancelled)
    resume_seq: int | None = None  # the next chunk seq an earlier attempt did not record
    resume_after: str | None = None  # ... and the last document name it recorded


class JobStore(Protocol):
    """Job state shared by the task handlers; every method is safe under redelivery."""

    def claim(self, job_id: str, task_key: str) -> Claim:
        """Take the task's lease (created on first claim). The job becomes running on its first claim."""

    def load_plan(self, job_id: str) -> dict[str, Any] | None:
        """The plan saved by save_plan, or None before it."""

    def save_plan(self, job_id: str, plan: dict[str, Any], task_keys: list[str]) -> dict[str, Any]:
        """Store the plan and its first tasks unless one is stored already; return the stored plan."""

    def record_chunk(self, job_id: str, task_key: str, entry: ChunkEntry, resume_seq: int,
                     resume_after: str | None) -> None:
        """Record a written chunk (replacing an earlier attempt's) and renew the lease. Raises JobCancelled."""

    def finish_task(self, job_id: str, task_key: str, result: dict[str, Any] | None = None,
                    follow_up: str | None = None) -> bool:
        """Mark the task done with its result and add its follow-up; True when no task of the job is left.

        Raises JobCancelled when the job stopped running meanwhile (its output is to be discarded).
        """

    def ready_to_finalize(self, job_id: str) -> bool:
        """True when the job is running and every task it has is done (only finalize is left)."""

    def entries(self, job_id: str) -> list[ChunkEntry]:
        """Every chunk recorded for the job, one per chunk id."""

    def results(self, job_id: str) -> dict[str, dict[str, Any]]:
        """Each finished task's result, by task key."""

    def release(self, job_id: str, task_key: str) -> None:
        """Give up the task's lease: its attempt ended with an error and runs no more (a retry may claim it)."""

    def complete(self, job_id: str, summary: dict[str, Any]) -> bool:
        """running -> completed with the summary; False if the job is no longer running."""

    def fail(self, job_id: str, reason: str) -> bool:
        """running/pending -> failed with a one-line reason; False if it had already ended."""


def one_line(e: BaseException) -> str:
    """A job's error text: the first line of one of our errors, never a traceback or a payload."""
    if isinstance(e, FireBackupError):
        text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    else:
        text = f"internal error ({type(e).__name__}); see the worker log"
    return text[:500]


@dataclass
class _Task:
    done: bool = False
    lease_until: dt.datetime | None = None
    attempts: int = 0
    resume_seq: int | None = None
    resume_after: str | None = None
    result: dict[str, Any] | None = None


@dataclass
class _Job:
    state: str = "pending"
    plan: dict[str, Any] | None = None
    tasks: dict[str, _Task] = field(default_factory=dict)
    entries: dict[str, ChunkEntry] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    error: str | None = None


class MemoryJobStore:
    """A JobStore in this process's memory: the CLI's (one process runs every task) and unit tests'."""

    def __init__(self, *, clock: Clock = utcnow, lease_seconds: float = DEFAULT_LEASE_SECONDS):
        self._clock = clock
        self._lease = dt.timedelta(seconds=lease_seconds)
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}

    def job(self, job_id: str) -> _Job:
        with self._lock:
            return self._jobs.setdefault(job_id, _Job())

    def state(self, job_id: str) -> str:
        return self.job(job_id).state

    def cancel(self, job_id: str) -> None:
        with self._lock:
            job = self._jobs.setdefault(job_id, _Job())
            if job.state in ("pending", "running"):
                job.state = "cancelled"

    def claim(self, job_id: str, task_key: str) -> Claim:
        now = self._clock()
        with self._lock:
            job = self._jobs.setdefault(job_id, _Job())
            if job.state == "pending":
                job.state = "running"
            if job.state != "running":
                return Claim(ClaimState.GONE, job_state=job.state)
            task = job.tasks.setdefault(task_key, _Task())
            if task.done:
                return Claim(ClaimState.DONE, task.attempts)
            if task.lease_until is not None and task.lease_until > now:
                return Claim(ClaimState.BUSY, task.attempts)
            task.lease_until = now + self._lease
            task.attempts += 1
            return Claim(ClaimState.RUN, task.attempts, resume_seq=task.resume_seq, resume_after=task.resume_after)

    def load_plan(self, job_id: str) -> dict[str, Any] | None:
        return self.job(job_id).plan

    def save_plan(self, job_id: str, plan: dict[str, Any], task_keys: list[str]) -> dict[str, Any]:
        with self._lock:
            job = self._jobs.setdefault(job_id, _Job())
            if job.plan is None:
                job.plan = plan
                for key in task_keys:
                    job.tasks.setdefault(key, _Task())
            return job.plan

    def record_chunk(self, job_id: str, task_key: str, entry: ChunkEntry, resume_seq: int,
                     resume_after: str | None) -> None:
        now = self._clock()
        with self._lock:
            job = self._jobs.setdefault(job_id, _Job())
            if job.state != "running":
                raise JobCancelled(job_id)
            job.entries[entry.chunk_id] = entry
            task = job.tasks.setdefault(task_key, _Task())
            task.resume_seq, task.resume_after = resume_seq, resume_after
            task.lease_until = now + self._lease

    def finish_task(self, job_id: str, task_key: str, result: dict[str, Any] | None = None,
                    follow_up: str | None = None) -> bool:
        with self._lock:
            job = self._jobs.setdefault(job_id, _Job())
            if follow_up is not None:
                job.tasks.setdefault(follow_up, _Task())
            task = job.tasks.setdefault(task_key, _Task())
            task.done, task.result, task.lease_until = True, result, None
            if job.state != "running":
                raise JobCancelled(job_id)
            return all(t.done for t in job.tasks.values())

    def ready_to_finalize(self, job_id: str) -> bool:
        with self._lock:
            job = self._jobs.setdefault(job_id, _Job())
            return job.state == "running" and all(t.done for k, t in job.tasks.items() if k != "finalize")

    def release(self, job_id: str, task_key: str) -> None:
        with self._lock:
            task = self._jobs.setdefault(job_id, _Job()).tasks.get(task_key)
            if task is not None and not task.done:
                task.lease_until = None

    def entries(self, job_id: str) -> list[ChunkEntry]:
        with self._lock:
            return list(self._jobs.setdefault(job_id, _Job()).entries.values())

    def results(self, job_id: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            job = self._jobs.setdefault(job_id, _Job())
            return {k: dict(t.result) for k, t in job.tasks.items() if t.done and t.result is not None}

    def complete(self, job_id: str, summary: dict[str, Any]) -> bool:
        with self._lock:
            job = self._jobs.setdefault(job_id, _Job())
            if job.state != "running":
                return False
            job.state, job.summary = "completed", summary
            return True

    def fail(self, job_id: str, reason: str) -> bool:
        with self._lock:
            job = self._jobs.setdefault(job_id, _Job())
            if job.state not in ("pending", "running"):
                return False
            job.state, job.error = "failed", reason
            return True

    def summary(self, job_id: str) -> dict[str, Any] | None:
        return self.job(job_id).summary


J = TypeVar("J")
J_co = TypeVar("J_co", covariant=True)
Work = Callable[[J, "tuple[int, str | None] | None"], None]
Handler = Callable[[dict[str, Any]], None]


class Jobs(Protocol[J_co]):
    def open(self, job_id: str) -> ContextManager[J_co]:
        """The job's request and adapters for one task, closed when the task ends."""


class OneJob(Generic[J]):
    """Jobs for a process that runs a single job whose adapters it already holds (the CLI)."""

    def __init__(self, job: J):
        self.job = job

    @contextlib.contextmanager
    def open(self, job_id: str) -> Iterator[J]:
        yield self.job


class TaskRunner(Generic[J]):
    """The policy every task of a job follows: lease, resume, finish, fail once, discard.

    run() claims the task's lease (DONE or GONE: nothing to do; BUSY: LeaseHeld, so the queue
    delivers it again later), opens the job, and runs the work. JobCancelled discards the job's
    partial output. A transient error propagates so the queue retries the task; any other ends
    the job once, failed with one line, and discards its partial output; the task itself then
    returns normally (retrying cannot help), and `failures` keeps the error for an in-process caller.
    """

    kind = "job"
    finalize_task = ""

    def __init__(self, *, store: JobStore, queue: TaskQueue, jobs: Jobs[J], clock: Clock = utcnow):
        self.store, self.queue, self.jobs, self.clock = store, queue, jobs, clock
        self.failures: dict[str, BaseException] = {}

    def discard(self, job_id: str, job: J) -> None:
        """Remove what a job that will not complete has written so far (best effort)."""

    def finish(self, job_id: str, key: str, result: dict[str, Any] | None = None,
               follow_up: str | None = None) -> None:
        if self.store.finish_task(job_id, key, result, follow_up):
            self.queue.enqueue(self.finalize_task, {"job": job_id})

    def run(self, job_id: str, key: str, work: Work[J]) -> None:
        claim = self.store.claim(job_id, key)
        if claim.state is ClaimState.GONE and claim.job_state in ("cancelled", "failed"):
            # What the job wrote before it stopped goes; every later task of it tries again, so
            # a task that was still writing when the first one cleaned up is cleaned up too.
            try:
                with self.jobs.open(job_id) as job:
                    self.discard(job_id, job)
            except Exception as e:  # noqa: BLE001 - best effort; a later task (or the reaper) tries again
                log.warning("%s %s: could not remove its partial output: %s", self.kind, job_id, one_line(e))
            return
        if claim.state is ClaimState.DONE:
            # A redelivery of a finished task: if it was the last one and its first delivery died
            # between "done" and enqueueing finalize, nobody else will; finalize is idempotent.
            if key != FINALIZE_KEY and self.store.ready_to_finalize(job_id):
                self.queue.enqueue(self.finalize_task, {"job": job_id})
            return
        if claim.state is ClaimState.GONE:
            return
        if claim.state is ClaimState.BUSY:
            raise LeaseHeld(job_id, key)
        resume = (claim.resume_seq, claim.resume_after) if claim.resume_seq is not None else None
        try:
            with self.jobs.open(job_id) as job:
                try:
                    work(job, resume)
                except JobCancelled:
                    log.info("%s %s stopped while task %s ran; its partial output is removed", self.kind, job_id, key)
                    self.discard(job_id, job)
                except Exception as e:
                    if is_transient(e):
                        raise
                    self._fail(job_id, key, e)
                    self.discard(job_id, job)
        except Exception as e:
            if is_transient(e):
                # This attempt is over: let the queue's next delivery take the task at once.
                self.store.release(job_id, key)
                raise
            self._fail(job_id, key, e)  # the job's adapters could not even be opened

    def _fail(self, job_id: str, key: str, e: Exception) -> None:
        if job_id in self.failures:
            return
        if isinstance(e, FireBackupError):
            log.warning("%s %s failed in task %s: %s", self.kind, job_id, key, one_line(e))
        else:
            log.exception("%s %s failed unexpectedly in task %s", self.kind, job_id, key)
        if self.store.fail(job_id, one_line(e)):
            self.failures[job_id] = e
