"""Backup: plan -> chunk tasks -> finalize, the unit of work the serverless fan-out runs.

    plan(request, ...)        fixes read_time (server clock), lists root collections at that
                              instant, splits them into ranges (PartitionQuery where the server
                              has it) and returns one ChunkTask per range
    run_chunk(plan, task)     streams up to chunk_docs documents of its range at read_time into
                              one chunk object; if the range goes on, it returns (and hands to
                              on_follow_up as early as possible) the next task, which resumes
                              after the last document written
    finalize(plan, entries)   writes the manifest (LAST: its presence makes the backup complete)

A task is (backup_id, partition, seq, range, start-after cursor); its chunk_id is
"d<partition:05d>-<seq:05d>". Everything it reads is fixed by read_time and the cursor, and
it cuts by document count and raw bytes only (never by time), so running it twice writes
the same key with the same records and counts, and hands on the same follow-up.

run_backup() runs the whole flow in-process on a LocalQueue; it is what the CLI calls.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import queue as queue_mod
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from firebackup.errors import FireBackupError, UsageError
from firebackup.firestore.documents import document_name, format_rfc3339, parse_rfc3339
from firebackup.firestore.reader import DocRange, SnapshotReader, check_collection_id

DEFAULT_CHUNK_DOCS = 50_000
DEFAULT_CHUNK_BYTES = 64 << 20  # raw record bytes per chunk; bounds restore-side work per task
DEFAULT_PARTITIONS = 16  # PartitionQuery splits per root collection where the server has it
DEFAULT_THREADS = 4
AUTH_CHUNK_USERS = 10_000

_BATCH_DOCS = 512  # documents handed from the reading thread to the writing thread at once
_QUEUE_BATCHES = 16  # bounded: at most this many batches wait between reader and writer


@dataclass
class BackupRequest:
    """What to back up and how; mirrors `firebackup backup` options."""

    project: str
    database: str = "(default)"
    collections: list[str] | None = None
    include_auth: bool = False
    compression: str | None = None
    level: int | None = None
    chunk_docs: int = DEFAULT_CHUNK_DOCS
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    partitions: int = DEFAULT_PARTITIONS

    def __post_init__(self) -> None:
        if isinstance(self.collections, str):
            self.collections = [c.strip() for c in self.collections.split(",") if c.strip()]
        if self.collections is not None:
            self.collections = [check_collection_id(c) for c in self.collections] or None
        self.database = self.database or "(default)"
        if self.chunk_docs < 1 or self.chunk_bytes < 1:
            raise UsageError("chunk_docs and chunk_bytes must be positive")


@dataclass(frozen=True)
class ChunkTask:
    """One unit of work: documents of `range`, after cursor `after`, into chunk d<partition>-<seq>."""

    backup_id: str
    partition: int
    seq: int
    range: DocRange
    after: str | None = None

    @property
    def chunk_id(self) -> str:
        return f"d{self.partition:05d}-{self.seq:05d}"

    def follow_up(self, after: str) -> "ChunkTask":
        return ChunkTask(self.backup_id, self.partition, self.seq + 1, self.range, after)

    def to_dict(self) -> dict:
        return {
            "backup_id": self.backup_id,
            "partition": self.partition,
            "seq": self.seq,
            "range": self.range.to_dict(),
            "after": self.after,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ChunkTask":
        return cls(d["backup_id"], int(d["partition"]), int(d["seq"]), DocRange.from_dict(d["range"]), d.get("after"))


@dataclass
class BackupPlan:
    """Everything a chunk task needs besides its own coordinates (the data key stays in memory)."""

    backup_id: str
    project: str
    database: str
    read_time: dt.datetime
    created_at: dt.datetime
    codec: str
    level: int | None
    data_key: Any  # DataKey | None
    requested_collections: list[str] | None
    root_collections: list[str]
    include_auth: bool
    chunk_docs: int
    chunk_bytes: int
    tasks: list[ChunkTask] = field(default_factory=list)

    @property
    def read_time_text(self) -> str:
        return format_rfc3339(self.read_time)


@dataclass
class ChunkResult:
    task: ChunkTask
    entry: Any  # ChunkEntry | None (None: the range had no documents from the cursor on)
    follow_up: ChunkTask | None
    documents: int
    bytes_raw: int


@dataclass
class BackupResult:
    """The CLI's `backup --json` object, key for key."""

    backup_id: str
    read_time: str
    documents: int
    collections: list[str]
    auth_users: int
    chunks: int
    bytes_raw: int
    bytes_stored: int
    compression: str
    encrypted: bool
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- plan ----------------------------------------------------------------------------------


