"""Backup: plan -> chunk tasks -> finalize, the unit of work the serverless fan-out runs.

    plan(request, ...)        fixes read_time (the server's clock), splits what to read into
                              ranges of document names (PartitionQuery cut points where the
                              server has them; else one range for the whole database, or one
                              per --collections root) and returns one ChunkTask per range
    run_chunk(plan, task)     streams its range at read_time from its cursor with ONE query,
                              cutting chunk d<partition>-<seq>, <seq+1>, ... every chunk_docs
                              documents / chunk_bytes raw bytes; after chunks_per_task chunks
                              (or task_seconds, checked only at chunk boundaries) it hands the
                              rest on as a follow-up task resuming after its last document
    finalize(plan, entries)   writes the manifest (LAST: its presence makes the backup complete)

A task is (backup_id, partition, seq, range, start-after cursor). Chunk boundaries are
counted from the start of the range and depend only on the data at read_time, so chunk
d<p>-<s> holds the same documents whichever task writes it, and running a task twice
rewrites the same keys with the same records and counts and hands on the same follow-up.
(Why one long stream rather than one query per chunk: on the emulator every query costs a
scan of the whole database, so per-chunk queries would make a backup quadratic.)

run_backup() runs the whole flow in-process on a LocalQueue; it is what the CLI calls. When
its progress callback is a bar someone watches, a daemon thread also COUNTs the documents at
read_time (SnapshotReader.count_documents) and gives the bar its total, hence an ETA.
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
from firebackup.firestore.documents import (
    document_name,
    format_rfc3339,
    parse_rfc3339,
    root_collection,
    run_query_document,
)
from firebackup.firestore.reader import DocRange, SnapshotReader, check_collection_id, name_sort_key

DEFAULT_CHUNK_DOCS = 50_000
DEFAULT_CHUNK_BYTES = 64 << 20  # raw record bytes per chunk; bounds restore-side work per task
DEFAULT_PARTITIONS = 16  # PartitionQuery splits per root collection where the server has it
DEFAULT_THREADS = 4
AUTH_CHUNK_USERS = 10_000

_BATCH_DOCS = 512  # documents handed from the reading thread to the writing thread at once
_BATCH_BYTES = 1 << 20  # ... or fewer, when documents are large
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
    # A chunk task hands on the rest of its range after this many chunks / seconds (None:
    # never). Locally one stream per range is fastest; a serverless worker sets a budget.
    chunks_per_task: int | None = None
    task_seconds: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.collections, str):
            self.collections = [c.strip() for c in self.collections.split(",") if c.strip()]
        if self.collections is not None:
            self.collections = list(dict.fromkeys(check_collection_id(c) for c in self.collections)) or None
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
    include_auth: bool
    chunk_docs: int
    chunk_bytes: int
    chunks_per_task: int | None = None
    task_seconds: float | None = None
    tasks: list[ChunkTask] = field(default_factory=list)

    @property
    def read_time_text(self) -> str:
        return format_rfc3339(self.read_time)

    def to_dict(self, kek=None) -> dict[str, Any]:
        """JSON-able form for a task queue or a DB row; the data key travels wrapped by kek."""
        import base64

        if self.data_key is not None and kek is None:
            raise UsageError("an encrypted plan needs its KEK to be serialized (the data key is never stored in clear)")
        wrapped = None
        if self.data_key is not None:
            wrapped = base64.b64encode(kek.wrap(self.data_key, self.backup_id.encode("ascii"))).decode("ascii")
        return {
            "backup_id": self.backup_id, "project": self.project, "database": self.database,
            "read_time": self.read_time_text, "created_at": format_rfc3339(self.created_at),
            "codec": self.codec, "level": self.level, "wrapped_dek": wrapped,
            "kek_id": getattr(kek, "key_id", None) if wrapped else None,
            "requested_collections": self.requested_collections, "include_auth": self.include_auth,
            "chunk_docs": self.chunk_docs, "chunk_bytes": self.chunk_bytes,
            "chunks_per_task": self.chunks_per_task, "task_seconds": self.task_seconds,
            "tasks": [t.to_dict() for t in self.tasks],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], kek=None) -> "BackupPlan":
        import base64

        data_key = None
        if d.get("wrapped_dek"):
            if kek is None:
                raise UsageError(f"backup {d['backup_id']} is encrypted; its plan needs the KEK")
            data_key = kek.unwrap(base64.b64decode(d["wrapped_dek"]), d["backup_id"].encode("ascii"))
        return cls(
            backup_id=d["backup_id"], project=d["project"], database=d["database"],
            read_time=parse_rfc3339(d["read_time"]), created_at=parse_rfc3339(d["created_at"]),
            codec=d["codec"], level=d.get("level"), data_key=data_key,
            requested_collections=d.get("requested_collections"), include_auth=bool(d.get("include_auth")),
            chunk_docs=int(d["chunk_docs"]), chunk_bytes=int(d["chunk_bytes"]),
            chunks_per_task=d.get("chunks_per_task"), task_seconds=d.get("task_seconds"),
            tasks=[ChunkTask.from_dict(t) for t in d.get("tasks", [])],
        )


@dataclass
class ChunkResult:
    task: ChunkTask
    entries: list  # ChunkEntry per chunk written, in order (empty: nothing left in the range)
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
        include_auth=request.include_auth,
        chunk_docs=request.chunk_docs,
        chunk_bytes=request.chunk_bytes,
        chunks_per_task=request.chunks_per_task,
        task_seconds=request.task_seconds,
    )
    p.tasks = [ChunkTask(backup_id, i, 0, rng) for i, rng in enumerate(ranges)]
    return p


# -- chunk ---------------------------------------------------------------------------------


class _Prefetch:
    """Receives a RunQuery stream on its own thread, handing document batches to the writer.

    Receiving from gRPC and compressing/encrypting/uploading then overlap; the queue is
    bounded (in batches, and batches in documents and bytes) so memory stays flat.
    close() cancels the server stream and stops the thread, from any point.
    """

    _END = object()

    def __init__(self, stream):
        self._stream = stream
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
        extract = run_query_document
        batch: list[bytes] = []
        size = 0
        try:
            for resp in self._stream:
                doc = extract(resp)
                if doc is None:
                    continue
                batch.append(doc)
                size += len(doc)
                if len(batch) >= _BATCH_DOCS or size >= _BATCH_BYTES:
                    if not self._put(batch):
                        return
                    batch, size = [], 0
            if batch and not self._put(batch):
                return
            self._put(self._END)
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            if not self._stop.is_set():  # after close() a cancelled stream is expected
                self._put(e)

    def __iter__(self) -> Iterator[list[bytes]]:
        while True:
            item = self._q.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._stream.cancel()
        try:
            while True:
                self._q.get_nowait()
        except queue_mod.Empty:
            pass
        self._thread.join()


class _ChunkOut:
    """One chunk being written: counts records, raw bytes and documents per root collection."""

    def __init__(self, p: BackupPlan, task: ChunkTask, seq: int, repo, prefix_len: int, progress):
        self.chunk_id = f"d{task.partition:05d}-{seq:05d}"
        self.seq = seq
        self._task = task
        self._upload = repo.open_chunk_writer(
            p.backup_id, self.chunk_id, kind="docs", codec=p.codec, level=p.level, data_key=p.data_key
        )
        writer = self._upload.__enter__()
        self._add, self._add_many = writer.add, writer.add_many
        self._limit_docs, self._limit_bytes = p.chunk_docs, p.chunk_bytes
        self._prefix_len = prefix_len
        self._progress = progress
        self.count = 0
        self.raw = 0
        self.last: bytes | None = None
        self.roots: dict[bytes, int] = {}

    def full(self) -> bool:
        return self.count >= self._limit_docs or self.raw >= self._limit_bytes

    def take(self, batch: list[bytes], i: int) -> int:
        """Add documents from batch[i:] until the chunk is full; return how many were added."""
        rest = batch[i:] if i else batch
        lens = list(map(len, rest))
        total = sum(lens)
        if self.count + len(rest) <= self._limit_docs and self.raw + total - lens[-1] < self._limit_bytes:
            taken = rest  # all of it fits before any cut: one call, no per-document Python
            self._add_many(taken)
            self.count += len(taken)
            self.raw += total
        else:
            k = 0
            for doc, n in zip(rest, lens):
                if self.count >= self._limit_docs or self.raw >= self._limit_bytes:
                    break
                self._add(doc)
                self.count += 1
                self.raw += n
                k += 1
            taken = rest[:k]
            total = sum(lens[:k])
        if taken:
            self.last = taken[-1]
            self._count_roots(taken)
            if self._progress is not None:
                self._progress(documents=len(taken), bytes=total)
        return len(taken)

    def _count_roots(self, docs: list[bytes]) -> None:
        # Documents arrive in name order, so a root collection is one contiguous run: when
        # the first and last of a batch agree, so does everything between.
        pl = self._prefix_len
        first, last = root_collection(docs[0], pl), root_collection(docs[-1], pl)
        roots = self.roots
        if first == last:
            roots[first] = roots.get(first, 0) + len(docs)
            return
        for doc in docs:
            r = root_collection(doc, pl)
            roots[r] = roots.get(r, 0) + 1

    def close(self) -> Any:
        self._upload.__exit__(None, None, None)
        entry = self._upload.entry
        extra = dict(getattr(entry, "extra", None) or {})
        collections = {r.decode("utf-8", "replace"): n for r, n in self.roots.items()}
        extra.update({"partition": self._task.partition, "seq": self.seq, "collections": collections})
        entry.extra = extra
        return entry

    def abort(self, exc: BaseException) -> None:
        self._upload.__exit__(type(exc), exc, exc.__traceback__)


def run_chunk(
    p: BackupPlan,
    task: ChunkTask,
    *,
    source,
    repo,
    on_follow_up: Callable[[ChunkTask], None] | None = None,
    progress: Callable[..., None] | None = None,
) -> ChunkResult:
    """Stream the task's range from its cursor into chunks seq, seq+1, ...; hand on the rest.

    Chunk boundaries fall every chunk_docs documents (or chunk_bytes raw bytes) counted from
    the start of the range, whichever task writes them, so chunk d<p>-<s> always holds the
    same documents. The task stops after chunks_per_task chunks or, at a chunk boundary,
    after task_seconds, and returns a follow-up task resuming after its last document;
    on_follow_up receives it before the last chunk's upload is committed, so the next
    read overlaps that upload.
    """
    reader = SnapshotReader(source, p.read_time)
    per_task = p.chunks_per_task
    # One document past the cut tells us whether the range goes on, without a second query.
    limit = p.chunk_docs * per_task + 1 if per_task else None
    prefetch = _Prefetch(reader.responses(task.range, after=task.after, limit=limit))
    deadline = time.monotonic() + p.task_seconds if p.task_seconds else None
    prefix_len = len(source.documents_path) + 1
    entries: list = []
    follow: ChunkTask | None = None
    out: _ChunkOut | None = None
    seq = task.seq
    documents = raw = 0
    try:
        for batch in prefetch:
            i, n = 0, len(batch)
            while i < n:
                if out is not None and out.full():
                    seq += 1
                    if (per_task and seq - task.seq >= per_task) or (deadline and time.monotonic() >= deadline):
                        follow = ChunkTask(task.backup_id, task.partition, seq, task.range, document_name(out.last))
                        break
                    done, out = out, None
                    entries.append(done.close())
                    documents += done.count
                    raw += done.raw
                if out is None:
                    out = _ChunkOut(p, task, seq, repo, prefix_len, progress)
                i += out.take(batch, i)
            if follow is not None:
                break
        prefetch.close()
        if follow is not None and on_follow_up is not None:
            on_follow_up(follow)
        if out is not None:
            done, out = out, None
            entries.append(done.close())
            documents += done.count
            raw += done.raw
    except BaseException as e:
        if out is not None:
            out.abort(e)
        raise
    finally:
        prefetch.close()
    return ChunkResult(task, entries, follow, documents, raw)


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

    # A redelivered task rewrites the same chunk ids with the same documents: keep one each.
    entries = sorted({e.chunk_id: e for e in entries if e is not None}.values(), key=_chunk_sort_key)
    counts: dict[str, int] = {}
    for e in entries:
        if getattr(e, "kind", "docs") != "docs":
            continue
        for coll, n in ((getattr(e, "extra", None) or {}).get("collections") or {}).items():
            counts[coll] = counts.get(coll, 0) + n
    # The root collections the backup covers: those asked for, else every one that had a
    # document at read_time (at any depth: a collection with only deep documents counts).
    collections = list(p.requested_collections) if p.requested_collections else sorted(
        (c for c in counts if c), key=name_sort_key
    )
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
            "collection_documents": counts,  # documents per root collection
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

    import os

    export = getattr(auth_mod, "export_users")
    # TODO(lead): from Settings
    out = export(project, source=auth_source, emulator_host=os.environ.get("FIREBASE_AUTH_EMULATOR_HOST"))
    if isinstance(out, tuple):
        users, hash_config = out
    else:
        users, hash_config = out, getattr(out, "hash_config", None)
    return users, hash_config


def _discard_partial(repo, backup_id: str) -> None:
    """Best effort: remove the chunks of a backup that failed (it has no manifest, so it
    was never complete); leftovers are harmless and show as incomplete in `list`."""
    try:
        for info in list(repo.storage.list(repo.chunks_prefix(backup_id))):
            repo.storage.delete(info.key)
    except FireBackupError:
        pass


class _DocumentTotal:
    """Counts, on a daemon thread, the documents a backup reads and hands the total to the
    progress bar (which then shows a percentage and an ETA).

    Best effort: the count is only for the eye, so any error in it is swallowed and the bar
    simply keeps no total; the backup's own reads report real problems. stop() cancels a
    count still running (it is an index scan on the server) without waiting for it.
    """

    def __init__(self, reader: SnapshotReader, collections: list[str] | None, progress) -> None:
        self._progress = progress
        self._lock = threading.Lock()
        self._stream = None
        self._stopped = False
        # Daemon: a count still running never keeps the process alive after the backup.
        self.thread = threading.Thread(
            target=self._run, args=(reader, collections), name="firebackup-count", daemon=True
        )
        self.thread.start()

    def _track(self, stream) -> None:
        with self._lock:
            self._stream = stream
            stopped = self._stopped
        if stopped:
            stream.cancel()

    def _run(self, reader: SnapshotReader, collections: list[str] | None) -> None:
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


def _someone_watches(progress) -> bool:
    """True for a progress bar that can show a total (not None, not the silent NoProgress)."""
    from firebackup.progress import NoProgress

    return progress is not None and not isinstance(progress, NoProgress) and callable(
        getattr(progress, "set_total", None)
    )


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
        import os

        from firebackup.firestore.grpc import open_firestore

        # TODO(lead): from Settings
        source = open_firestore(request.project, request.database, emulator_host=os.environ.get("FIRESTORE_EMULATOR_HOST"))
    total: _DocumentTotal | None = None
    try:
        p = plan(request, source=source, repo=repo, kek=kek, read_time=read_time)
        if _someone_watches(progress):
            # Only for a human at a terminal: the count costs the server an index scan
            # (on the emulator, which shares the machine, ~0.5 s per 40k documents), which
            # benchmarks and --json runs (NoProgress) must not pay for.
            total = _DocumentTotal(SnapshotReader(source, p.read_time), p.requested_collections, progress)
        entries: list = []
        entries_lock = threading.Lock()
        q = LocalQueue(threads=max(1, threads))

        def chunk_handler(payload: dict) -> None:
            task = ChunkTask.from_dict(payload)
            result = run_chunk(
                p, task, source=source, repo=repo,
                on_follow_up=lambda t: q.enqueue("chunk", t.to_dict()), progress=progress,
            )
            with entries_lock:
                entries.extend(result.entries)

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
        except BaseException:
            _discard_partial(repo, p.backup_id)
            raise
        finally:
            q.close()
        manifest = finalize(p, entries, repo=repo, kek=kek, auth_users=auth_users, auth_hash_config=hash_config)
    finally:
        if total is not None:
            total.stop()
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
