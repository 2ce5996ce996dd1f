"""Adapters of the engine's source ports (engine/ports.py) over Firestore and Firebase Auth.

FirestoreSource is a DocumentSource over a Firestore connection (firestore/reader.py does the
work); FirebaseAuthUsers is the backup's AuthUsers and the restore's AuthImport over
firestore/auth.py. (demo.GeneratedSource is the other DocumentSource: generated documents.)
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from firebackup.firestore.grpc import FirestoreConnection
from firebackup.firestore.reader import SnapshotReader

if TYPE_CHECKING:
    from firebackup.firestore.auth import ImportOutcome


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

    app None: the project's default firebase_admin app (Application Default Credentials, or the
    emulator at emulator_host).
    """

    def __init__(self, app: Any = None, *, emulator_host: str | None = None):
        self.app, self.emulator_host = app, emulator_host

    def export_users(self, project: str) -> Iterator[bytes]:
        from firebackup.firestore.auth import iter_user_records

        return iter_user_records(project, emulator_host=self.emulator_host, app=self.app)

    def hash_config(self, project: str) -> dict[str, Any] | None:
        from firebackup.firestore.auth import get_hash_config

        return get_hash_config(project, emulator_host=self.emulator_host, app=self.app)

    def import_users(self, project: str, records: Iterable[bytes], hash_config: dict[str, Any] | None, *,
                     dry_run: bool, mode: str) -> ImportOutcome:
        from firebackup.firestore.auth import import_user_records

        return import_user_records(project, records, hash_config, emulator_host=self.emulator_host, app=self.app,
                                   dry_run=dry_run, mode=mode)
