"""Read a whole Firestore database at one instant, as raw Document bytes, in resumable ranges.

Every read carries the same read_time, so a backup is one consistent snapshot. Documents
come from kindless all-descendants queries (every collection, every depth, including
subcollections under documents that do not exist) ordered by __name__; a range is a slice
of that order bounded by document names, and a reader hands on the rest of a range with
the name of the last document it read (a cursor), so work can be split and resumed.

Range bounds for a root collection X are the names X/MIN and X\\0/MIN, where MIN is the
smallest possible document id (Datastore numeric ids sort before strings) — the same
bounds the Firestore SDKs use for Query.recursive() / recursiveDelete.

count_documents asks the server to COUNT the same ranges at the same read_time (a total
for a progress bar, without reading the documents).

Every call is retried under the reader's RetryPolicy (transient errors only); a document
stream that fails mid-way resumes after the last document it yielded (responses()).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from firebackup.errors import NotSupportedByServer, SourceError, UsageError
from firebackup.firestore import protos
from firebackup.firestore.documents import (
    datetime_to_timestamp,
    decode_timestamp,
    document_name,
    first_len_field,
    run_query_document,
    timestamp_to_datetime,
)
from firebackup.firestore.grpc import FirestoreConnection, ResponseStream, ResumableQuery
from firebackup.retry import RetryPolicy

MIN_ID = "__id-9223372036854775808__"
# A collection id nobody uses; only the responses' read_time / status matter.
_PROBE_COLLECTION = "firebackup-read-time-probe"
_NUMERIC_ID = re.compile(r"^__id(-?\d+)__$")

_SQ = protos.StructuredQuery
_NAME_FIELD = _SQ.FieldReference(field_path="__name__")
_SAQ = protos.StructuredAggregationQuery
_COUNT = _SAQ.Aggregation(alias="n", count=_SAQ.Aggregation.Count())


@dataclass(frozen=True)
class DocRange:
    """Documents with lo <= __name__ < hi in __name__ order (None: unbounded); names are full.

    `collection` is the root collection the range belongs to (informational, for the manifest).
    """

    collection: str | None = None
    lo: str | None = None
    hi: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"collection": self.collection, "lo": self.lo, "hi": self.hi}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DocRange":
        return cls(collection=d.get("collection"), lo=d.get("lo"), hi=d.get("hi"))


def check_collection_id(collection_id: str) -> str:
    """A root collection id as --collections takes it; UsageError if it cannot be one."""
    if not collection_id or "/" in collection_id or collection_id in (".", ".."):
        raise UsageError(
            f"not a root collection id: {collection_id!r} (name root collections, e.g. --collections users,orders)"
        )
    if len(collection_id.encode("utf-8")) > 1500:
        raise UsageError(f"collection id longer than 1500 bytes: {collection_id[:40]!r}...")
    return collection_id


def name_sort_key(name: str) -> tuple[tuple[int, int, bytes], ...]:
    """Firestore's order of document names: segment by segment, numeric ids before strings."""
    key: list[tuple[int, int, bytes]] = []
    for seg in name.split("/"):
        m = _NUMERIC_ID.match(seg)
        key.append((0, int(m.group(1)), b"") if m else (1, 0, seg.encode("utf-8")))
    return tuple(key)


def _ts_pb(when: dt.datetime) -> Any:
    seconds, nanos = datetime_to_timestamp(when)
    return protos.Timestamp(seconds=seconds, nanos=nanos)


