"""Bulk writes into Firestore from stored Document wire bytes (BatchWrite, requests built by hand).

A backup stores each document as the exact google.firestore.v1.Document bytes the server
sent: the name first, the fields map, then the two output-only timestamps. Restoring one
is, per document, a few slices: the name is replaced by the target's and the timestamps
cut off, with no protobuf parse in Python (DocumentRewriter.frame_many); one C-level parse
per batch then checks that every Document built that way is well formed. The Write and
BatchWriteRequest around it are concatenated bytes:

    Write             = 0x0a len Document  [0x1a len DocumentMask]  [0x22 len Precondition]
    BatchWriteRequest = 0x0a len database  (0x12 len Write)*

A document goes through protobuf (DocumentRewriter.rewrite) only when it must: in merge mode
(its top-level field names make the update mask), when its bytes contain the source
database's document prefix beyond the name (a reference_value that may need remapping to
the target), or when its bytes are not shaped as Firestore serves documents.

BatchWrite applies each write independently and answers one google.rpc.Status per write;
the writer counts them itself (written / skipped / failed), retries retryable per-write
codes and whole-request failures with backoff, and isolates a write that makes the whole
request invalid by splitting the batch. A dry run decodes and rewrites everything and sends
no write; in skip mode it asks BatchGetDocuments (names only) which documents exist, so its
written / skipped figures are what a real run would report at that moment. Several batches
are in flight at once (threads blocking in gRPC, which releases the GIL); the number is
bounded, so memory stays flat.
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
from firebackup.firestore.documents import read_varint

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

# Backoff jitter from a private generator: retries on background threads must not move the
# global random state that callers (and hypothesis, in the tests) own.
_JITTER = random.Random()

_PRECONDITION_MISSING = b"\x22\x02\x08\x00"  # Write.current_document = Precondition{exists: false}


def _timestamp_field_pattern() -> bytes:
    """Regex for a Timestamp field's length byte and contents, the length checked against them.

    Timestamp = [0x08 varint seconds] [0x10 varint nanos], zero values omitted; seconds take
    1-10 bytes, nanos (0..999,999,999) 1-5. One alternative per (seconds, nanos) width, so
    the length byte must equal the bytes that follow it (at most 17).
    """
    def varint(width: int) -> bytes:
        return (rb"[\x80-\xff]{%d}" % (width - 1) if width > 1 else b"") + rb"[\x00-\x7f]"

    by_length: dict[int, list[bytes]] = {}
    for sw in range(11):
        for nw in range(6):
            body = (rb"\x08" + varint(sw) if sw else b"") + (rb"\x10" + varint(nw) if nw else b"")
            by_length.setdefault((sw and sw + 1) + (nw and nw + 1), []).append(body)
    return b"(?:" + b"|".join(
        re.escape(bytes([n])) + b"(?:" + b"|".join(alts) + b")" for n, alts in sorted(by_length.items())
    ) + b")"


# The end of a Document as Firestore serializes it: create_time (field 3) then update_time
# (field 4), the last two fields. Searched for in the last 38 bytes; the leftmost
# match is the real one: the timestamps' own bytes cannot be read as a longer such tail
# (tests/unit/firestore/test_writer_fast_path.py holds this path to the protobuf one).
_TS = _timestamp_field_pattern()
_TAIL = re.compile(rb"\x1a" + _TS + rb"\x22" + _TS + rb"\Z")


# -- protobuf plumbing ---------------------------------------------------------------------


# Our own subset of the Firestore messages: the client library's types cost ~0.35 s to import.
_Skeleton = protos.DocumentSkeleton  # name and timestamps only: the fields map stays unknown bytes
_DocumentPb = protos.Document
_BatchWriteResponsePb = protos.BatchWriteResponse
_BatchGetRequestPb = protos.BatchGetDocumentsRequest
_BatchGetResponsePb = protos.BatchGetDocumentsResponse
_WritesSkeletonPb = protos.WritesSkeleton
_StatusPb = protos.Status

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
    exists=false), merge (update mask = the document's top-level fields). collections, if
    given, keeps only documents under those root collections (frame_many counts the rest).
    """

    def __init__(
        self,
        source: str,
        target: str,
        *,
        mode: str = "overwrite",
        keep_references: bool = False,
        collections: Iterable[str] | None = None,
    ):
        if mode not in MODES:
            raise UsageError(f"unknown restore mode {mode!r}; use one of {', '.join(MODES)}")
        self.mode = mode
        self.source_docs = source.rstrip("/") + "/documents/"
        self.target_docs = target.rstrip("/") + "/documents/"
        self.remap = not keep_references and self.source_docs != self.target_docs
        self._src_bytes = self.source_docs.encode()
        self._tgt_bytes = self.target_docs.encode()
        # Project and database ids are ASCII, so string and byte offsets agree.
        self._n_src = len(self._src_bytes)
        self._collection_bytes = frozenset(c.encode() for c in collections) if collections else None
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

    def frame_many(self, raws: Iterable[bytes]) -> tuple[list[bytes], list[tuple[str, str]], int]:
        """rewrite() for many documents, each Write framed as a BatchWriteRequest.writes entry.

        Returns (framed writes, in order; (path, reason) per document that cannot be
        rewritten; how many documents the collection filter left out).

        Documents as Firestore serves them (name first, the two output-only timestamps last,
        nothing to merge or remap) take a byte-level path with no protobuf parse: the name is
        replaced and the timestamps cut off by slicing, which is byte-for-byte what rewrite()
        makes of them. One C-level parse of the whole result (WritesSkeleton) then checks
        that every Document built that way is well formed; if one is not (bytes Firestore
        would not have served), the batch is redone one document at a time, and such a
        document through rewrite(). Everything else goes through rewrite().
        """
        raws = raws if isinstance(raws, list) else list(raws)
        out, failures, filtered, fast = self._frame(raws, self._merge)
        if fast and not _well_formed(out):
            out, failures, filtered = [], [], 0
            for raw in raws:
                one = self._frame([raw], False)
                if one[3] and not _well_formed(one[0]):
                    one = self._frame([raw], True)
                out += one[0]
                failures += one[1]
                filtered += one[2]
        return out, failures, filtered

    def _frame(self, raws: list[bytes], slow: bool) -> tuple[list[bytes], list[tuple[str, str]], int, int]:
        """frame_many() without the final check; also returns how many writes took the byte-level path."""
        out: list[bytes] = []
        append = out.append
        failures: list[tuple[str, str]] = []
        filtered = fast = 0
        colls = self._collection_bytes
        src, n_src, tgt = self._src_bytes, self._n_src, self._tgt_bytes
        delta = len(tgt) - n_src
        remap, suffix = self.remap, self._suffix
        n_suffix = len(suffix)
        search = _TAIL.search
        varints, n_varints = _VARINTS, _N_VARINTS
        for raw in raws:
            q = -1  # where the timestamps start; >= 0 once the document fits the byte-level path
            if not slow:
                try:
                    if raw[0] != 0x0A:
                        nl = -1
                    elif raw[1] < 0x80:
                        s, nl = 2, raw[1]
                    elif raw[2] < 0x80:  # names are at most 6 KiB: a 2-byte length at most
                        s, nl = 3, (raw[1] & 0x7F) | (raw[2] << 7)
                    else:
                        nl = -1
                except IndexError:
                    nl = -1
                if nl > n_src and raw.startswith(src, s):
                    e = s + nl
                    if not (remap and raw.find(src, e) >= 0):  # a reference to remap: rewrite() does it
                        lo = len(raw) - 38  # the longest tail: two 17-byte Timestamps and their headers
                        m = search(raw, lo if lo > e else e)
                        if m is not None:
                            q = m.start()
            if q < 0:
                try:
                    rel, write = self.rewrite(raw)
                except CorruptData as exc:
                    failures.append(("(unreadable document)", str(exc)))
                    continue
                if colls is not None and rel.split("/", 1)[0].encode() not in colls:
                    filtered += 1
                    continue
                n = len(write)
                append(b"\x12" + (varints[n] if n < n_varints else _encode_varint(n)) + write)
                continue
            a = s + n_src
            if colls is not None:
                j = raw.find(b"/", a, e)
                if raw[a : j if j >= 0 else e] not in colls:
                    filtered += 1
                    continue
            nn = nl + delta
            vn = varints[nn] if nn < n_varints else _encode_varint(nn)
            bl = 1 + len(vn) + nn + q - e  # Document = 0x0a len name, then the fields exactly as stored
            vb = varints[bl] if bl < n_varints else _encode_varint(bl)
            wl = 1 + len(vb) + bl + n_suffix
            append(b"".join((b"\x12", varints[wl] if wl < n_varints else _encode_varint(wl), b"\x0a", vb,
                             b"\x0a", vn, tgt, raw[a:q], suffix)))
            fast += 1
        return out, failures, filtered, fast


