"""BatchWriter: streams stored documents into a database with BatchWrite, with exact counts.

BatchWrite applies each write independently and answers one google.rpc.Status per write;
the writer counts them itself (written / skipped / failed), retries transient per-write
codes and whole-request failures under one RetryPolicy per batch (only the failed writes
go out again), and isolates a write that makes the whole request invalid by splitting the
batch. A dry run decodes and rewrites everything and sends no write; in skip mode it asks
BatchGetDocuments (names only) which documents exist, so its written / skipped figures are
what a real run would report at that moment. Several batches are in flight at once
(threads blocking in gRPC, which releases the GIL); the number is bounded, so memory stays
flat. Documents become writes in firestore.rewrite.

Writes into real Firestore follow its ramp-up rule ("500/50/5": at most 500 writes/s to a new
collection, +50% every 5 minutes) through a RampUp limiter, which also halves its rate whenever
Firestore answers RESOURCE_EXHAUSTED or ABORTED (the retry policy retries those writes too). It
accounts per batch, never per document, and is off for the emulator.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Iterable

from firebackup.errors import TRANSIENT_CODES, SourceError, UsageError
from firebackup.firestore import protos
from firebackup.firestore.rewrite import DocumentRewriter
from firebackup.firestore.wire import framed_write_name, len_field, status_code_name
from firebackup.progress import ProgressCallback
from firebackup.retry import RetryPolicy

if TYPE_CHECKING:  # the engine's port, which firestore.grpc.FirestoreConnection implements
    from firebackup.engine.ports import DocumentTarget

# Firestore accepts at most 500 writes per Commit / BatchWrite request.
MAX_WRITES_PER_BATCH = 500
# Firestore's API request limit is 10 MiB; the emulator's gRPC server caps inbound messages
# at 4 MiB (4194304). Stay below each with room for the request envelope.
MAX_REQUEST_BYTES = 9 * 1024 * 1024
MAX_REQUEST_BYTES_EMULATOR = 4 * 1024 * 1024 - 64 * 1024

# What a write with precondition exists=false answers when the document is there
# (ALREADY_EXISTS on Firestore and its emulator; FAILED_PRECONDITION is the generic code).
SKIPPED_CODES = frozenset({"ALREADY_EXISTS", "FAILED_PRECONDITION"})

_BatchWriteResponsePb: Any = protos.BatchWriteResponse
_BatchGetRequestPb: Any = protos.BatchGetDocumentsRequest
_BatchGetResponsePb: Any = protos.BatchGetDocumentsResponse
_StatusPb: Any = protos.Status


@dataclass
class WriteStats:
    """What happened to each document handed to a writer; written + skipped + failed = documents."""

    written: int = 0
    skipped: int = 0
    failed: int = 0
    filtered: int = 0  # not in the collection filter: neither written nor counted above
    bytes: int = 0
    errors: list[str] = field(default_factory=list)  # the first `error_limit` failures, one line each
    error_limit: int = 100

    @property
    def documents(self) -> int:
        return self.written + self.skipped + self.failed

    def add(self, other: "WriteStats") -> None:
        self.written += other.written
        self.skipped += other.skipped
        self.failed += other.failed
        self.filtered += other.filtered
        self.bytes += other.bytes
        room = self.error_limit - len(self.errors)
        if room > 0:
            self.errors.extend(other.errors[:room])

    def fail(self, rel: str, what: str) -> None:
        self.failed += 1
        if len(self.errors) < self.error_limit:
            self.errors.append(f"{rel}: {what}")


# Firestore's answers to a target written too fast: the limiter slows down on these.
SLOW_DOWN_CODES = frozenset({"RESOURCE_EXHAUSTED", "ABORTED"})


class WriteLimiter:
    """Paces the writes a BatchWriter sends, per key; this base lets everything through at once."""

    def acquire(self, key: str, writes: int) -> float:
        """Wait until `writes` more writes to `key` may go; return the moment they were let through."""
        return 0.0

    def slow_down(self, key: str, since: float) -> None:
        """The target refused writes to `key` let through at `since` as too many: send fewer."""


NO_LIMIT = WriteLimiter()


@dataclass(frozen=True)
class RampUpRule:
    """Firestore's "500/50/5" rule, and how far to back off when it pushes back."""

    start_rate: float = 500.0  # writes/s to a collection this process has not written before
    growth: float = 1.5  # +50% ...
    period: float = 300.0  # ... every 5 minutes
    backoff: float = 0.5  # the rate after RESOURCE_EXHAUSTED / ABORTED, as a fraction of the current one
    min_rate: float = 1.0


