"""Restore: plan -> one task per chunk (+ Auth users) -> finalize, the same handlers everywhere.

    model.py     RestoreRequest, RestoreTask, RestoreResult
    chunk.py     one chunk's documents into the target with BatchWrite (exact counts)
    handlers.py  the task handlers over a JobStore and a TaskQueue (at-least-once, leases)
    run.py       run_restore: the whole flow in this process on a LocalQueue (the CLI)

A restore goes into the same or another project and database, honouring mode (overwrite |
skip existing | merge), the collection filter and dry-run; references into the source
database follow the data unless keep_references.
"""

from firebackup.engine.restore.chunk import DEFAULT_BATCH_WRITES, DEFAULT_IN_FLIGHT, restore_chunk, source_database
from firebackup.engine.restore.handlers import AuthImport, RestoreHandlers, RestoreJob
from firebackup.engine.restore.model import ERROR_LIMIT, RESULT_KEYS, RestoreRequest, RestoreResult, RestoreTask
from firebackup.engine.restore.run import DEFAULT_THREADS, run_restore
from firebackup.engine.tasks import RESTORE_AUTH as AUTH
from firebackup.engine.tasks import RESTORE_CHUNK as CHUNK
from firebackup.engine.tasks import RESTORE_FINALIZE as FINALIZE
from firebackup.engine.tasks import RESTORE_PLAN as PLAN

__all__ = [
    "AUTH", "CHUNK", "DEFAULT_BATCH_WRITES", "DEFAULT_IN_FLIGHT", "DEFAULT_THREADS", "ERROR_LIMIT", "FINALIZE",
    "PLAN", "RESULT_KEYS", "AuthImport", "RestoreHandlers", "RestoreJob", "RestoreRequest", "RestoreResult",
    "RestoreTask", "restore_chunk", "run_restore", "source_database",
]