def _well_formed(framed: list[bytes]) -> bool:
    """True if every framed write parses down to its Document's name (UTF-8) and fields (C-level, one call)."""
    try:
        _WritesSkeletonPb.FromString(b"".join(framed))
    except Exception:  # protobuf's DecodeError
        return False
    return True


def framed_write_name(framed: bytes) -> str:
    """The document name in a framed write (0x12 len Write{update: 0x0a len Document{0x0a len name}})."""
    pos = 0
    for tag in (0x12, 0x0A, 0x0A):  # writes entry, Write.update, Document.name: each first in what we build
        if framed[pos : pos + 1] != bytes((tag,)):
            raise CorruptData(f"not a framed Firestore write: {framed[:40]!r}")
        n, pos = read_varint(framed, pos + 1)
    return framed[pos : pos + n].decode("utf-8", "replace")


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
        self.rewriter = DocumentRewriter(
            source_database, self.database, mode=mode, keep_references=keep_references, collections=collections
        )
        self.mode = mode
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
        self._writes: list[bytes] = []
        self._size = len(self._header)
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

    def _collect(self, fut: Future) -> None:
        self._stats.add(fut.result())

    def _report(self, stats: WriteStats) -> None:
        if self.progress is not None:
            self.progress(documents=stats.documents, bytes=stats.bytes)

    def _backoff(self, attempt: int) -> None:
        delay = min(self.backoff_max, self.backoff_initial * (2 ** (attempt - 1)))
        self._sleep(delay * (0.5 + _JITTER.random() / 2))

    def _probe(self, writes: list[bytes], nbytes: int) -> WriteStats:
        """Dry run in skip mode: ask which documents exist (names only, read-only) to count skips."""
        names = [framed_write_name(w) for w in writes]
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
        out = WriteStats(written=len(writes) - existing, skipped=existing, bytes=nbytes)
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

    def _send_batch(self, writes: list[bytes]) -> WriteStats:
        out = WriteStats()
        attempt = 0
        skip = self.mode == "skip"
        while writes:
            attempt += 1
            request = self._header + b"".join(writes)
            try:
                raw = self.conn.batch_write(request, timeout=self.timeout)
            except FireBackupError as e:
                code = _grpc_code_value(e)
                text = str(e)
                too_big = code == RESOURCE_EXHAUSTED and "exceeds maximum size" in text
                if code == 3 or too_big:  # INVALID_ARGUMENT: one bad write spoils the request
                    if len(writes) == 1:
                        out.fail(self._rel(writes[0]), f"{_code_name(code)} {_detail(text)}")
                        return out
                    half = len(writes) // 2
                    out.add(self._send_batch(writes[:half]))
                    out.add(self._send_batch(writes[half:]))
                    return out
                # A lost answer may hide applied writes; resending is harmless (overwrite and merge
                # are idempotent) but in skip mode such a document then reads as skipped.
                if getattr(e, "retryable", False) and attempt < self.max_attempts:
                    self._backoff(attempt)
                    continue
                if isinstance(e, SourceUnavailable) or not getattr(e, "retryable", False):
                    raise  # the target refuses or is gone: every other batch would fail the same way
                for w in writes:
                    out.fail(self._rel(w), f"{_code_name(code)} after {attempt} attempts: {_detail(text)}")
                return out
            resp = _BatchWriteResponsePb.FromString(raw)
            statuses = resp.status
            if len(statuses) != len(writes):
                raise SourceError(
                    f"BatchWrite on {self.database} answered {len(statuses)} statuses for {len(writes)} writes; "
                    "the server does not follow the API, nothing can be counted"
                )
            if not any(statuses):  # every status empty: code OK, no message
                out.written += len(writes)
                return out
            parsed = [_StatusPb.FromString(s) for s in statuses]
            codes = [p.code for p in parsed]
            retry: list[bytes] = []
            for i, c in enumerate(codes):
                if c == OK:
                    out.written += 1
                elif skip and c in SKIPPED_CODES:
                    out.skipped += 1
                elif c in RETRYABLE_WRITE_CODES and attempt < self.max_attempts:
                    retry.append(writes[i])
                else:
                    suffix = f" after {attempt} attempts" if c in RETRYABLE_WRITE_CODES else ""
                    out.fail(self._rel(writes[i]), f"{_code_name(c)}{suffix} {_detail(parsed[i].message)}")
            writes = retry
            if writes:
                self._backoff(attempt)
        return out


def _detail(text: str) -> str:
    return " ".join(str(text).split())[:300]
