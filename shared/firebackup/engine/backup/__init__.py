"""Backup: plan -> chunk tasks (+ auth) -> finalize, the same handlers for the CLI, the API and the workers.

    model.py     BackupRequest, BackupPlan, ChunkTask, results; chunk ids are formed here only
    plan.py      fix read_time, split what to read into ranges
    chunk.py     stream a range at read_time into chunks; Auth users into auth chunks
    finalize.py  the manifest, written last: its presence makes the backup complete
    handlers.py  the task handlers over a JobStore and a TaskQueue (at-least-once, leases)
    run.py       run_backup: the whole flow in this process on a LocalQueue (the CLI)
"""

from firebackup.engine.backup.chunk import backup_auth_users, run_chunk
from firebackup.engine.backup.finalize import backup_result, finalize
from firebackup.engine.backup.handlers import AuthUsers, BackupHandlers, BackupJob
from firebackup.engine.jobs import OneJob
from firebackup.engine.backup.model import (
    AUTH_CHUNK_USERS,
    BACKUP_RESULT_KEYS,
    DEFAULT_CHUNK_BYTES,
    DEFAULT_CHUNK_DOCS,
    DEFAULT_PARTITIONS,
    DEFAULT_THREADS,
    BackupPlan,
    BackupRequest,
    BackupResult,
    ChunkResult,
    ChunkTask,
    auth_chunk_id,
    docs_chunk_id,
)
from firebackup.engine.backup.plan import plan
from firebackup.engine.backup.run import run_backup
from firebackup.engine.tasks import BACKUP_AUTH as AUTH
from firebackup.engine.tasks import BACKUP_CHUNK as CHUNK
from firebackup.engine.tasks import BACKUP_FINALIZE as FINALIZE
from firebackup.engine.tasks import BACKUP_PLAN as PLAN

__all__ = [
    "AUTH", "AUTH_CHUNK_USERS", "BACKUP_RESULT_KEYS", "CHUNK", "DEFAULT_CHUNK_BYTES", "DEFAULT_CHUNK_DOCS",
    "DEFAULT_PARTITIONS", "DEFAULT_THREADS", "FINALIZE", "PLAN", "AuthUsers", "BackupHandlers", "BackupJob",
    "BackupPlan", "BackupRequest", "BackupResult", "ChunkResult", "ChunkTask", "OneJob", "auth_chunk_id",
    "backup_auth_users", "backup_result", "docs_chunk_id", "finalize", "plan", "run_backup", "run_chunk",
]