def plan(
    request: BackupRequest,
    *,
    source,
    repo,
    kek=None,
    read_time: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> BackupPlan:
    """Fix read_time, list and split what to read; return the plan with its first tasks.

    read_time defaults to the server's current time (see SnapshotReader.server_time).
    """
    from firebackup.compression import DEFAULT_CODEC, get_codec

    codec = request.compression or DEFAULT_CODEC
    get_codec(codec)  # UsageError before anything is read or written
    data_key = None
    if kek is not None:
        from firebackup.crypto.keys import DataKey

        data_key = DataKey.generate()
    if read_time is None:
        read_time = SnapshotReader.server_time(source)
    reader = SnapshotReader(source, read_time)
    created_at = now or dt.datetime.now(dt.timezone.utc)
    backup_id = repo.new_backup_id(created_at)
    roots = reader.root_collections()
    ranges = reader.plan_ranges(request.collections, partitions=request.partitions)
    p = BackupPlan(
        backup_id=backup_id,
        project=source.project,
        database=source.database,
        read_time=read_time,
        created_at=created_at,
        codec=codec,
        level=request.level,
        data_key=data_key,
        requested_collections=request.collections,
        root_collections=roots,
        include_auth=request.include_auth,
        chunk_docs=request.chunk_docs,
        chunk_bytes=request.chunk_bytes,
    )
    p.tasks = [ChunkTask(backup_id, i, 0, rng) for i, rng in enumerate(ranges)]
    return p


# -- chunk ---------------------------------------------------------------------------------


def _batches(docs: Iterator[bytes]) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) >= _BATCH_DOCS:
            yield batch
            batch = []
    if batch:
        yield batch


class _Prefetch:
    """Runs a document stream on its own thread, handing batches through a bounded queue.

    Receiving from gRPC and compressing/encrypting/uploading then overlap; the bound keeps
    memory flat. close() stops the reader (and so cancels the server stream) early.
    """

    _END = object()

    def __init__(self, docs: Iterator[bytes]):
        self._docs = docs
        self._q: queue_mod.Queue = queue_mod.Queue(maxsize=_QUEUE_BATCHES)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="firebackup-read", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue_mod.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for batch in _batches(self._docs):
                if not self._put(batch):
                    break
            self._put(self._END)
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            self._put(e)
        finally:
            close = getattr(self._docs, "close", None)
            if close is not None:
                close()  # cancels the RunQuery stream if we stopped early

    def __iter__(self) -> Iterator[list[bytes]]:
        while True:
            item = self._q.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        try:
            while True:
                self._q.get_nowait()
        except queue_mod.Empty:
            pass
        self._thread.join()


