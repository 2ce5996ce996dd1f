"""finalize: write the manifest, LAST, from the chunks the tasks recorded; the backup is then complete."""

from __future__ import annotations

from typing import Any, Iterable

from firebackup.crypto.keys import KeyEncryptionKey
from firebackup.engine.backup.model import BackupPlan, BackupResult
from firebackup.engine.ports import BackupRepository
from firebackup.firestore.documents import format_rfc3339
from firebackup.firestore.reader import name_sort_key
from firebackup.format.manifest import ChunkEntry, Manifest


def _chunk_sort_key(entry: ChunkEntry) -> tuple[int, str]:
    return (0 if entry.kind == "docs" else 1, entry.chunk_id)


def finalize(
    p: BackupPlan,
    entries: Iterable[ChunkEntry],
    *,
    repo: BackupRepository,
    kek: KeyEncryptionKey | None = None,
    auth_users: int = 0,
    auth_hash_config: dict[str, Any] | None = None,
) -> Manifest:
    """Write the manifest (the backup becomes complete) and return it."""
    # A redelivered task rewrites the same chunk ids with the same documents: keep one each.
    chunks = sorted({e.chunk_id: e for e in entries}.values(), key=_chunk_sort_key)
    counts: dict[str, int] = {}
    for e in chunks:
        if e.kind != "docs":
            continue
        for coll, n in (e.extra.get("collections") or {}).items():
            counts[coll] = counts.get(coll, 0) + n
    # The root collections the backup covers: those asked for, else every one that had a
    # document at read_time (at any depth: a collection with only deep documents counts).
    collections = list(p.requested_collections) if p.requested_collections else sorted(
        (c for c in counts if c), key=name_sort_key
    )
    manifest = Manifest(
        backup_id=p.backup_id,
        created_at=format_rfc3339(p.created_at),
        read_time=p.read_time_text,
        source={"project": p.project, "database": p.database},
        collections=collections,
        documents=sum(counts.values()),
        auth_users=auth_users,
        compression=p.codec,
        level=p.level,
        encrypted=p.data_key is not None,
        auth_hash_config=auth_hash_config,
        chunks=chunks,
        extra={
            "collection_documents": counts,  # documents per root collection
            "requested_collections": p.requested_collections,
            "chunk_docs": p.chunk_docs,
            "chunk_bytes": p.chunk_bytes,
        },
    )
    repo.write_manifest(manifest, p.data_key, kek)
    return manifest


def backup_result(p: BackupPlan, manifest: Manifest, duration_s: float) -> BackupResult:
    """The CLI's result object for a finalized backup."""
    chunks = manifest.chunks
    return BackupResult(
        backup_id=p.backup_id,
        read_time=p.read_time_text,
        documents=sum(e.records for e in chunks if e.kind == "docs"),
        collections=list(manifest.collections),
        auth_users=manifest.auth_users,
        chunks=len(chunks),
        bytes_raw=sum(e.bytes_raw for e in chunks),
        bytes_stored=sum(e.bytes_stored for e in chunks),
        compression=p.codec,
        encrypted=p.data_key is not None,
        duration_s=round(duration_s, 3),
    )
