"""run_restore: one whole restore in this process (the CLI's), through the same handlers the workers run."""

from __future__ import annotations

from firebackup.crypto.keys import KeyEncryptionKey
from firebackup.engine.jobs import MemoryJobStore, OneJob
from firebackup.engine.ports import BackupRepository, DocumentTarget
from firebackup.engine.restore.chunk import DEFAULT_BATCH_WRITES, DEFAULT_IN_FLIGHT
from firebackup.engine.restore.handlers import AuthImport, RestoreHandlers, RestoreJob
from firebackup.engine.restore.model import RestoreRequest, RestoreResult
from firebackup.engine.tasks import RESTORE_PLAN
from firebackup.errors import FireBackupError
from firebackup.format.manifest import Manifest
from firebackup.progress import ProgressBar, ProgressCallback
from firebackup.runtime.queue import LocalQueue

DEFAULT_THREADS = 4
JOB = "local"


def run_restore(
    request: RestoreRequest,
    *,
    target: DocumentTarget,
    repo: BackupRepository,
    kek: KeyEncryptionKey | None = None,
    auth: AuthImport | None = None,
    threads: int = DEFAULT_THREADS,
    in_flight: int = DEFAULT_IN_FLIGHT,
    batch_writes: int = DEFAULT_BATCH_WRITES,
    progress: ProgressCallback | None = None,
    store: MemoryJobStore | None = None,
) -> RestoreResult:
    """Restore a backup on a LocalQueue; returns the CLI's result (documents_failed > 0 means exit 1).

    The caller owns target and repo. Accounting is exact: every document of the selected
    collections is counted once as written, skipped or failed; a chunk that cannot be read
    counts its unread documents as failed and the restore goes on with the others; an
    unreachable or refusing target ends the restore with that error.
    """
    job_store = store if store is not None else MemoryJobStore()
    job = RestoreJob(request, target, repo, kek, auth, in_flight, batch_writes)

    def planned(job_id: str, manifest: Manifest, opened: RestoreJob) -> None:
        chunks = sum(1 for e in manifest.chunks if e.kind == "docs")
        # Keep threads * in_flight requests at the server however many chunks there are: a
        # backup of one big chunk gets all of them in its one task.
        running = max(1, min(threads, chunks))
        opened.in_flight = max(in_flight, -(-threads * in_flight // running))
        if isinstance(progress, ProgressBar) and request.collections is None:
            progress.set_total(documents=sum(e.records for e in manifest.chunks if e.kind == "docs"))

    # One delivery per task: inside it every call already retries transient errors (retry.RetryPolicy);
    # a second delivery would only repeat that wait before the same one-line error.
    queue = LocalQueue(threads=max(1, threads), max_attempts=1)
    handlers = RestoreHandlers(store=job_store, queue=queue, jobs=OneJob(job), progress=progress, on_plan=planned)
    for name, handler in handlers.handlers().items():
        queue.register(name, handler)
    try:
        queue.enqueue(RESTORE_PLAN, {"job": JOB})
        queue.join()
    finally:
        queue.close()
    if JOB in handlers.failures:
        raise handlers.failures[JOB]
    summary = job_store.summary(JOB)
    if summary is None:  # pragma: no cover - every path above either completes the job or raises
        raise FireBackupError("the restore ended without completing; see the log")
    return RestoreResult(
        backup_id=summary["backup_id"], documents_written=summary["documents_written"],
        documents_skipped=summary["documents_skipped"], documents_failed=summary["documents_failed"],
        auth_users=summary["auth_users"], dry_run=summary["dry_run"], duration_s=summary["duration_s"],
        auth_users_failed=summary["auth_users_failed"], auth_users_skipped=summary["auth_users_skipped"],
        errors=list(summary["errors"]),
    )