@dataclass
class _Ramp:
    base: float  # writes/s at `anchor`
    anchor: float  # when the ramp (re)started
    next_free: float  # when the next reservation may start
    slowed_at: float = -math.inf

    def rate(self, rule: RampUpRule, now: float) -> float:
        return self.base * rule.growth ** math.floor(max(0.0, now - self.anchor) / rule.period)


class RampUp(WriteLimiter):
    """A ramp per key (a root collection of one database), shared by every writer that holds it.

    Each acquire() reserves the next `writes / rate` seconds of the key's schedule, so batches in
    flight on several threads together keep to the rate. After slow_down() the ramp starts again
    from `backoff` times the rate it had reached; a wave of refusals of batches let through
    before that counts once; a key idle for a whole period starts over. Per process: tasks
    fanned out over N instances should each get a rule with start_rate / N.
    """

    def __init__(self, rule: RampUpRule = RampUpRule(), *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], object] = time.sleep):
        self.rule, self._clock, self._sleep = rule, clock, sleep
        self._ramps: dict[str, _Ramp] = {}
        self._lock = threading.Lock()

    def rate(self, key: str) -> float:
        """Writes/s allowed to `key` now (start_rate for a key not written yet)."""
        with self._lock:
            ramp = self._ramps.get(key)
            return self.rule.start_rate if ramp is None else ramp.rate(self.rule, self._clock())

    def acquire(self, key: str, writes: int) -> float:
        with self._lock:
            now = self._clock()
            ramp = self._ramps.get(key)
            if ramp is None or now - ramp.next_free > self.rule.period:
                # New to this process, or idle long enough for Firestore to have merged its splits.
                ramp = self._ramps[key] = _Ramp(self.rule.start_rate, now, now)
            start = max(now, ramp.next_free)
            ramp.next_free = start + writes / ramp.rate(self.rule, start)
        if start > now:
            self._sleep(start - now)
        return start

    def slow_down(self, key: str, since: float) -> None:
        with self._lock:
            ramp = self._ramps.get(key)
            if ramp is None or ramp.slowed_at >= since:
                return  # already slowed since these writes went out
            now = self._clock()
            ramp.base = max(self.rule.min_rate, ramp.rate(self.rule, now) * self.rule.backoff)
            ramp.anchor = ramp.slowed_at = now


# One per process: every writer into the same collection shares its budget.
RAMP_UP = RampUp()


# Eight tries in all, 0.1 s doubling to 8 s: a busy target (RESOURCE_EXHAUSTED, ABORTED on
# contention) gets room to recover before a batch is given up.
DEFAULT_RETRY = RetryPolicy(attempts=8, base_delay=0.1, max_delay=8.0, deadline=120.0)


