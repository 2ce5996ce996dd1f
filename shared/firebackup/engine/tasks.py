"""The names of the engine's tasks on a TaskQueue: spelt here once, for the handlers and whoever enqueues.

Every backup or restore task's payload is {"job": <job id>} (a chunk task adds its "task" or "chunk").
"""

BACKUP_PLAN, BACKUP_CHUNK, BACKUP_AUTH, BACKUP_FINALIZE = "backup.plan", "backup.chunk", "backup.auth", "backup.finalize"
RESTORE_PLAN, RESTORE_CHUNK, RESTORE_AUTH, RESTORE_FINALIZE = (
    "restore.plan", "restore.chunk", "restore.auth", "restore.finalize")
# A point-in-time restore's captured changes on top of its base backup's chunks (pitr/restore.py).
RESTORE_CHANGES = "restore.changes"
# An organization's key rotation (services/keys.py): one task per rotation, on the backup queue.
KEYS_ROTATE = "keys.rotate"
