"""The task policy every backup and restore task follows (engine/jobs.py), with generated documents and
storage in memory: leases, redelivery, resume, cancellation, one failure, and the queue's retries."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from firebackup.engine.backup import BackupHandlers, BackupJob, BackupRequest, run_backup
from firebackup.engine.demo import GeneratedSource
from firebackup.engine.jobs import ClaimState, LeaseHeld, MemoryJobStore, OneJob
from firebackup.engine.repository import Repository
from firebackup.engine.tasks import BACKUP_CHUNK, BACKUP_FINALIZE, BACKUP_PLAN
from firebackup.errors import AccessDenied, TransientStorageError
from firebackup.runtime.queue import LocalQueue
from firebackup.storage.memory import MemoryStorage

DOCS, CHUNK = 23, 5


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now


class Queue:
    """A queue the test plays: it keeps tasks until the test delivers them."""

    def __init__(self) -> None:
        self.tasks: list[tuple[str, dict[str, Any]]] = []

    def enqueue(self, name: str, payload: dict[str, Any]) -> None:
        self.tasks.append((name, payload))


def _world(**request: Any) -> tuple[BackupHandlers, MemoryJobStore, Queue, Repository, Clock]:
    clock, queue = Clock(), Queue()
    store = MemoryJobStore(clock=clock, lease_seconds=60)
    repo = Repository(MemoryStorage())
    source = GeneratedSource(DOCS, collections=["a", "b"])
    job = BackupJob(BackupRequest(project="demo-firebackup", chunk_docs=CHUNK, chunks_per_task=1, partitions=1,
                                  **request), source, repo)
    handlers = BackupHandlers(store=store, queue=queue, jobs=OneJob(job), clock=clock)
    return handlers, store, queue, repo, clock


def _deliver_all(handlers: BackupHandlers, queue: Queue) -> list[str]:
    ran, table = [], handlers.handlers()
    while queue.tasks:
        name, payload = queue.tasks.pop(0)
        table[name](payload)
        ran.append(name)
    return ran


def test_a_backup_runs_plan_then_one_task_per_chunk_then_finalize_exactly_once() -> None:
    handlers, store, queue, repo, _ = _world()
    queue.enqueue(BACKUP_PLAN, {"job": "j"})
    ran = _deliver_all(handlers, queue)
    chunks = -(-DOCS // CHUNK)
    assert ran == [BACKUP_PLAN] + [BACKUP_CHUNK] * chunks + [BACKUP_FINALIZE]
    assert store.state("j") == "completed"
    summary = store.summary("j")
    assert summary is not None and summary["documents"] == DOCS and summary["chunks"] == chunks


def test_every_task_delivered_twice_changes_nothing_the_second_time() -> None:
    handlers, store, queue, repo, _ = _world()
    queue.enqueue(BACKUP_PLAN, {"job": "j"})
    table, seen, manifests = handlers.handlers(), [], []
    write_manifest = repo.write_manifest

    def counting(*args: Any, **kw: Any) -> Any:
        manifests.append(args[0].backup_id)
        return write_manifest(*args, **kw)

    repo.write_manifest = counting  # type: ignore[method-assign]
    while queue.tasks:
        name, payload = queue.tasks.pop(0)
        table[name](payload)
        table[name](payload)  # the duplicate: a done task does nothing, a completed job too
        seen.append(name)
    # The last chunk's duplicate may hand finalize on again (in case its first delivery died before
    # doing so); the backup is still finalized exactly once.
    assert seen.count(BACKUP_FINALIZE) in (1, 2) and len(manifests) == 1
    summary = store.summary("j")
    assert summary is not None and summary["documents"] == DOCS
    manifest, _ = repo.read_manifest(summary["backup_id"], None)
    assert [e.chunk_id for e in manifest.chunks] == [f"d00000-{i:05d}" for i in range(-(-DOCS // CHUNK))]


def test_a_task_whose_lease_is_held_raises_lease_held_and_runs_after_the_lease_expires() -> None:
    handlers, store, queue, repo, clock = _world()
    queue.enqueue(BACKUP_PLAN, {"job": "j"})
    handlers.handlers()[BACKUP_PLAN](queue.tasks.pop(0)[1])
    name, payload = queue.tasks.pop(0)
    key = "d00000-00000"
    assert store.claim("j", key).state is ClaimState.RUN  # an attempt that then dies
    with pytest.raises(LeaseHeld):
        handlers.handlers()[name](payload)
    clock.now += dt.timedelta(seconds=61)
    handlers.handlers()[name](payload)
    assert store.job("j").tasks[key].done and store.job("j").tasks[key].attempts == 2


class Killed(BaseException):
    """The instance died: no except clause of ours runs."""


class DyingRepository(Repository):
    """Records which chunks are opened; the instance dies when `die_at` is opened."""

    def __init__(self, storage: MemoryStorage) -> None:
        super().__init__(storage)
        self.opened: list[str] = []
        self.die_at: str | None = None

    def open_chunk_writer(self, backup_id: str, chunk_id: str, **kw: Any) -> Any:
        self.opened.append(chunk_id)
        if chunk_id == self.die_at:
            self.die_at = None
            raise Killed()
        return super().open_chunk_writer(backup_id, chunk_id, **kw)


def test_a_redelivered_task_resumes_after_the_last_chunk_an_earlier_attempt_recorded() -> None:
    clock, queue = Clock(), Queue()
    store = MemoryJobStore(clock=clock, lease_seconds=60)
    repo = DyingRepository(MemoryStorage())
    # One task streams the whole range (the CLI's way), so a death mid-range loses several chunks' work.
    job = BackupJob(BackupRequest(project="demo-firebackup", chunk_docs=CHUNK, partitions=1),
                    GeneratedSource(DOCS, collections=["a"]), repo)
    handlers = BackupHandlers(store=store, queue=queue, jobs=OneJob(job), clock=clock)
    table = handlers.handlers()
    table[BACKUP_PLAN]({"job": "j"})
    name, payload = queue.tasks.pop(0)
    repo.die_at = "d00000-00002"
    with pytest.raises(Killed):
        table[name](payload)
    assert repo.opened == ["d00000-00000", "d00000-00001", "d00000-00002"]
    clock.now += dt.timedelta(seconds=61)  # the dead attempt's lease runs out; the queue redelivers
    repo.opened.clear()
    table[name](payload)
    assert repo.opened == [f"d00000-{i:05d}" for i in range(2, -(-DOCS // CHUNK))]  # not 0 and 1 again
    _deliver_all(handlers, queue)
    summary = store.summary("j")
    assert summary is not None and summary["documents"] == DOCS
    from firebackup.firestore.documents import document_name

    manifest, _ = repo.read_manifest(summary["backup_id"], None)
    names = [document_name(r) for e in manifest.chunks for r in repo.iter_records(summary["backup_id"], e, None)]
    assert len(names) == len(set(names)) == DOCS


def test_a_cancelled_job_stops_at_its_next_chunk_and_its_later_tasks_delete_what_it_wrote() -> None:
    handlers, store, queue, repo, _ = _world()
    queue.enqueue(BACKUP_PLAN, {"job": "j"})
    table = handlers.handlers()
    table[BACKUP_PLAN](queue.tasks.pop(0)[1])
    table[BACKUP_CHUNK](queue.tasks.pop(0)[1])
    plan = store.load_plan("j")
    assert plan is not None and list(repo.storage.list(repo.chunks_prefix(plan["backup_id"])))
    store.cancel("j")
    _deliver_all(handlers, queue)
    assert store.state("j") == "cancelled"
    assert list(repo.storage.list(repo.backup_prefix(plan["backup_id"]))) == []


class DeniedRepository(Repository):
    """Storage that refuses the third chunk for good (the bucket's policy changed mid-backup)."""

    def open_chunk_writer(self, backup_id: str, chunk_id: str, **kw: Any) -> Any:
        if chunk_id == "d00000-00002":
            raise AccessDenied("403 access denied on the third chunk; check the bucket policy")
        return super().open_chunk_writer(backup_id, chunk_id, **kw)


def test_a_permanent_error_fails_the_job_once_with_one_line_and_removes_its_chunks() -> None:
    clock, queue = Clock(), Queue()
    store = MemoryJobStore(clock=clock)
    repo = DeniedRepository(MemoryStorage())
    job = BackupJob(BackupRequest(project="demo-firebackup", chunk_docs=CHUNK, chunks_per_task=1, partitions=1),
                    GeneratedSource(DOCS, collections=["a"]), repo)
    handlers = BackupHandlers(store=store, queue=queue, jobs=OneJob(job), clock=clock)
    queue.enqueue(BACKUP_PLAN, {"job": "j"})
    ran = _deliver_all(handlers, queue)  # nothing raised to the queue: retrying cannot help
    assert store.state("j") == "failed"
    assert store.job("j").error == "403 access denied on the third chunk; check the bucket policy"
    assert BACKUP_FINALIZE not in ran and isinstance(handlers.failures["j"], AccessDenied)
    plan = store.load_plan("j")
    assert plan is not None and list(repo.storage.list(repo.backup_prefix(plan["backup_id"]))) == []


def test_the_local_queue_delivers_a_transiently_failing_task_again_and_gives_up_after_max_attempts() -> None:
    calls: list[int] = []
    given_up: list[str] = []

    def flaky(payload: dict[str, Any]) -> None:
        calls.append(payload["n"])
        if len(calls) < 3:
            raise TransientStorageError("503 (test); retrying may help")

    def always(payload: dict[str, Any]) -> None:
        raise TransientStorageError("503 forever (test)")

    with LocalQueue(threads=1, max_attempts=3, delay=lambda attempt: 0.0,
                    on_give_up=lambda name, payload, e: given_up.append(name)) as q:
        q.register("flaky", flaky)
        q.register("always", always)
        q.enqueue("flaky", {"n": 1})
        q.join()
        assert calls == [1, 1, 1] and given_up == []
        q.enqueue("always", {})
        q.join()
        assert given_up == ["always"]


def test_the_cli_way_and_a_played_queue_write_the_same_backup() -> None:
    played, store, queue, played_repo, _ = _world()
    queue.enqueue(BACKUP_PLAN, {"job": "j"})
    _deliver_all(played, queue)
    summary = store.summary("j")
    assert summary is not None
    repo = Repository(MemoryStorage())
    result = run_backup(BackupRequest(project="demo-firebackup", chunk_docs=CHUNK, partitions=1),
                        source=GeneratedSource(DOCS, collections=["a", "b"]), repo=repo)
    got, _ = repo.read_manifest(result.backup_id, None)
    want, _ = played_repo.read_manifest(summary["backup_id"], None)
    assert [(e.chunk_id, e.records, e.bytes_raw) for e in got.chunks] == \
        [(e.chunk_id, e.records, e.bytes_raw) for e in want.chunks]


class FlakyQueue(Queue):
    """The queue is unreachable for the first finalize enqueue (Cloud Tasks down right after a commit)."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0

    def enqueue(self, name: str, payload: dict[str, Any]) -> None:
        if name == BACKUP_FINALIZE and not self.refused:
            self.refused += 1
            raise TransientStorageError("503 (test): the queue is unreachable; retrying may help")
        super().enqueue(name, payload)


def test_a_finalize_lost_to_a_failed_enqueue_is_enqueued_by_the_last_tasks_redelivery() -> None:
    clock, queue = Clock(), FlakyQueue()
    store = MemoryJobStore(clock=clock)
    job = BackupJob(BackupRequest(project="demo-firebackup", chunk_docs=CHUNK, partitions=1),
                    GeneratedSource(DOCS, collections=["a"]), Repository(MemoryStorage()))
    handlers = BackupHandlers(store=store, queue=queue, jobs=OneJob(job), clock=clock)
    table = handlers.handlers()
    table[BACKUP_PLAN]({"job": "j"})
    name, payload = queue.tasks.pop(0)
    with pytest.raises(TransientStorageError):  # done, then the finalize enqueue failed: the task is retried
        table[name](payload)
    assert queue.refused == 1 and queue.tasks == [] and store.ready_to_finalize("j")
    table[name](payload)  # the queue's retry of that task finds it done, and hands finalize on
    assert queue.tasks == [(BACKUP_FINALIZE, {"job": "j"})]
    table[BACKUP_FINALIZE](queue.tasks.pop()[1])
    summary = store.summary("j")
    assert store.state("j") == "completed" and summary is not None and summary["documents"] == DOCS
