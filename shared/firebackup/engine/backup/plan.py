"""plan: fix read_time (the server's clock), split what to read into ranges, one first task per range."""

from __future__ import annotations

import datetime as dt

from firebackup.compression import DEFAULT_CODEC, get_codec
from firebackup.crypto.keys import DataKey, KeyEncryptionKey
from firebackup.engine.backup.model import BackupPlan, BackupRequest, ChunkTask
from firebackup.engine.ports import BackupRepository, DocumentSource


def plan(
    request: BackupRequest,
    *,
    source: DocumentSource,
    repo: BackupRepository,
    kek: KeyEncryptionKey | None = None,
    read_time: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> BackupPlan:
    """Fix read_time (default: the server's current time), list and split what to read; return the plan.

    Ranges are PartitionQuery cut points where the server has them; else one range for the
    whole database, or one per --collections root.
    """
    codec = request.compression or DEFAULT_CODEC
    get_codec(codec)  # UsageError before anything is read or written
    data_key = DataKey.generate() if kek is not None else None
    if read_time is None:
        read_time = source.server_time()
    created_at = now or dt.datetime.now(dt.timezone.utc)
    backup_id = repo.new_backup_id(created_at)
    ranges = source.snapshot(read_time).plan_ranges(request.collections, partitions=request.partitions)
    return BackupPlan(
        backup_id=backup_id,
        project=source.project,
        database=source.database,
        read_time=read_time,
        created_at=created_at,
        codec=codec,
        level=request.level,
        data_key=data_key,
        requested_collections=request.collections,
        include_auth=request.include_auth,
        chunk_docs=request.chunk_docs,
        chunk_bytes=request.chunk_bytes,
        chunks_per_task=request.chunks_per_task,
        task_seconds=request.task_seconds,
        tasks=[ChunkTask(backup_id, i, 0, rng) for i, rng in enumerate(ranges)],
    )
