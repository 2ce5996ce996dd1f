"""The engine's document source: one database read at one instant, and its Firestore adapter.

    source.server_time()            the instant a new backup reads at (the server's clock)
    snap = source.snapshot(t)       every read below is at t
    snap.plan_ranges(collections, partitions=n)
    snap.responses(rng, after=cursor, limit=n)   a RunQuery response stream (iterable of raw
                                    response bytes, cancel() to stop it)
    snap.count_documents(collections, on_stream=...)

FirestoreSource serves them from a Firestore connection (firestore/reader.py does the work);
demo.GeneratedSource from generated documents, so `demo-storage` runs the same handlers.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol

from firebackup.firestore.grpc import FirestoreConnection
from firebackup.firestore.reader import DocRange, SnapshotReader

if TYPE_CHECKING:
    from firebackup.firestore.auth import ImportOutcome


class ResponseStream(Protocol):
    def __iter__(self) -> Iterator[bytes]: ...

    def cancel(self) -> None:
        """Stop the stream from any thread; iteration then ends or raises."""


class Snapshot(Protocol):
    def plan_ranges(self, collections: list[str] | None = None, *, partitions: int = 1) -> list[DocRange]:
        """Ranges of document names that together hold every document to back up, each once."""

    def responses(self, rng: DocRange, *, after: str | None = None, limit: int | None = None) -> ResponseStream:
        """The documents of rng after `after` in name order, as RunQuery responses."""

    def count_documents(self, collections: list[str] | None = None, *,
                        on_stream: Callable[[ResponseStream], None] | None = None) -> int:
        """How many documents plan_ranges(collections) covers."""


class DocumentSource(Protocol):
    project: str
    database: str
    documents_path: str

    def server_time(self) -> dt.datetime:
        """The source's current time; a snapshot at it sees every committed write."""

    def snapshot(self, read_time: dt.datetime) -> Snapshot:
        """A view of the source as it was at read_time."""

    def close(self) -> None: ...


class FirestoreSource:
    """A DocumentSource over one Firestore connection (owned: close() closes it)."""

    def __init__(self, conn: FirestoreConnection):
        self.conn = conn
        self.project = conn.project
        self.database = conn.database
        self.documents_path = conn.documents_path

    def server_time(self) -> dt.datetime:
        return SnapshotReader.server_time(self.conn)

    def snapshot(self, read_time: dt.datetime) -> SnapshotReader:
        return SnapshotReader(self.conn, read_time)

    def close(self) -> None:
        self.conn.close()




class FirebaseAuthUsers:
    """Firebase Auth for the engine (backup's AuthUsers, restore's AuthImport) over firestore/auth.py.

    app None: the project's default firebase_admin app (Application Default Credentials, or the emulator).
    """

    def __init__(self, app: Any = None):
        self.app = app

    def export_users(self, project: str) -> Iterator[bytes]:
        from firebackup.firestore.auth import auth_app, iter_user_records

        return iter_user_records(project, app=auth_app(project, self.app))

    def hash_config(self, project: str) -> dict[str, Any] | None:
        from firebackup.firestore.auth import auth_app, get_hash_config

        return get_hash_config(project, app=auth_app(project, self.app))

    def import_users(self, project: str, records: Iterable[bytes], hash_config: dict[str, Any] | None, *,
                     dry_run: bool, mode: str) -> ImportOutcome:
        from firebackup.firestore.auth import import_user_records

        return import_user_records(project, records, hash_config, app=self.app, dry_run=dry_run, mode=mode)
