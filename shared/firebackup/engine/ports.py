"""The engine's ports: what it needs of a backup repository (engine/repository.py is the adapter)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterator, Protocol

from firebackup.crypto.keys import DataKey, KeyEncryptionKey
from firebackup.format.manifest import ChunkEntry, Manifest
from firebackup.storage.base import Storage


class BackupRepository(Protocol):
    storage: Storage

    def new_backup_id(self, now: dt.datetime | None = None) -> str:
        """A new backup id that sorts by creation time."""

    def open_chunk_writer(self, backup_id: str, chunk_id: str, *, kind: str = "docs", codec: str | None = None,
                          level: int | None = None, data_key: DataKey | None = None,
                          frame_size: int | None = None) -> Any:
        """A context manager writing one chunk object; its `entry` is set on a clean exit."""

    def write_manifest(self, manifest: Manifest, data_key: DataKey | None, kek: KeyEncryptionKey | None) -> Any:
        """Write the manifest LAST: its presence makes the backup complete."""

    def read_manifest(self, backup_id: str, kek: KeyEncryptionKey | None) -> tuple[Manifest, DataKey | None]:
        """The authenticated manifest and the backup's data key."""

    def iter_record_batches(self, backup_id: str, entry: ChunkEntry, data_key: DataKey | None
                            ) -> Iterator[list[bytes]]:
        """A chunk's records, verified, in batches."""

    def manifest_key(self, backup_id: str) -> str:
        """The storage key of the backup's manifest."""

    def delete_backup(self, backup_id: str) -> int:
        """Delete the backup's objects (manifest first); return how many were deleted."""
