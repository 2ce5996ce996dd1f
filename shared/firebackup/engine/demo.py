"""Back up generated Firestore documents without Firestore (`firebackup demo-storage`).

Shows the storage layer end to end before, or without, an emulator: the records are real
google.firestore.v1.Document protobuf bytes, served by GeneratedSource (a DocumentSource) to
the same backup handlers a real backup runs, so the chunks, their ids and the manifest are
laid out exactly as for a live database, and verify, show and restore treat them alike.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any, Callable, Iterator

from firebackup.crypto.keys import KeyEncryptionKey
from firebackup.engine.backup import BackupRequest, BackupResult, run_backup
from firebackup.engine.ports import BackupRepository, ServerStream, Snapshot
from firebackup.firestore.reader import DocRange, name_sort_key
from firebackup.firestore.wire import varint
from firebackup.progress import ProgressCallback


def _document_classes() -> tuple[Any, Any]:
    # proto-plus's .pb() classes are made at run time: untyped, like firestore/protos.py's.
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


class _Responses:
    """The generated documents of one range as RunQuery responses (field 1: the Document)."""

    def __init__(self, docs: list[tuple[str, bytes]], rng: DocRange, after: str | None, limit: int | None):
        self._docs, self._rng, self._after, self._limit = docs, rng, after, limit
        self._stream = self._generate()

    def __iter__(self) -> "_Responses":
        return self

    def __next__(self) -> bytes:
        return next(self._stream)

    def _generate(self) -> Iterator[bytes]:
        lo, hi, after, n = self._rng.lo, self._rng.hi, self._after, 0
        lo_key = name_sort_key(lo) if lo else None
        hi_key = name_sort_key(hi) if hi else None
        after_key = name_sort_key(after) if after else None
        for key, (name, doc) in ((name_sort_key(name), (name, doc)) for name, doc in self._docs):
            if (lo_key and key < lo_key) or (after_key and key <= after_key):
                continue
            if hi_key and key >= hi_key:
                return
            if self._limit is not None and n >= self._limit:
                return
            n += 1
            yield b"\x0a" + varint(len(doc)) + doc

    def cancel(self) -> None:
        pass  # nothing runs in the background


class _GeneratedSnapshot:
    def __init__(self, docs: list[tuple[str, bytes]]):
        self._docs = docs

    def plan_ranges(self, collections: list[str] | None = None, *, partitions: int = 1) -> list[DocRange]:
        return [DocRange()]

    def responses(self, rng: DocRange, *, after: str | None = None, limit: int | None = None) -> _Responses:
        return _Responses(self._docs, rng, after, limit)

    def count_documents(self, collections: list[str] | None = None, *,
                        on_stream: Callable[[ServerStream], None] | None = None) -> int:
        return len(self._docs)


class GeneratedSource:
    """A DocumentSource of `count` generated documents (generate_documents), in name order."""

    def __init__(self, count: int, *, collections: list[str], project: str = "demo-firebackup",
                 database: str = "(default)", seed: int = 0):
        self.project, self.database = project, database
        self.documents_path = f"projects/{project}/databases/{database}/documents"
        Document, _ = _document_classes()
        docs = [(Document.FromString(d).name, d) for _, d in generate_documents(
            count, collections=collections, project=project, database=database, seed=seed)]
        docs.sort(key=lambda item: name_sort_key(item[0]))
        self._docs = docs

    def server_time(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)

    def snapshot(self, read_time: dt.datetime) -> Snapshot:
        return _GeneratedSnapshot(self._docs)

    def close(self) -> None:
        pass


def backup_generated(repo: BackupRepository, *, documents: int, chunk_docs: int = 5_000, collections: list[str],
                     project: str = "demo-firebackup", database: str = "(default)",
                     compression: str | None = None, level: int | None = None,
                     kek: KeyEncryptionKey | None = None, seed: int = 0,
                     progress: ProgressCallback | None = None) -> BackupResult:
    """Write a complete backup of generated documents into repo, through the backup handlers."""
    source = GeneratedSource(documents, collections=collections, project=project, database=database, seed=seed)
    request = BackupRequest(project=project, database=database, compression=compression, level=level,
                            chunk_docs=chunk_docs, partitions=1)
    return run_backup(request, source=source, repo=repo, kek=kek, progress=progress)
