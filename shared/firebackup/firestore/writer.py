"""Bulk writes into Firestore from stored Document wire bytes (BatchWrite, requests built by hand).

A backup stores each document as the exact google.firestore.v1.Document bytes the server
sent. Restoring one costs, per document: one C-level parse of a skeleton message (name and
the two output-only timestamps; the fields map stays opaque bytes), a new name, and a
C-level serialize. The Write and BatchWriteRequest around it are concatenated bytes:

    Write             = 0x0a len Document  [0x1a len DocumentMask]  [0x22 len Precondition]
    BatchWriteRequest = 0x0a len database  (0x12 len Write)*

A document is parsed fully only when it must be: in merge mode (its top-level field names
make the update mask) or when its bytes contain the source database's document prefix
beyond the name (a reference_value that may need remapping to the target).

BatchWrite applies each write independently and answers one google.rpc.Status per write;
the writer counts them itself (written / skipped / failed), retries retryable per-write
codes and whole-request failures with backoff, and isolates a write that makes the whole
request invalid by splitting the batch. A dry run decodes and rewrites everything and sends
no write; in skip mode it asks BatchGetDocuments (names only) which documents exist, so its
written / skipped figures are what a real run would report at that moment. Several batches are in flight at once (threads
blocking in gRPC, which releases the GIL); the number is bounded, so memory stays flat.
"""

from __future__ import annotations

import random
import re
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from firebackup.errors import CorruptData, FireBackupError, SourceError, SourceUnavailable, UsageError
from firebackup.firestore import protos

MODES = ("overwrite", "skip", "merge")

# Firestore accepts at most 500 writes per Commit / BatchWrite request.
MAX_WRITES_PER_BATCH = 500
# Firestore's API request limit is 10 MiB; the emulator's gRPC server caps inbound messages
# at 4 MiB (4194304). Stay below each with room for the request envelope.
MAX_REQUEST_BYTES = 9 * 1024 * 1024
MAX_REQUEST_BYTES_EMULATOR = 4 * 1024 * 1024 - 64 * 1024

# google.rpc.Code values.
OK = 0
DEADLINE_EXCEEDED = 4
ALREADY_EXISTS = 6
RESOURCE_EXHAUSTED = 8
FAILED_PRECONDITION = 9
ABORTED = 10
INTERNAL = 13
UNAVAILABLE = 14
RETRYABLE_WRITE_CODES = frozenset({ABORTED, UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, INTERNAL})
# What a write with precondition exists=false answers when the document is there
# (ALREADY_EXISTS on Firestore and its emulator; FAILED_PRECONDITION is the generic code).
SKIPPED_CODES = frozenset({ALREADY_EXISTS, FAILED_PRECONDITION})
_CODE_NAMES = {
    1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
    6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION",
    10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE",
    15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}

_PRECONDITION_MISSING = b"\x22\x02\x08\x00"  # Write.current_document = Precondition{exists: false}


# -- protobuf plumbing ---------------------------------------------------------------------


# Our own subset of the Firestore messages: the client library's types cost ~0.35 s to import.
_Skeleton = protos.DocumentSkeleton  # name and timestamps only: the fields map stays unknown bytes
_DocumentPb = protos.Document
_BatchWriteResponsePb = protos.BatchWriteResponse
_BatchGetRequestPb = protos.BatchGetDocumentsRequest
_BatchGetResponsePb = protos.BatchGetDocumentsResponse

def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Every 1- and 2-byte varint (lengths up to 16 KiB, i.e. nearly every document): a list index
# is ~10x cheaper than a call, and the restore hot path needs two per document.
_VARINTS = [_encode_varint(i) for i in range(1 << 14)]
_N_VARINTS = len(_VARINTS)


