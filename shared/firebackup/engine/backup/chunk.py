"""chunk: stream one range at read_time into chunks; Auth users into auth chunks.

run_chunk streams its range from its cursor with ONE query, cutting chunk d<partition>-<seq>,
<seq+1>, ... every chunk_docs documents / chunk_bytes raw bytes; after chunks_per_task chunks
(or task_seconds, checked only at chunk boundaries) it hands the rest on as a follow-up task
resuming after its last document. Chunk boundaries are counted from the start of the range and
depend only on the data at read_time, so chunk d<p>-<s> holds the same documents whichever task
writes it, and running a task twice rewrites the same keys with the same records and counts.
(Why one long stream rather than one query per chunk: on the emulator every query costs a scan
of the whole database, so per-chunk queries would make a backup quadratic.)
"""

from __future__ import annotations

import enum
import queue as queue_mod
import threading
import time
from typing import Callable, Iterable, Iterator

from firebackup.engine.backup.model import (
    AUTH_CHUNK_USERS,
    BackupPlan,
    ChunkResult,
    ChunkTask,
    auth_chunk_id,
    docs_chunk_id,
)
from firebackup.engine.ports import BackupRepository, DocumentSource, ServerStream, Snapshot, committed_entry
from firebackup.firestore.documents import document_name, root_collection, run_query_document
from firebackup.format.manifest import ChunkEntry
from firebackup.progress import ProgressCallback

_BATCH_DOCS = 512  # documents handed from the reading thread to the writing thread at once
_BATCH_BYTES = 1 << 20  # ... or fewer, when documents are large
_QUEUE_BATCHES = 16  # bounded: at most this many batches wait between reader and writer


class _End(enum.Enum):
    """The reading thread's last item: the stream has ended (an enum member, so the queue's type can name it)."""

    END = enum.auto()


class _Prefetch:
    """Receives a RunQuery stream on its own thread, handing document batches to the writer.

    Receiving from gRPC and compressing/encrypting/uploading then overlap; the queue is
    bounded (in batches, and batches in documents and bytes) so memory stays flat.
    close() cancels the server stream and stops the thread, from any point.
    """

    def __init__(self, stream: ServerStream):
        self._stream = stream
        self._q: queue_mod.Queue[list[bytes] | BaseException | _End] = queue_mod.Queue(maxsize=_QUEUE_BATCHES)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="firebackup-read", daemon=True)
        self._thread.start()

    def _put(self, item: list[bytes] | BaseException | _End) -> bool:
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
            self._put(_End.END)
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            if not self._stop.is_set():  # after close() a cancelled stream is expected
                self._put(e)

    def __iter__(self) -> Iterator[list[bytes]]:
        while True:
            item = self._q.get()
            if item is _End.END:
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

    def __init__(self, p: BackupPlan, task: ChunkTask, seq: int, repo: BackupRepository, prefix_len: int,
                 progress: ProgressCallback | None):
        self.chunk_id = docs_chunk_id(task.partition, seq)
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

    def close(self) -> ChunkEntry:
        self._upload.__exit__(None, None, None)
        entry = committed_entry(self._upload)
        collections = {r.decode("utf-8", "replace"): n for r, n in self.roots.items()}
        entry.extra = {**entry.extra, "partition": self._task.partition, "seq": self.seq, "collections": collections}
        return entry

    def abort(self, exc: BaseException) -> None:
        self._upload.__exit__(type(exc), exc, exc.__traceback__)