def run_chunk(
    p: BackupPlan,
    task: ChunkTask,
    *,
    source,
    repo,
    on_follow_up: Callable[[ChunkTask], None] | None = None,
    progress: Callable[..., None] | None = None,
) -> ChunkResult:
    """Write the task's chunk; return its entry and the follow-up task, if the range goes on.

    on_follow_up receives the follow-up as soon as it is known (before this chunk's upload
    is committed), so the next read overlaps this chunk's flush and upload.
    """
    reader = SnapshotReader(source, p.read_time)
    # One document past the cut tells us whether the range goes on, without a second query.
    docs = reader.documents(task.range, after=task.after, limit=p.chunk_docs + 1)
    prefetch = _Prefetch(docs)
    stream = iter(prefetch)
    try:
        first = next(stream, None)
        if not first:
            return ChunkResult(task, None, None, 0, 0)
        upload = repo.open_chunk_writer(
            p.backup_id, task.chunk_id, kind="docs", codec=p.codec, level=p.level, data_key=p.data_key
        )
        count = 0
        raw = 0
        last: bytes | None = None
        follow: ChunkTask | None = None
        limit_docs, limit_bytes = p.chunk_docs, p.chunk_bytes
        with upload as writer:
            add, add_many = writer.add, writer.add_many
            batch: list[bytes] | None = first
            while batch is not None:
                lens = list(map(len, batch))
                total = sum(lens)
                if count + len(batch) <= limit_docs and raw + total - lens[-1] < limit_bytes:
                    # the whole batch fits before any cut: one call, no per-document Python
                    add_many(batch)
                    count += len(batch)
                    raw += total
                    last = batch[-1]
                    taken, taken_bytes = len(batch), total
                else:
                    taken = taken_bytes = 0
                    for doc, n in zip(batch, lens):
                        if count >= limit_docs or raw >= limit_bytes:
                            follow = task.follow_up(document_name(last))  # type: ignore[arg-type]
                            break
                        add(doc)
                        count += 1
                        raw += n
                        taken += 1
                        taken_bytes += n
                        last = doc
                if progress is not None and taken:
                    progress(documents=taken, bytes=taken_bytes)
                if follow is not None:
                    break
                batch = next(stream, None)
            if follow is not None:
                prefetch.close()
                if on_follow_up is not None:
                    on_follow_up(follow)
        entry = upload.entry
        if entry is not None and hasattr(entry, "extra"):
            extra = dict(getattr(entry, "extra", None) or {})
            extra.update({"collection": task.range.collection, "partition": task.partition, "seq": task.seq})
            try:
                entry.extra = extra
            except (AttributeError, dataclasses.FrozenInstanceError):
                entry = dataclasses.replace(entry, extra=extra)
        return ChunkResult(task, entry, follow, count, raw)
    finally:
        prefetch.close()


# -- auth users ----------------------------------------------------------------------------


def backup_auth_users(p: BackupPlan, users: Iterable[bytes], *, repo, progress=None) -> tuple[list, int]:
    """Write auth-user records (one JSON object each) as kind="auth" chunks a<seq:05d>."""
    entries = []
    total = 0
    seq = 0
    pending: list[bytes] = []

    def flush() -> None:
        nonlocal seq
        upload = repo.open_chunk_writer(
            p.backup_id, f"a{seq:05d}", kind="auth", codec=p.codec, level=p.level, data_key=p.data_key
        )
        with upload as writer:
            writer.add_many(pending)
        entries.append(upload.entry)
        seq += 1
        pending.clear()

    for record in users:
        pending.append(record)
        total += 1
        if len(pending) >= AUTH_CHUNK_USERS:
            flush()
    if pending:
        flush()
    return entries, total


# -- finalize ------------------------------------------------------------------------------


def _chunk_sort_key(entry) -> tuple:
    cid = entry.chunk_id
    return (0 if cid.startswith("d") else 1, cid)


def finalize(
    p: BackupPlan,
    entries: list,
    *,
    repo,
    kek=None,
    auth_users: int = 0,
    auth_hash_config: dict | None = None,
) -> Any:
    """Write the manifest (the backup becomes complete) and return it."""
    from firebackup.format.manifest import Manifest

    entries = sorted((e for e in entries if e is not None), key=_chunk_sort_key)
    counts: dict[str, int] = {}
    for e in entries:
        if getattr(e, "kind", "docs") != "docs":
            continue
        coll = (getattr(e, "extra", None) or {}).get("collection") or ""
        counts[coll] = counts.get(coll, 0) + e.records
    # The root collections the backup covers: those asked for, else all at read_time.
    collections = list(p.requested_collections or p.root_collections)
    values = {
        "backup_id": p.backup_id,
        "created_at": format_rfc3339(p.created_at),
        "read_time": p.read_time_text,
        "source": {"project": p.project, "database": p.database},
        "collections": collections,
        "documents": sum(counts.values()),
        "auth_users": auth_users,
        "compression": p.codec,
        "level": p.level,
        "encrypted": p.data_key is not None,
        "auth_hash_config": auth_hash_config,
        "chunks": entries,
        "extra": {
            # documents per root collection (a chunk never spans two root collections)
            "collection_documents": {c: n for c, n in counts.items() if c},
            "requested_collections": p.requested_collections,
            "chunk_docs": p.chunk_docs,
            "chunk_bytes": p.chunk_bytes,
        },
    }
    known = {f.name for f in dataclasses.fields(Manifest)} if dataclasses.is_dataclass(Manifest) else set(values)
    manifest = Manifest(**{k: v for k, v in values.items() if k in known})
    repo.write_manifest(manifest, p.data_key, kek)
    return manifest