def varint(n: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int."""
    if n < _N_VARINTS:
        return _VARINTS[n]
    return _encode_varint(n)


_SIMPLE_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def quote_field_path(name: str) -> str:
    """One field name as a Firestore field path segment: backtick-quoted unless a simple identifier."""
    if _SIMPLE_FIELD.match(name):
        return name
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def database_path(project: str, database: str = "(default)") -> str:
    return f"projects/{project}/databases/{database or '(default)'}"


def relative_name(name: str) -> str:
    """The document path after ".../documents/" (project and database ids contain no '/')."""
    i = name.find("/documents/")
    if not name.startswith("projects/") or i < 0:
        raise CorruptData(f"not a Firestore document name: {name[:200]!r}")
    return name[i + 11 :]


def _remap_value(v: Any, src: str, dst: str, n_src: int) -> None:
    kind = v.WhichOneof("value_type")
    if kind == "reference_value":
        ref = v.reference_value
        if ref.startswith(src):
            v.reference_value = dst + ref[n_src:]
    elif kind == "map_value":
        for x in v.map_value.fields.values():
            _remap_value(x, src, dst, n_src)
    elif kind == "array_value":
        for x in v.array_value.values:
            _remap_value(x, src, dst, n_src)


# -- one document -> one Write -------------------------------------------------------------


class DocumentRewriter:
    """Turns stored Document bytes into Write bytes aimed at the target database.

    source / target are database paths ("projects/P/databases/D"). Names are rewritten to
    the target; reference values into the source database are remapped to the target
    unless keep_references. mode: overwrite (plain update), skip (precondition
    exists=false), merge (update mask = the document's top-level fields).
    """

    def __init__(self, source: str, target: str, *, mode: str = "overwrite", keep_references: bool = False):
        if mode not in MODES:
            raise UsageError(f"unknown restore mode {mode!r}; use one of {', '.join(MODES)}")
        self.mode = mode
        self.source_docs = source.rstrip("/") + "/documents/"
        self.target_docs = target.rstrip("/") + "/documents/"
        self.remap = not keep_references and self.source_docs != self.target_docs
        self._src_bytes = self.source_docs.encode()
        self._n_src = len(self.source_docs)
        self._merge = mode == "merge"
        self._suffix = _PRECONDITION_MISSING if mode == "skip" else b""

    def rewrite(self, raw: bytes) -> tuple[str, bytes]:
        """(path relative to documents/, Write bytes) for one stored Document."""
        # The name occupies bytes 2..(2 or 3)+len(name); a hit from offset 4 on is elsewhere.
        full = self._merge or (self.remap and raw.find(self._src_bytes, 4) >= 0)
        try:
            doc = (_DocumentPb if full else _Skeleton).FromString(raw)
        except Exception as e:  # protobuf's DecodeError; keep vendor types inside
            raise CorruptData(f"a stored document does not parse as google.firestore.v1.Document ({e})") from None
        name = doc.name
        rel = name[self._n_src :] if name.startswith(self.source_docs) else relative_name(name)
        doc.name = self.target_docs + rel
        doc.ClearField("create_time")  # output-only
        doc.ClearField("update_time")
        if full and self.remap:
            src, dst, n = self.source_docs, self.target_docs, len(self.source_docs)
            for v in doc.fields.values():
                _remap_value(v, src, dst, n)
        body = doc.SerializeToString()
        write = b"\x0a" + varint(len(body)) + body + self._suffix
        if self._merge:
            mask = b"".join(
                b"\x0a" + varint(len(p)) + p for p in (quote_field_path(k).encode() for k in doc.fields)
            )
            # An empty mask is still a mask: it creates a missing document and leaves an existing one as is.
            write += b"\x1a" + varint(len(mask)) + mask
        return rel, write

    def frame_many(self, raws: Iterable[bytes]) -> list[tuple[str | None, bytes | str, int]]:
        """rewrite() for many documents, each Write framed as a BatchWriteRequest.writes entry.

        Returns (relative path, 0x12 len Write, stored size) per document, in order; a
        document that cannot be rewritten gives (None, the reason, stored size) instead.
        The common case (no merge mask, no reference to remap) is inlined here with its
        names bound locally: it is most of a restore's client CPU.
        """
        out: list[tuple[str | None, bytes | str, int]] = []
        append = out.append
        skeleton = _Skeleton
        src, n_src, tgt = self.source_docs, self._n_src, self.target_docs
        src_bytes = self._src_bytes if self.remap else None
        merge, suffix = self._merge, self._suffix
        n_suffix = len(suffix)
        varints, n_varints = _VARINTS, _N_VARINTS
        for raw in raws:
            if merge or (src_bytes is not None and raw.find(src_bytes, 4) >= 0):
                try:
                    rel, write = self.rewrite(raw)
                except CorruptData as e:
                    append((None, str(e), len(raw)))
                    continue
                n = len(write)
                append((rel, b"\x12" + (varints[n] if n < n_varints else _encode_varint(n)) + write, len(raw)))
                continue
            doc = skeleton()
            try:
                doc.ParseFromString(raw)
                name = doc.name
                rel = name[n_src:] if name.startswith(src) else relative_name(name)
            except CorruptData as e:
                append((None, str(e), len(raw)))
                continue
            except Exception as e:  # protobuf's DecodeError; keep vendor types inside
                append((None, f"a stored document does not parse as google.firestore.v1.Document ({e})", len(raw)))
                continue
            doc.name = tgt + rel
            doc.ClearField("create_time")  # output-only
            doc.ClearField("update_time")
            body = doc.SerializeToString()
            n = len(body)
            head = varints[n] if n < n_varints else _encode_varint(n)
            w = 1 + len(head) + n + n_suffix
            append((rel, b"".join((b"\x12", varints[w] if w < n_varints else _encode_varint(w), b"\x0a", head,
                                   body, suffix)), len(raw)))
        return out


def batch_write_request(database: str, writes: Iterable[bytes]) -> bytes:
    """BatchWriteRequest bytes for already-serialized Write messages."""
    db = database.encode()
    return b"\x0a" + varint(len(db)) + db + b"".join(b"\x12" + varint(len(w)) + w for w in writes)


# -- accounting ------------------------------------------------------------------------------


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


def _code_name(code: int) -> str:
    return _CODE_NAMES.get(code, str(code))


def _grpc_code_value(e: FireBackupError) -> int | None:
    code = getattr(e, "grpc_code", None)
    if code is None:
        return None
    return code.value[0]


# -- the writer ------------------------------------------------------------------------------


class BatchWriter:
    """Streams stored documents into a database with BatchWrite; exact counts in close().

    conn is a firebackup.firestore.grpc.FirestoreConnection to the TARGET database.
    add() / add_many() block only when max_in_flight batches are already being sent.
    Raises SourceUnavailable when the target stays unreachable, SourceError when it
    refuses every request (permission, missing database); individual bad writes are
    counted as failed, never raised.
    """

    def __init__(
        self,
        conn: Any,
        *,
        source_database: str,
        mode: str = "overwrite",
        keep_references: bool = False,
        collections: Iterable[str] | None = None,
        dry_run: bool = False,
        max_in_flight: int = 4,
        max_writes: int = MAX_WRITES_PER_BATCH,
        max_bytes: int | None = None,
        max_attempts: int = 8,
        backoff_initial: float = 0.1,
        backoff_max: float = 8.0,
        timeout: float | None = 120.0,
        progress: Callable[..., None] | None = None,
        executor: ThreadPoolExecutor | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not 1 <= max_writes <= MAX_WRITES_PER_BATCH:
            raise UsageError(f"max_writes must be 1..{MAX_WRITES_PER_BATCH}, not {max_writes}")
        self.conn = conn
        self.database = conn.database_path
        self.rewriter = DocumentRewriter(source_database, self.database, mode=mode, keep_references=keep_references)
        self.mode = mode
        self.collections = frozenset(collections) if collections else None
        self.dry_run = dry_run
        self.max_in_flight = max(1, max_in_flight)
        self.max_writes = max_writes
        if max_bytes is None:
            max_bytes = MAX_REQUEST_BYTES_EMULATOR if getattr(conn, "emulator", False) else MAX_REQUEST_BYTES
        self.max_bytes = max_bytes
        self.max_attempts = max(1, max_attempts)
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.timeout = timeout
        self.progress = progress
        self._sleep = sleep
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            max_workers=self.max_in_flight, thread_name_prefix="batchwrite"
        )
        db = self.database.encode()
        self._header = b"\x0a" + varint(len(db)) + db
        self._rels: list[str] = []
        self._writes: list[bytes] = []
        self._size = len(self._header)
        self._raw_bytes = 0
        self._inflight: deque[Future] = deque()
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
        collections = self.collections
        max_writes, max_bytes = self.max_writes, self.max_bytes
        for rel, framed, n_raw in self.rewriter.frame_many(raws):
            if rel is None:
                self._stats.fail("(unreadable document)", framed)
                self._report(WriteStats(failed=1))
                continue
            if collections is not None and rel.split("/", 1)[0] not in collections:
                self._stats.filtered += 1
                continue
            writes = self._writes
            if writes and (len(writes) >= max_writes or self._size + len(framed) > max_bytes):
                self._dispatch()
            self._rels.append(rel)
            self._writes.append(framed)
            self._size += len(framed)
            self._raw_bytes += n_raw

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

    def __exit__(self, exc_type, exc, tb) -> None:
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
        rels, writes, nbytes = self._rels, self._writes, self._raw_bytes
        self._rels, self._writes, self._size, self._raw_bytes = [], [], len(self._header), 0
        while len(self._inflight) >= self.max_in_flight:
            self._collect(self._inflight.popleft())
        if self.dry_run and self.mode != "skip":
            # Every document was read, decoded and turned into its Write; nothing is sent.
            done = WriteStats(written=len(writes), bytes=nbytes)
            self._stats.add(done)
            self._report(done)
            return
        send = self._probe if self.dry_run else self._send
        self._inflight.append(self._executor.submit(send, rels, writes, nbytes))

    def _collect(self, fut: Future) -> None:
        self._stats.add(fut.result())

    def _report(self, stats: WriteStats) -> None:
        if self.progress is not None:
            self.progress(documents=stats.documents, bytes=stats.bytes)

    def _backoff(self, attempt: int) -> None:
        delay = min(self.backoff_max, self.backoff_initial * (2 ** (attempt - 1)))
        self._sleep(delay * (0.5 + random.random() / 2))

    def _probe(self, rels: list[str], writes: list[bytes], nbytes: int) -> WriteStats:
        """Dry run in skip mode: ask which documents exist (names only, read-only) to count skips."""
        names = [self.rewriter.target_docs + rel for rel in rels]
        request = _BatchGetRequestPb(database=self.database, documents=names)
        request.mask.SetInParent()  # an empty mask: names only, no field values
        existing = 0
        for attempt in range(1, self.max_attempts + 1):
            try:
                existing = 0
                for raw in self.conn.batch_get_documents(request.SerializeToString(), timeout=self.timeout):
                    if _BatchGetResponsePb.FromString(raw).HasField("found"):
                        existing += 1
                break
            except FireBackupError as e:
                if not getattr(e, "retryable", False) or attempt == self.max_attempts:
                    raise
                self._backoff(attempt)
        out = WriteStats(written=len(rels) - existing, skipped=existing, bytes=nbytes)
        self._report(out)
        return out

    def _send(self, rels: list[str], writes: list[bytes], nbytes: int) -> WriteStats:
        out = self._send_batch(rels, writes)
        out.bytes = nbytes
        self._report(out)
        return out

    def _send_batch(self, rels: list[str], writes: list[bytes]) -> WriteStats:
        out = WriteStats()
        attempt = 0
        skip = self.mode == "skip"
        while rels:
            attempt += 1
            request = self._header + b"".join(writes)
            try:
                raw = self.conn.batch_write(request, timeout=self.timeout)
            except FireBackupError as e:
                code = _grpc_code_value(e)
                text = str(e)
                too_big = code == RESOURCE_EXHAUSTED and "exceeds maximum size" in text
                if code == 3 or too_big:  # INVALID_ARGUMENT: one bad write spoils the request
                    if len(rels) == 1:
                        out.fail(rels[0], f"{_code_name(code)} {_detail(text)}")
                        return out
                    half = len(rels) // 2
                    out.add(self._send_batch(rels[:half], writes[:half]))
                    out.add(self._send_batch(rels[half:], writes[half:]))
                    return out
                # A lost answer may hide applied writes; resending is harmless (overwrite and merge
                # are idempotent) but in skip mode such a document then reads as skipped.
                if getattr(e, "retryable", False) and attempt < self.max_attempts:
                    self._backoff(attempt)
                    continue
                if isinstance(e, SourceUnavailable) or not getattr(e, "retryable", False):
                    raise  # the target refuses or is gone: every other batch would fail the same way
                for rel in rels:
                    out.fail(rel, f"{_code_name(code)} after {attempt} attempts: {_detail(text)}")
                return out
            resp = _BatchWriteResponsePb.FromString(raw)
            statuses = resp.status
            if len(statuses) != len(rels):
                raise SourceError(
                    f"BatchWrite on {self.database} answered {len(statuses)} statuses for {len(rels)} writes; "
                    "the server does not follow the API, nothing can be counted"
                )
            codes = [s.code for s in statuses]
            if not any(codes):
                out.written += len(rels)
                return out
            retry_rels: list[str] = []
            retry_writes: list[bytes] = []
            for i, c in enumerate(codes):
                if c == OK:
                    out.written += 1
                elif skip and c in SKIPPED_CODES:
                    out.skipped += 1
                elif c in RETRYABLE_WRITE_CODES and attempt < self.max_attempts:
                    retry_rels.append(rels[i])
                    retry_writes.append(writes[i])
                else:
                    suffix = f" after {attempt} attempts" if c in RETRYABLE_WRITE_CODES else ""
                    out.fail(rels[i], f"{_code_name(c)}{suffix} {_detail(statuses[i].message)}")
            rels, writes = retry_rels, retry_writes
            if rels:
                self._backoff(attempt)
        return out


def _detail(text: str) -> str:
    return " ".join(str(text).split())[:300]