def run_chunk(
    p: BackupPlan,
    task: ChunkTask,
    *,
    source: DocumentSource,
    repo: BackupRepository,
    resume: tuple[int, str | None] | None = None,
    on_chunk: Callable[[ChunkEntry, int, str | None], None] | None = None,
    on_follow_up: Callable[[ChunkTask], None] | None = None,
    progress: ProgressCallback | None = None,
) -> ChunkResult:
    """Stream the task's range from its cursor into chunks seq, seq+1, ...; hand on the rest.

    Chunk boundaries fall every chunk_docs documents (or chunk_bytes raw bytes) counted from
    the start of the range, whichever task writes them, so chunk d<p>-<s> always holds the
    same documents. The task stops after chunks_per_task chunks or, at a chunk boundary,
    after task_seconds, and returns a follow-up task resuming after its last document;
    on_follow_up receives it before the last chunk's upload is committed, so the next
    read overlaps that upload. on_chunk(entry, next_seq, last_name) follows each chunk's
    commit; `resume=(next_seq, last_name)` from it restarts a redelivered task where an
    earlier attempt stopped (the budget still counts from task.seq).
    """
    per_task = p.chunks_per_task
    seq, after = resume if resume is not None else (task.seq, task.after)
    snapshot = source.snapshot(p.read_time)
    if per_task and seq - task.seq >= per_task:
        # An earlier attempt wrote every chunk of its budget: only the hand-off is left.
        return _hand_on(snapshot, task, task.resumed(seq, after), on_follow_up)
    # One document past the cut tells us whether the range goes on, without a second query.
    limit = p.chunk_docs * (per_task - (seq - task.seq)) + 1 if per_task else None
    prefetch = _Prefetch(snapshot.responses(task.range, after=after, limit=limit))
    deadline = time.monotonic() + p.task_seconds if p.task_seconds else None
    prefix_len = len(source.documents_path) + 1
    entries: list[ChunkEntry] = []
    follow: ChunkTask | None = None
    out: _ChunkOut | None = None
    documents = raw = 0

    def commit(done: _ChunkOut) -> None:
        nonlocal documents, raw
        entry = done.close()
        entries.append(entry)
        documents += done.count
        raw += done.raw
        if on_chunk is not None:
            on_chunk(entry, done.seq + 1, document_name(done.last) if done.last is not None else None)

    try:
        for batch in prefetch:
            i, n = 0, len(batch)
            while i < n:
                if out is not None and out.full():
                    seq += 1
                    if (per_task and seq - task.seq >= per_task) or (deadline and time.monotonic() >= deadline):
                        assert out.last is not None  # a full chunk has documents
                        follow = task.resumed(seq, document_name(out.last))
                        break
                    done, out = out, None
                    commit(done)
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
            commit(done)
    except BaseException as e:
        if out is not None:
            out.abort(e)
        raise
    finally:
        prefetch.close()
    return ChunkResult(task, entries, follow, documents, raw)


def _hand_on(snapshot: Snapshot, task: ChunkTask, follow: ChunkTask,
             on_follow_up: Callable[[ChunkTask], None] | None) -> ChunkResult:
    """The follow-up of a task whose chunks are all written, if its range goes on."""
    stream = snapshot.responses(follow.range, after=follow.after, limit=1)
    try:
        more = any(run_query_document(r) is not None for r in stream)
    finally:
        stream.cancel()
    if not more:
        return ChunkResult(task, [], None, 0, 0)
    if on_follow_up is not None:
        on_follow_up(follow)
    return ChunkResult(task, [], follow, 0, 0)


# -- auth users ----------------------------------------------------------------------------


def backup_auth_users(p: BackupPlan, users: Iterable[bytes], *, repo: BackupRepository,
                      progress: ProgressCallback | None = None) -> tuple[list[ChunkEntry], int]:
    """Write auth-user records (one JSON object each) as kind="auth" chunks a<seq:05d>."""
    entries: list[ChunkEntry] = []
    total = 0
    seq = 0
    pending: list[bytes] = []

    def flush() -> None:
        nonlocal seq
        upload = repo.open_chunk_writer(
            p.backup_id, auth_chunk_id(seq), kind="auth", codec=p.codec, level=p.level, data_key=p.data_key
        )
        with upload as writer:
            writer.add_many(pending)
        entries.append(committed_entry(upload))
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


