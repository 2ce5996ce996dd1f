"""The ports the engine's task handlers are written against, with their contracts.

    DocumentSource     what a backup reads: the source's clock and Snapshots of it at one read_time
                       (engine.sources: FirestoreSource; engine.demo: GeneratedSource)
    Snapshot           one read_time's view: ranges to split into, document streams, a COUNT
    SourceConnection   a Firestore database as firestore.reader.SnapshotReader reads it
                       (firestore.grpc.FirestoreConnection)
    DocumentTarget     a Firestore database written in bulk (the same connection, to the target)
    BackupRepository   where a backup's chunks and manifest live (engine.repository.Repository)
    KeyEncryptionKey   wraps each backup's data key (crypto.keys: LocalKey, KmsKey)

Requests go out as protobuf messages or their serialized bytes; responses come back as the
exact bytes the server sent (firestore.documents reads the few fields the engine needs), so
no port decodes documents on the hot path. Every member raises only firebackup.errors types:
an adapter translates its vendor's errors where they arise (SourceError and its subclasses for
Firestore, StorageError for storage, IntegrityError for damaged bytes).
"""

from __future__ import annotations

import datetime as dt
from types import TracebackType
from typing import Callable, Iterable, Iterator, Mapping, Protocol, TypeAlias, runtime_checkable

from firebackup.crypto.keys import DataKey, KeyEncryptionKey
from firebackup.errors import FireBackupError
from firebackup.format.chunk import ChunkWriter
from firebackup.firestore.grpc import RequestAfter
from firebackup.firestore.reader import DocRange
from firebackup.retry import RetryPolicy
from firebackup.format.manifest import ChunkEntry, Manifest
from firebackup.storage.base import ObjectInfo, Storage

__all__ = [
    "BackupRepository",
    "ChunkUploadHandle",
    "committed_entry",
    "DocumentSource",
    "DocumentTarget",
    "Snapshot",
    "SourceConnection",
    "KeyEncryptionKey",
    "ProtoMessage",
    "ServerStream",
    "WireRequest",
]


class ProtoMessage(Protocol):
    """A protobuf request message (firebackup.firestore.protos builds them)."""

    def SerializeToString(self) -> bytes: ...


# What a Firestore port takes as a request: a message, or the bytes it serializes to.
WireRequest: TypeAlias = bytes | ProtoMessage


@runtime_checkable
class ServerStream(Protocol):
    """The raw response messages of one server-streaming call, as bytes, in order.

    Iterating may raise a firebackup.errors type (translated, like every port error).
    cancel() ends the stream from any thread; it is a no-op once the stream has finished,
    and the caller cancels a stream it stops reading early so the server stops sending.
    """

    def __iter__(self) -> Iterator[bytes]: ...

    def __next__(self) -> bytes: ...

    def cancel(self) -> None:
        """Stop the server stream; thread-safe, idempotent."""


class Snapshot(Protocol):
    """A document source as it was at one read_time; every read below sees exactly that state."""

    def plan_ranges(self, collections: list[str] | None = None, *, partitions: int = 1) -> list[DocRange]:
        """Ranges of document names that together hold every document to back up, each once.

        collections None: every root collection (and documents under missing parents); else
        those roots with all their descendants. partitions: splits per root where the source can.
        """

    def responses(self, rng: DocRange, *, after: str | None = None, limit: int | None = None) -> ServerStream:
        """The documents of rng after `after` (a document name), in name order, as RunQuery responses."""

    def count_documents(self, collections: list[str] | None = None, *,
                        on_stream: Callable[[ServerStream], None] | None = None) -> int:
        """How many documents plan_ranges(collections) covers; on_stream gets the stream, to cancel it."""


class DocumentSource(Protocol):
    """What a backup reads: one database, at an instant it chooses (one backup = one snapshot)."""

    @property
    def project(self) -> str:
        """The Google Cloud project id."""

    @property
    def database(self) -> str:
        """The database id ("(default)" for the default database)."""

    @property
    def documents_path(self) -> str:
        """projects/<project>/databases/<database>/documents: every document name starts with it."""

    def server_time(self) -> dt.datetime:
        """The source's current time; a snapshot at it sees every write committed before."""

    def snapshot(self, read_time: dt.datetime) -> Snapshot:
        """The source as it was at read_time."""

    def close(self) -> None:
        """Release what the source holds open."""


@runtime_checkable
class SourceConnection(Protocol):
    """One Firestore database, as firestore.reader.SnapshotReader reads it.

    The reads that pass a read_time (in the request) all see the same snapshot. Thread-safe:
    one source is shared by every worker thread of a process. Raises SourceUnavailable when the
    server cannot be reached, SnapshotTooOld when read_time left the version retention,
    SourceAccessDenied for refused credentials, SourceError otherwise (NotSupportedByServer,
    a SourceError, where the server does not implement a call: PartitionQuery on the emulator).
    """

    @property
    def project(self) -> str:
        """The Google Cloud project id."""

    @property
    def database(self) -> str:
        """The database id ("(default)" for the default database)."""

    @property
    def database_path(self) -> str:
        """projects/<project>/databases/<database>."""

    @property
    def documents_path(self) -> str:
        """<database_path>/documents: the parent of root collections; document names start with it."""

    @property
    def host(self) -> str:
        """The server's host:port, for error messages."""

    def run_query(self, request: WireRequest, *, timeout: float | None = None) -> ServerStream:
        """Stream RunQueryResponse bytes for a RunQueryRequest."""

    def resumable_query(self, request_after: RequestAfter, *, retry: RetryPolicy) -> ServerStream:
        """Stream RunQueryResponse bytes; after a transient error the query is issued again after the
        last document it yielded (request_after(cursor) builds that request), within retry's budget."""

    def run_aggregation_query(self, request: WireRequest, *, timeout: float | None = None) -> ServerStream:
        """Stream RunAggregationQueryResponse bytes (a COUNT for a progress total)."""

    def partition_query(self, request: WireRequest, *, timeout: float | None = None) -> bytes:
        """One PartitionQueryResponse page. Raises NotSupportedByServer where unimplemented."""

    def list_collection_ids(self, request: WireRequest, *, timeout: float | None = None) -> bytes:
        """One ListCollectionIdsResponse page."""

    def batch_get_documents(self, request: WireRequest, *, timeout: float | None = None) -> ServerStream:
        """Stream BatchGetDocumentsResponse bytes (the reader takes the server's time from it)."""

    def close(self) -> None:
        """Release the channel; calls after close() fail."""