# -- the whole flow, in-process --------------------------------------------------------------


def _open_auth_users(project: str, auth_source):
    """(iterator of user JSON records, hash config) from H5's auth module."""
    from firebackup.firestore import auth as auth_mod

    export = getattr(auth_mod, "export_users")
    out = export(project, source=auth_source) if auth_source is not None else export(project)
    if isinstance(out, tuple):
        users, hash_config = out
    else:
        users, hash_config = out, getattr(out, "hash_config", None)
    return users, hash_config


def run_backup(
    request: BackupRequest | None = None,
    *,
    repo=None,
    storage=None,
    kek=None,
    source=None,
    auth_source=None,
    threads: int = DEFAULT_THREADS,
    progress: Callable[..., None] | None = None,
    read_time: dt.datetime | None = None,
    **options: Any,
) -> BackupResult:
    """Back up one database (and Auth users) into repo; return the CLI's result object.

    Either pass a BackupRequest or its fields as keywords (project=, database=,
    collections=, include_auth=, compression=, level=, chunk_docs=, ...). `source` is a
    FirestoreConnection; without it one is opened from the environment
    (FIRESTORE_EMULATOR_HOST, else Application Default Credentials) and closed at the end.
    """
    from firebackup.runtime.queue import LocalQueue

    started = time.monotonic()
    if request is None:
        options = {k: v for k, v in options.items() if v is not None}
        try:
            request = BackupRequest(**options)
        except TypeError as e:
            raise UsageError(f"backup: {e}") from None
    elif options:
        raise UsageError(f"backup: pass either a BackupRequest or options, not both ({sorted(options)})")
    if repo is None:
        if storage is None:
            raise UsageError("backup: no destination; pass repo= or storage=")
        from firebackup.engine.repository import Repository

        repo = Repository(storage)
    own_source = source is None
    if own_source:
        from firebackup.firestore.grpc import open_firestore

        source = open_firestore(request.project, request.database)
    try:
        p = plan(request, source=source, repo=repo, kek=kek, read_time=read_time)
        entries: list = []
        entries_lock = threading.Lock()
        q = LocalQueue(threads=max(1, threads))

        def chunk_handler(payload: dict) -> None:
            task = ChunkTask.from_dict(payload)
            result = run_chunk(
                p, task, source=source, repo=repo,
                on_follow_up=lambda t: q.enqueue("chunk", t.to_dict()), progress=progress,
            )
            if result.entry is not None:
                with entries_lock:
                    entries.append(result.entry)

        auth_users = 0
        hash_config = None

        def auth_handler(payload: dict) -> None:
            nonlocal auth_users, hash_config
            users, hash_config = _open_auth_users(p.project, auth_source)
            auth_entries, auth_users = backup_auth_users(p, users, repo=repo, progress=progress)
            with entries_lock:
                entries.extend(auth_entries)

        q.register("chunk", chunk_handler)
        q.register("auth", auth_handler)
        try:
            if p.include_auth:
                q.enqueue("auth", {"backup_id": p.backup_id})
            for task in p.tasks:
                q.enqueue("chunk", task.to_dict())
            q.join()
        finally:
            q.close()
        manifest = finalize(p, entries, repo=repo, kek=kek, auth_users=auth_users, auth_hash_config=hash_config)
    finally:
        if own_source:
            source.close()
    docs_entries = [e for e in entries if getattr(e, "kind", "docs") == "docs"]
    collections = list(getattr(manifest, "collections", None) or [])
    return BackupResult(
        backup_id=p.backup_id,
        read_time=p.read_time_text,
        documents=sum(e.records for e in docs_entries),
        collections=collections,
        auth_users=auth_users,
        chunks=len(entries),
        bytes_raw=sum(e.bytes_raw for e in entries),
        bytes_stored=sum(e.bytes_stored for e in entries),
        compression=p.codec,
        encrypted=p.data_key is not None,
        duration_s=round(time.monotonic() - started, 3),
    )


def read_time_of(text: str) -> dt.datetime:
    """Parse a manifest's read_time back into a datetime."""
    return parse_rfc3339(text)