class SnapshotReader:
    """Reads one database at one read_time; thread-safe (it only holds the connection).

    `retry` governs every call (default: RetryPolicy()); transient errors are retried,
    permanent ones (SourceAccessDenied, SnapshotTooOld, ...) surface at once.
    """

    def __init__(self, conn: FirestoreConnection, read_time: dt.datetime, *, retry: RetryPolicy | None = None):
        if read_time.tzinfo is None:
            raise ValueError("read_time must be timezone-aware (UTC)")
        self.conn = conn
        self.read_time = read_time
        self.retry = retry or RetryPolicy()
        self._read_time_pb = _ts_pb(read_time)
        self._partitions_supported: bool | None = None

    # -- the snapshot instant ------------------------------------------------------------

    @staticmethod
    def server_time(conn: FirestoreConnection, *, retry: RetryPolicy | None = None) -> dt.datetime:
        """The server's current time, truncated to the microsecond (a valid read_time).

        Taken from the read_time of a one-document lookup (a point read: cheap everywhere,
        needs only read permission), so it is the server's clock, not ours. Firestore
        accepts any microsecond within its version retention (1 hour; whole minutes up to
        7 days with point-in-time recovery).
        """
        req = protos.BatchGetDocumentsRequest(
            database=conn.database_path, documents=[f"{conn.documents_path}/{_PROBE_COLLECTION}/probe"]
        )

        def probe() -> bytes | None:
            for resp in conn.batch_get_documents(req):
                found = first_len_field(resp, 4, "BatchGetDocumentsResponse")  # field 4: read_time
                if found is not None:
                    return found
            return None

        raw = (retry or RetryPolicy()).call(probe)
        if raw is None:
            raise SourceError(f"Firestore at {conn.host} sent no read_time for {conn.database_path}")
        return timestamp_to_datetime(*decode_timestamp(raw))

    @classmethod
    def at_server_time(cls, conn: FirestoreConnection, *, retry: RetryPolicy | None = None) -> "SnapshotReader":
        return cls(conn, cls.server_time(conn, retry=retry), retry=retry)

    # -- planning ------------------------------------------------------------------------

    def doc_name(self, relative: str) -> str:
        return f"{self.conn.documents_path}/{relative}"

    def root_collections(self) -> list[str]:
        """Root collection ids at read_time, sorted as Firestore orders them."""
        ids: list[str] = []
        token = ""
        while True:
            req = protos.ListCollectionIdsRequest(
                parent=self.conn.documents_path, page_size=1000, page_token=token, read_time=self._read_time_pb
            )
            resp = protos.ListCollectionIdsResponse.FromString(self.retry.call(self.conn.list_collection_ids, req))
            ids.extend(resp.collection_ids)
            token = resp.next_page_token
            if not token:
                break
        return sorted(set(ids), key=lambda c: name_sort_key(c))

    def collection_bounds(self, collection_id: str) -> DocRange:
        """The range holding collection_id and everything below it, at every depth."""
        check_collection_id(collection_id)
        return DocRange(
            collection=collection_id,
            lo=self.doc_name(f"{collection_id}/{MIN_ID}"),
            hi=self.doc_name(f"{collection_id}\0/{MIN_ID}"),
        )

    def plan_ranges(self, collections: list[str] | None = None, *, partitions: int = 1) -> list[DocRange]:
        """Ranges that together cover the requested documents exactly once, in name order.

        collections=None means the whole database. Where the server implements PartitionQuery
        and partitions > 1, each root collection's range is split at its cut points so the
        ranges can be read in parallel. Where it does not (the emulator), parallel streams
        only compete for the same server, and every query there costs a scan of the whole
        database, so the whole database is ONE range (one query) and chunking happens
        client-side along the stream.
        """
        if collections:
            names = sorted({check_collection_id(c) for c in collections}, key=name_sort_key)
            ranges = [self.collection_bounds(c) for c in names]
            if partitions <= 1 or not self.partition_query_supported(names[0]):
                return ranges
        else:
            if partitions <= 1 or not self.partition_query_supported(None):
                return [DocRange()]
            names = self.root_collections()
            if not names:
                return [DocRange()]
            # Tile the whole key space at root collections, so no document can fall between ranges.
            ranges = []
            for i, c in enumerate(names):
                lo = None if i == 0 else self.doc_name(f"{c}/{MIN_ID}")
                hi = self.doc_name(f"{names[i + 1]}/{MIN_ID}") if i + 1 < len(names) else None
                ranges.append(DocRange(collection=c, lo=lo, hi=hi))
        out: list[DocRange] = []
        for rng in ranges:
            out.extend(self.split(rng, partitions))
        return out

    def partition_query_supported(self, collection_id: str | None) -> bool:
        """False where the server answers PartitionQuery with UNIMPLEMENTED (the emulator)."""
        if self._partitions_supported is None:
            try:
                self._partition_cuts(collection_id or self._PROBE_GROUP, 1)
                self._partitions_supported = True
            except NotSupportedByServer:
                self._partitions_supported = False
            except SourceError as e:
                if e.grpc_code != "INVALID_ARGUMENT":
                    raise
                self._partitions_supported = False
        return self._partitions_supported

    _PROBE_GROUP = _PROBE_COLLECTION

    def split(self, rng: DocRange, partitions: int) -> list[DocRange]:
        """Split a collection's range at PartitionQuery cut points; [rng] if the server cannot."""
        if not rng.collection or partitions <= 1:
            return [rng]
        try:
            cuts = self._partition_cuts(rng.collection, partitions - 1)
        except NotSupportedByServer:
            return [rng]
        except SourceError as e:
            if e.grpc_code == "INVALID_ARGUMENT":
                return [rng]
            raise
        # Only cut points inside this collection's subtree; collection groups span the database.
        prefix = self.doc_name(rng.collection) + "/"
        inside = list(dict.fromkeys(c for c in cuts if c.startswith(prefix)))  # in order, without repeats
        if not inside:
            return [rng]
        bounds = [rng.lo, *inside, rng.hi]
        return [DocRange(rng.collection, bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]

    def _partition_cuts(self, collection_id: str, count: int) -> list[str]:
        """Cut points in the server's order. One page is asked for, because the server orders
        cursors within a page but not across pages; only if it still pages are the pages
        merged by name_sort_key."""
        sq = _SQ(
            from_=[_SQ.CollectionSelector(collection_id=collection_id, all_descendants=True)],
            order_by=[_SQ.Order(field=_NAME_FIELD, direction=_SQ.ASCENDING)],
        )
        pages: list[list[str]] = []
        token = ""
        while True:
            req = protos.PartitionQueryRequest(
                parent=self.conn.documents_path,
                structured_query=sq,
                partition_count=count,
                page_size=count,
                page_token=token,
                read_time=self._read_time_pb,
            )
            resp = protos.PartitionQueryResponse.FromString(self.retry.call(self.conn.partition_query, req))
            pages.append([v.reference_value for cur in resp.partitions for v in cur.values if v.reference_value])
            token = resp.next_page_token
            if not token:
                break
        if len(pages) == 1:
            return pages[0]
        return sorted((c for page in pages for c in page), key=name_sort_key)

    # -- reading -------------------------------------------------------------------------

    def query(self, rng: DocRange, *, after: str | None = None, limit: int | None = None) -> Any:
        """The RunQueryRequest protobuf for rng, resuming after the document named `after`."""
        sq = _SQ(
            from_=[_SQ.CollectionSelector(all_descendants=True)],
            order_by=[_SQ.Order(field=_NAME_FIELD, direction=_SQ.ASCENDING)],
        )
        ref = protos.Value
        if after is not None:
            sq.start_at.CopyFrom(protos.Cursor(values=[ref(reference_value=after)], before=False))
        elif rng.lo is not None:
            sq.start_at.CopyFrom(protos.Cursor(values=[ref(reference_value=rng.lo)], before=True))
        if rng.hi is not None:
            sq.end_at.CopyFrom(protos.Cursor(values=[ref(reference_value=rng.hi)], before=True))
        if limit is not None:
            sq.limit.value = limit
        return protos.RunQueryRequest(
            parent=self.conn.documents_path, structured_query=sq, read_time=self._read_time_pb
        )

    def responses(self, rng: DocRange, *, after: str | None = None, limit: int | None = None) -> ResumableQuery:
        """The raw RunQueryResponse stream for rng (see run_query_document); cancel() ends it.

        A transient error mid-stream re-issues the query after the last document yielded (its
        name is the cursor), at the same read_time, with what is left of the limit: the
        caller sees one stream, every document once, in name order.
        """

        def request_after(last: bytes | None, count: int) -> Any:
            left = None if limit is None else limit - count
            if left == 0:  # every document asked for was delivered; only the stream's end was lost
                return None
            cursor = after if last is None else document_name(run_query_document(last) or b"")
            return self.query(rng, after=cursor, limit=left)

        return self.conn.resumable_query(request_after, retry=self.retry)

    def documents(self, rng: DocRange, *, after: str | None = None, limit: int | None = None) -> Iterator[bytes]:
        """Yield the range's documents at read_time as the Document bytes the server sent.

        Closing the generator early cancels the server stream.
        """
        stream = self.responses(rng, after=after, limit=limit)
        try:
            for resp in stream:
                doc = run_query_document(resp)
                if doc is not None:
                    yield doc
        finally:
            stream.cancel()

    def count_documents(
        self,
        collections: list[str] | None = None,
        *,
        on_stream: Callable[[ResponseStream], None] | None = None,
    ) -> int:
        """How many documents all_documents(collections) yields, counted by the server at read_time.

        One COUNT aggregation per unsplit range (the whole database: one kindless
        all-descendants query from the root) over exactly the StructuredQuery that reads the
        range, so the total matches what a backup reads. Server-side it is an index scan
        (billed one read per 1000 index entries). on_stream receives each server stream
        before it is read, so another thread can cancel() it.
        """
        # The emulator accepts this as is: kindless, all descendants, from the root, with
        # the range's __name__ order and cursors, at a read_time (tests/integration/backup/
        # test_backup_progress_total.py). It refuses the cursors without the order_by
        # ("Cursor has too many values"), so the query is reused whole, not trimmed.
        total = 0
        for rng in self.plan_ranges(collections):
            total += self.retry.call(self._count_range, rng, on_stream)
        return total

    def _count_range(self, rng: DocRange, on_stream: Callable[[ResponseStream], None] | None) -> int:
        run = self.query(rng)
        req = protos.RunAggregationQueryRequest(
            parent=run.parent,
            structured_aggregation_query=_SAQ(structured_query=run.structured_query, aggregations=[_COUNT]),
            read_time=run.read_time,
        )
        stream = self.conn.run_aggregation_query(req)
        if on_stream is not None:
            on_stream(stream)
        count = None
        try:
            for raw in stream:
                resp = protos.RunAggregationQueryResponse.FromString(raw)
                if resp.HasField("result"):
                    count = int(resp.result.aggregate_fields[_COUNT.alias].integer_value)
        finally:
            stream.cancel()
        if count is None:
            raise SourceError(
                f"RunAggregationQuery on {self.conn.database_path} at {self.conn.host} returned no count; "
                "retry, or count without it (the server may not support COUNT here)"
            )
        return count

    def all_documents(self, collections: list[str] | None = None) -> Iterator[bytes]:
        """Every requested document in name order (one stream per range; for tests and tools)."""
        for rng in self.plan_ranges(collections):
            yield from self.documents(rng)