@runtime_checkable
class DocumentTarget(Protocol):
    """One Firestore database, written by firestore.batch_writer.BatchWriter during a restore.

    Thread-safe: the writer keeps several batches in flight on one target. Errors as for
    SourceConnection; per-document failures come back inside the BatchWrite response, not raised.
    """

    @property
    def database_path(self) -> str:
        """projects/<project>/databases/<database>: the database the writes land in."""

    @property
    def emulator(self) -> bool:
        """True for the Firestore emulator, which takes smaller requests than Firestore."""

    def batch_write(self, request: WireRequest, *, timeout: float | None = None) -> bytes:
        """Apply up to 500 writes, each on its own; BatchWriteResponse bytes (a status per write)."""

    def batch_get_documents(self, request: WireRequest, *, timeout: float | None = None) -> Iterable[bytes]:
        """BatchGetDocumentsResponse bytes (a dry run asks which documents exist)."""

    def close(self) -> None:
        """Release the channel; calls after close() fail."""


class ChunkUploadHandle(Protocol):
    """One chunk being written: `with handle as writer: writer.add_many(records)`.

    Leaving the block normally finishes the chunk, commits its object and sets `entry`;
    leaving it with an exception aborts the upload, so nothing appears at the chunk's key.
    """

    def __enter__(self) -> ChunkWriter: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    @property
    def entry(self) -> ChunkEntry | None:
        """The manifest entry of the committed chunk; None until the block ended normally."""


def committed_entry(upload: ChunkUploadHandle) -> ChunkEntry:
    """The entry of an upload whose block has ended normally (the contract above sets it then)."""
    entry = upload.entry
    if entry is None:
        raise FireBackupError("a chunk upload ended without its manifest entry; this is a bug, please report it")
    return entry


@runtime_checkable
class BackupRepository(Protocol):
    """The backups at one storage location: chunk objects and manifests, named one way.

    Layout and ids are the repository's alone: the engine asks it for keys and never builds
    one. The same (backup_id, chunk_id) always names the same object, so a redelivered task
    rewrites it. A backup is complete once its manifest exists, so write_manifest comes last.
    Raises UsageError for malformed ids, BackupNotFound for an absent backup, StorageError
    subclasses from the storage, IntegrityError subclasses for damaged or foreign bytes, and
    BadKey / WrongKeyOrTampered for a missing or wrong key.
    """

    @property
    def storage(self) -> Storage:
        """The location's storage (for listings and deletes the repository does not name)."""

    def new_backup_id(self, now: dt.datetime | None = None) -> str:
        """A fresh id, YYYYMMDDTHHMMSSZ-xxxxxxxx (UTC time of `now`, default the current time)."""

    def manifest_key(self, backup_id: str) -> str:
        """The manifest's object key."""

    def chunks_prefix(self, backup_id: str) -> str:
        """The prefix every chunk object of the backup is stored under."""

    def chunk_key(self, backup_id: str, chunk_id: str) -> str:
        """The chunk's object key; UsageError unless chunk_id is 1-64 of [A-Za-z0-9_-]."""

    def open_chunk_writer(
        self,
        backup_id: str,
        chunk_id: str,
        *,
        kind: str = "docs",
        codec: str | None = None,
        level: int | None = None,
        data_key: DataKey | None = None,
        frame_size: int | None = None,
    ) -> ChunkUploadHandle:
        """Stream one chunk into storage (see ChunkUploadHandle); memory stays bounded."""

    def list_chunk_objects(self, backup_id: str) -> Mapping[str, ObjectInfo]:
        """Every object under the backup's chunks prefix, by key."""

    def iter_records(self, backup_id: str, entry: ChunkEntry, data_key: DataKey | None) -> Iterator[bytes]:
        """The chunk's records in order, each frame checked before its records are yielded."""

    def iter_record_batches(
        self, backup_id: str, entry: ChunkEntry, data_key: DataKey | None
    ) -> Iterator[list[bytes]]:
        """iter_records() in lists as frames complete: no Python step per record (hot path)."""

    def write_manifest(
        self, manifest: Manifest, data_key: DataKey | None, kek: KeyEncryptionKey | None
    ) -> ObjectInfo:
        """Seal and store the manifest, after checking every chunk it names is stored whole.

        Both keys or neither. Raises OperationFailed, writing nothing, if a chunk is missing
        or has another size than its entry says.
        """

    def read_manifest(self, backup_id: str, kek: KeyEncryptionKey | None, *,
                      allow_unencrypted: bool = False) -> tuple[Manifest, DataKey | None]:
        """The checked manifest and its unwrapped data key (None for an unencrypted backup).

        Given a kek, an unencrypted manifest raises BadKey unless allow_unencrypted: no downgrade.
        """

    def delete_backup(self, backup_id: str) -> int:
        """Delete the manifest first (the backup stops being complete), then its chunks.

        Returns how many objects were deleted; BackupNotFound if there were none.
        """
