"""run_backup: one whole backup in this process (the CLI's), through the same handlers the workers run."""

from __future__ import annotations

import datetime as dt
import threading
from typing import TypeGuard

from firebackup.crypto.keys import KeyEncryptionKey
from firebackup.engine.backup.handlers import AuthUsers, BackupHandlers, BackupJob
from firebackup.engine.jobs import OneJob
from firebackup.engine.backup.model import BACKUP_RESULT_KEYS, DEFAULT_THREADS, BackupPlan, BackupRequest, BackupResult
from firebackup.engine.jobs import MemoryJobStore
from firebackup.engine.ports import BackupRepository, DocumentSource, ServerStream, Snapshot
from firebackup.engine.tasks import BACKUP_PLAN
from firebackup.errors import FireBackupError, UsageError
from firebackup.progress import NoProgress, ProgressBar, ProgressCallback
from firebackup.runtime.queue import LocalQueue

JOB = "local"


class _DocumentTotal:
    """Counts, on a daemon thread, the documents a backup reads and hands the total to the
    progress bar (which then shows a percentage and an ETA).

    Best effort: the count is only for the eye, so any error in it is swallowed and the bar
    simply keeps no total; the backup's own reads report real problems. stop() cancels a
    count still running (it is an index scan on the server) without waiting for it.
    """

    def __init__(self, reader: Snapshot, collections: list[str] | None, progress: ProgressBar) -> None:
        self._progress = progress
        self._lock = threading.Lock()
        self._stream: ServerStream | None = None
        self._stopped = False
        # Daemon: a count still running never keeps the process alive after the backup.
        self.thread = threading.Thread(
            target=self._run, args=(reader, collections), name="firebackup-count", daemon=True
        )
        self.thread.start()

    def _track(self, stream: ServerStream) -> None:
        with self._lock:
            self._stream = stream
            stopped = self._stopped
        if stopped:
            stream.cancel()

    def _run(self, reader: Snapshot, collections: list[str] | None) -> None:
        try:
            n = reader.count_documents(collections, on_stream=self._track)
            with self._lock:  # held, so that once stop() returns no total arrives any more
                if not self._stopped:
                    self._progress.set_total(documents=n)
        except Exception:  # noqa: BLE001 - see the class docstring: no total is the only consequence
            pass

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            stream = self._stream
        if stream is not None:
            stream.cancel()


def _someone_watches(progress: ProgressCallback | None) -> TypeGuard[ProgressBar]:
    """True for a progress bar that can show a total (not None, not the silent NoProgress)."""
    return isinstance(progress, ProgressBar) and not isinstance(progress, NoProgress)


def run_backup(
    request: BackupRequest,
    *,
    source: DocumentSource,
    repo: BackupRepository,
    kek: KeyEncryptionKey | None = None,
    auth: AuthUsers | None = None,
    threads: int = DEFAULT_THREADS,
    progress: ProgressCallback | None = None,
    read_time: dt.datetime | None = None,
    store: MemoryJobStore | None = None,
) -> BackupResult:
    """Back up one database (and Auth users) into repo on a LocalQueue; return the CLI's result.

    The caller owns source and repo (opens and closes them). When progress is a bar someone
    watches, a daemon thread also COUNTs the documents at read_time and gives the bar its
    total, hence an ETA.
    """
    if request.include_auth and auth is None:
        raise UsageError("a backup that includes Auth users needs an Auth source (auth=)")
    job_store = store if store is not None else MemoryJobStore()
    totals: list[_DocumentTotal] = []

    def planned(job_id: str, p: BackupPlan, job: BackupJob) -> None:
        if _someone_watches(progress) and not totals:
            # Only for a human at a terminal: the count costs the server an index scan
            # (on the emulator, which shares the machine, ~0.5 s per 40k documents), which
            # benchmarks and --json runs (NoProgress) must not pay for.
            totals.append(_DocumentTotal(job.source.snapshot(p.read_time), p.requested_collections, progress))

    # One delivery per task: inside it every call already retries transient errors (retry.RetryPolicy);
    # a second delivery would only repeat that wait before the same one-line error.
    queue = LocalQueue(threads=max(1, threads), max_attempts=1)
    handlers = BackupHandlers(store=job_store, queue=queue, progress=progress, on_plan=planned,
                              jobs=OneJob(BackupJob(request, source, repo, kek, auth, read_time)))
    for name, handler in handlers.handlers().items():
        queue.register(name, handler)
    try:
        queue.enqueue(BACKUP_PLAN, {"job": JOB})
        try:
            queue.join()
        except BaseException:
            handlers.failures.setdefault(JOB, FireBackupError("backup interrupted"))
            stored = job_store.load_plan(JOB)
            if stored is not None:
                try:
                    repo.delete_backup(stored["backup_id"])
                except FireBackupError:
                    pass  # best effort: without a manifest the leftovers are an incomplete backup
            raise
    finally:
        queue.close()
        for t in totals:
            t.stop()
    if JOB in handlers.failures:
        raise handlers.failures[JOB]
    summary = job_store.summary(JOB)
    if summary is None:  # pragma: no cover - every path above either completes the job or raises
        raise FireBackupError("the backup ended without completing; see the log")
    return BackupResult(**{k: summary[k] for k in BACKUP_RESULT_KEYS})