class BatchWriter:
    """Streams stored documents into a database with BatchWrite; exact counts in close().

    conn is the connection to the TARGET database. add() / add_many() block only when
    max_in_flight batches are already being sent, or when `limiter` holds a batch back (None:
    RAMP_UP on Firestore, NO_LIMIT on the emulator). Each batch is retried under `retry`
    (default DEFAULT_RETRY). Raises a TransientSourceError (e.g. SourceUnavailable) when
    the target stays unreachable, a PermanentSourceError when it refuses every request
    (permission, missing database); individual bad writes are counted as failed, never raised.
    """

    def __init__(
        self,
        conn: DocumentTarget,
        *,
        source_database: str,
        mode: str = "overwrite",
        keep_references: bool = False,
        collections: Iterable[str] | None = None,
        dry_run: bool = False,
        max_in_flight: int = 4,
        max_writes: int = MAX_WRITES_PER_BATCH,
        max_bytes: int | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout: float | None = 120.0,
        progress: ProgressCallback | None = None,
        executor: ThreadPoolExecutor | None = None,
        limiter: WriteLimiter | None = None,
    ):
        if not 1 <= max_writes <= MAX_WRITES_PER_BATCH:
            raise UsageError(f"max_writes must be 1..{MAX_WRITES_PER_BATCH}, not {max_writes}")
        self.conn = conn
        self.database = conn.database_path
        self.rewriter = DocumentRewriter(
            source_database, self.database, mode=mode, keep_references=keep_references, collections=collections
        )
        self.mode = mode
        self.dry_run = dry_run
        self.max_in_flight = max(1, max_in_flight)
        self.max_writes = max_writes
        if max_bytes is None:
            max_bytes = MAX_REQUEST_BYTES_EMULATOR if conn.emulator else MAX_REQUEST_BYTES
        self.max_bytes = max_bytes
        self.retry = retry
        self.limiter = limiter if limiter is not None else NO_LIMIT if conn.emulator else RAMP_UP
        self.timeout = timeout
        self.progress = progress
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            max_workers=self.max_in_flight, thread_name_prefix="batchwrite"
        )
        self._header = len_field(b"\x0a", self.database.encode())
        self._writes: list[bytes] = []
        self._size = len(self._header)
        self._inflight: deque[Future[WriteStats]] = deque()
        self._stats = WriteStats()
        self._closed = False

    # -- feeding -------------------------------------------------------------------------

    def add(self, raw: bytes) -> None:
        """Queue one stored Document (bytes); sends a batch when one is full.

        A record that is not a Document is counted failed (it cannot be written), not raised.
        """
        self.add_many((raw,))

    def add_many(self, raws: Iterable[bytes]) -> None:
        """add() for each document, with the per-document work done in one pass (frame_many)."""
        writes, failures, filtered = self.rewriter.frame_many(raws)
        stats = self._stats
        stats.filtered += filtered
        if failures:
            for rel, why in failures:
                stats.fail(rel, why)
            self._report(WriteStats(failed=len(failures)))
        max_writes, max_bytes = self.max_writes, self.max_bytes
        i, n = 0, len(writes)
        while i < n:
            pending = self._writes
            take = writes[i : i + max_writes - len(pending)]
            size = sum(map(len, take))
            if self._size + size <= max_bytes:
                pending.extend(take)
                self._size += size
                i += len(take)
            else:  # the request fills up by bytes first: take what fits (always at least one write)
                for w in take:
                    if pending and self._size + len(w) > max_bytes:
                        break
                    pending.append(w)
                    self._size += len(w)
                    i += 1
                self._dispatch()
                continue
            if len(pending) >= max_writes:
                self._dispatch()

    def close(self) -> WriteStats:
        """Send what is left, wait for every batch, and return the totals."""
        if not self._closed:
            self._closed = True
            try:
                if self._writes:
                    self._dispatch()
                while self._inflight:
                    self._collect(self._inflight.popleft())
            finally:
                if self._own_executor:
                    self._executor.shutdown(wait=True, cancel_futures=True)
        return self._stats

    def __enter__(self) -> "BatchWriter":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._closed = True
            for f in self._inflight:
                f.cancel()
            if self._own_executor:
                self._executor.shutdown(wait=True, cancel_futures=True)

    # -- sending -------------------------------------------------------------------------

    def _dispatch(self) -> None:
        writes, nbytes = self._writes, self._size - len(self._header)
        self._writes, self._size = [], len(self._header)
        while len(self._inflight) >= self.max_in_flight:
            self._collect(self._inflight.popleft())
        if self.dry_run and self.mode != "skip":
            # Every document was read, decoded and turned into its Write; nothing is sent.
            done = WriteStats(written=len(writes), bytes=nbytes)
            self._stats.add(done)
            self._report(done)
            return
        send = self._probe if self.dry_run else self._send
        self._inflight.append(self._executor.submit(send, writes, nbytes))

    def _collect(self, fut: Future[WriteStats]) -> None:
        self._stats.add(fut.result())

    def _report(self, stats: WriteStats) -> None:
        if self.progress is not None:
            self.progress(documents=stats.documents, bytes=stats.bytes)

    def _probe(self, writes: list[bytes], nbytes: int) -> WriteStats:
        """Dry run in skip mode: ask which documents exist (names only, read-only) to count skips."""
        request = _BatchGetRequestPb(database=self.database, documents=[framed_write_name(w) for w in writes])
        request.mask.SetInParent()  # an empty mask: names only, no field values
        payload = request.SerializeToString()

        def existing() -> int:
            found = 0
            for raw in self.conn.batch_get_documents(payload, timeout=self.timeout):
                if _BatchGetResponsePb.FromString(raw).HasField("found"):
                    found += 1
            return found

        there = self.retry.call(existing)
        out = WriteStats(written=len(writes) - there, skipped=there, bytes=nbytes)
        self._report(out)
        return out

    def _send(self, writes: list[bytes], nbytes: int) -> WriteStats:
        out = self._send_batch(writes)
        out.bytes = nbytes
        self._report(out)
        return out

    def _rel(self, framed: bytes) -> str:
        """The document path (after documents/) a framed write is for: named only in failures."""
        name = framed_write_name(framed)
        prefix = self.rewriter.target_docs
        return name[len(prefix) :] if name.startswith(prefix) else name

    def _limit_key(self, writes: list[bytes]) -> str:
        """The database and root collection a batch writes to, from its first write (batches are cut
        from one chunk, which holds one root collection)."""
        return f"{self.database}/{self._rel(writes[0]).split('/', 1)[0]}"

    def _send_batch(self, writes: list[bytes]) -> WriteStats:
        out = WriteStats()
        run = self.retry.start()
        skip = self.mode == "skip"
        limiter = self.limiter
        key = "" if limiter is NO_LIMIT else self._limit_key(writes)
        while writes:
            sent = limiter.acquire(key, len(writes))
            try:
                raw = self.conn.batch_write(self._header + b"".join(writes), timeout=self.timeout)
            except SourceError as e:
                if _spoils_request(e):  # one bad write makes the whole request invalid: isolate it
                    if len(writes) == 1:
                        out.fail(self._rel(writes[0]), f"{e.grpc_code} {_detail(str(e))}")
                        return out
                    half = len(writes) // 2
                    out.add(self._send_batch(writes[:half]))
                    out.add(self._send_batch(writes[half:]))
                    return out
                if e.grpc_code in SLOW_DOWN_CODES:
                    limiter.slow_down(key, sent)
                # A lost answer may hide applied writes; resending is harmless (overwrite and merge
                # are idempotent) but in skip mode such a document then reads as skipped.
                run.failed(e)  # permanent: raised at once (every other batch would fail the same way)
                continue
            statuses = _BatchWriteResponsePb.FromString(raw).status
            if len(statuses) != len(writes):
                raise SourceError(
                    f"BatchWrite on {self.database} answered {len(statuses)} statuses for {len(writes)} writes; "
                    "the server does not follow the API, nothing can be counted"
                )
            if not any(statuses):  # every status empty: code OK, no message
                out.written += len(writes)
                return out
            again: list[tuple[bytes, str, str]] = []
            for w, status in zip(writes, statuses):
                parsed = _StatusPb.FromString(status)
                code = status_code_name(parsed.code)
                if code == "OK":
                    out.written += 1
                elif skip and code in SKIPPED_CODES:
                    out.skipped += 1
                elif code in TRANSIENT_CODES:
                    again.append((w, code, parsed.message))
                else:
                    out.fail(self._rel(w), f"{code} {_detail(parsed.message)}")
            if any(code in SLOW_DOWN_CODES for _, code, _ in again):
                limiter.slow_down(key, sent)
            if again and not run.again():
                for w, code, message in again:
                    out.fail(self._rel(w), f"{code} after {run.failures} attempts {_detail(message)}")
                return out
            writes = [w for w, _, _ in again]
        return out


def _spoils_request(e: SourceError) -> bool:
    """INVALID_ARGUMENT, or a request over the size limit: the request, not the server, is at fault."""
    return e.grpc_code == "INVALID_ARGUMENT" or (
        e.grpc_code == "RESOURCE_EXHAUSTED" and "exceeds maximum size" in str(e)
    )


def _detail(text: str) -> str:
    return " ".join(str(text).split())[:300]
