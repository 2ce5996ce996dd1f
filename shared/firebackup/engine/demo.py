"""Back up generated Firestore documents without Firestore (`firebackup demo-storage`).

Shows the storage layer end to end before, or without, an emulator: the records are real
google.firestore.v1.Document protobuf bytes, so verify, show and restore treat them exactly
like a backup of a live database.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any, Iterator

from firebackup.progress import NoProgress


def _document_classes():
    from google.cloud.firestore_v1.types import document

    return document.Document.pb(), document.Value.pb()


def generate_documents(count: int, *, collections: list[str], project: str = "demo-firebackup",
                       database: str = "(default)", seed: int = 0) -> Iterator[tuple[str, bytes]]:
    """Yield (root collection, Document bytes) for `count` varied documents, deterministic per seed.

    Every value type appears (null, bool, int64 extremes, doubles incl. NaN and -0.0,
    timestamps, strings, bytes, references, geo points, arrays, nested maps) and one in
    ten documents has a subcollection document.
    """
    Document, _ = _document_classes()
    rng = random.Random(seed)
    root = f"projects/{project}/databases/{database}/documents"
    base_seconds = 1_700_000_000
    for i in range(count):
        collection = collections[i % len(collections)]
        doc = Document()
        parent = f"{root}/{collection}/doc{i // 10 * 10:07d}"
        doc.name = f"{parent}/items/sub{i:07d}" if i % 10 == 9 else f"{root}/{collection}/doc{i:07d}"
        f = doc.fields
        f["n"].integer_value = i
        f["name"].string_value = f"user {i} \u00e9\u6f22 {rng.random():.6f}"
        f["active"].boolean_value = bool(i & 1)
        f["score"].double_value = rng.random() * 1000
        f["nothing"].null_value = 0
        f["created"].timestamp_value.seconds = base_seconds + i
        f["created"].timestamp_value.nanos = (i * 1000) % 1_000_000_000
        f["blob"].bytes_value = rng.randbytes(16)
        f["ref"].reference_value = f"{root}/{collections[0]}/doc{(i * 7) % max(count, 1):07d}"
        f["where"].geo_point_value.latitude = rng.uniform(-90, 90)
        f["where"].geo_point_value.longitude = rng.uniform(-180, 180)
        tags = f["tags"].array_value.values
        for t in range(i % 4):
            tags.add().string_value = f"tag{t}"
        nested = f["profile"].map_value.fields
        nested["age"].integer_value = 18 + i % 60
        nested["address"].map_value.fields["city"].string_value = rng.choice(["Lyon", "Oslo", "Pune", "Lima"])
        if i % 97 == 0:
            f["edge"].map_value.fields["int_min"].integer_value = -(2**63)
            f["edge"].map_value.fields["int_max"].integer_value = 2**63 - 1
            f["edge"].map_value.fields["nan"].double_value = float("nan")
            f["edge"].map_value.fields["neg_zero"].double_value = -0.0
            f["edge"].map_value.fields["field.with dots`"].string_value = "ok"
        doc.create_time.seconds = base_seconds + i
        doc.update_time.seconds = base_seconds + i + 1
        yield collection, doc.SerializeToString()


def backup_generated(repo, *, documents: int, chunk_docs: int = 5_000, collections: list[str],
                     project: str = "demo-firebackup", database: str = "(default)",
                     compression: str | None = None, level: int | None = None, kek=None,
                     seed: int = 0, progress=None) -> dict[str, Any]:
    """Write a complete backup of generated documents into repo; return the CLI's backup keys."""
    from firebackup.compression import DEFAULT_CODEC, get_codec
    from firebackup.crypto.keys import DataKey
    from firebackup.format.manifest import Manifest

    progress = progress or NoProgress()
    codec = compression or DEFAULT_CODEC
    if level is None:
        level = get_codec(codec).default_level  # UsageError for an unknown codec, before any write
    backup_id = repo.new_backup_id()
    created_at = dt.datetime.now(dt.timezone.utc)
    data_key = DataKey.generate() if kek is not None else None
    entries = []
    counts: dict[str, int] = {}
    batch: list[bytes] = []
    seq = 0

    def flush() -> None:
        nonlocal seq
        upload = repo.open_chunk_writer(backup_id, f"d{0:05d}-{seq:05d}", kind="docs",
                                        codec=codec, level=level, data_key=data_key)
        with upload as writer:
            writer.add_many(batch)
        entries.append(upload.entry)
        progress(documents=len(batch), bytes=upload.entry.bytes_stored)
        seq += 1
        batch.clear()

    for collection, record in generate_documents(documents, collections=collections, project=project,
                                                 database=database, seed=seed):
        counts[collection] = counts.get(collection, 0) + 1
        batch.append(record)
        if len(batch) >= chunk_docs:
            flush()
    if batch:
        flush()

    read_time = created_at.isoformat().replace("+00:00", "Z")
    manifest = Manifest(
        backup_id=backup_id,
        created_at=read_time,
        read_time=read_time,
        source={"project": project, "database": database},
        collections=sorted(counts),
        documents=sum(counts.values()),
        auth_users=0,
        compression=codec,
        level=level,
        encrypted=data_key is not None,
        chunks=entries,
        extra={"generated": True, "collection_documents": counts},
    )
    repo.write_manifest(manifest, data_key, kek)
    return {
        "backup_id": backup_id,
        "read_time": read_time,
        "documents": manifest.documents,
        "collections": sorted(counts),
        "auth_users": 0,
        "chunks": len(entries),
        "bytes_raw": sum(e.bytes_raw for e in entries),
        "bytes_stored": sum(e.bytes_stored for e in entries),
        "compression": codec,
        "encrypted": data_key is not None,
    }
