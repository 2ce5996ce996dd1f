"""A backup location: where each backup's chunks and manifest live, and how to reach them.

Layout below the storage prefix:

    backups/<backup_id>/manifest.fbm           written LAST; without it the backup is not complete
    backups/<backup_id>/chunks/<chunk_id>.fbc  chunk objects

backup_id = "YYYYMMDDTHHMMSSZ-<8 hex>" (UTC creation time + random), so key order is time order.
chunk_id is deterministic for a unit of work, so a redelivered task rewrites the same key.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, Iterable, Iterator

from firebackup.crypto.keys import DataKey, KeyEncryptionKey
from firebackup.engine.ports import committed_entry
from firebackup.errors import (
    BackupNotFound,
    BadKey,
    FireBackupError,
    ObjectNotFound,
    OperationFailed,
    UsageError,
    WrongKeyOrTampered,
)
from firebackup.storage.base import ObjectInfo, ObjectWriter, Storage

if TYPE_CHECKING:
    from firebackup.format.chunk import ChunkWriter
    from firebackup.format.manifest import ChunkEntry, Manifest

BACKUPS_PREFIX = "backups/"
MANIFEST_NAME = "manifest.fbm"
CHUNKS_DIR = "chunks/"
CHUNK_SUFFIX = ".fbc"

BACKUP_ID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
# Chunk ids become object keys; keep them to a safe, short alphabet.
CHUNK_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SKIP_CHUNKS_AFTER = 200


def check_backup_id(backup_id: str) -> str:
    """Return backup_id if it has the form YYYYMMDDTHHMMSSZ-xxxxxxxx, else raise UsageError."""
    if not isinstance(backup_id, str) or not BACKUP_ID_RE.match(backup_id):
        raise UsageError(
            f"not a backup id: {backup_id!r} (expected YYYYMMDDTHHMMSSZ-xxxxxxxx; "
            f"run 'firebackup list' to see the ids)"
        )
    return backup_id


def check_chunk_id(chunk_id: str) -> str:
    if not isinstance(chunk_id, str) or not CHUNK_ID_RE.match(chunk_id):
        raise UsageError(f"not a chunk id: {chunk_id!r} (use 1-64 characters of A-Z a-z 0-9 _ -)")
    return chunk_id


@dataclass(frozen=True)
class BackupSummary:
    """One line of `list`: the manifest's public summary (readable without a key).

    `problem` is set, and the other fields may be None, when the manifest could not be read.
    """

    backup_id: str
    created_at: str | None = None
    read_time: str | None = None
    documents: int | None = None
    bytes_stored: int | None = None
    encrypted: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "backup_id": self.backup_id,
            "created_at": self.created_at,
            "read_time": self.read_time,
            "documents": self.documents,
            "bytes_stored": self.bytes_stored,
            "encrypted": self.encrypted,
        }
        for k, v in self.extra.items():
            d.setdefault(k, v)
        if self.problem is not None:
            d["problem"] = self.problem
        return d


@dataclass
class Listing:
    """What list_backups found: complete backups, unreadable manifests, backups with no manifest."""

    backups: list[BackupSummary]
    problems: list[str]
    incomplete: list[str]


class _CountingSink:
    """Passes chunk bytes to the storage upload and counts them (a check on ChunkStats)."""

    __slots__ = ("_writer", "written")

    def __init__(self, writer: ObjectWriter) -> None:
        self._writer = writer
        self.written = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        if n:
            self._writer.write(bytes(data) if not isinstance(data, bytes) else data)
            self.written += n
        return n


class ChunkUpload:
    """Context manager from Repository.open_chunk_writer.

    `with upload as writer:` yields a format.chunk.ChunkWriter streaming into storage; leaving
    the block normally finishes the chunk, commits the object and sets `upload.entry` (a
    ChunkEntry); leaving it with an exception aborts the upload, so nothing appears at the key.
    """

    def __init__(self, repo: Repository, backup_id: str, chunk_id: str, *, kind: str,
                 codec: str | None, level: int | None, data_key: DataKey | None, frame_size: int | None):
        self.repo = repo
        self.backup_id = backup_id
        self.chunk_id = chunk_id
        self.kind = kind
        self.key = repo.chunk_key(backup_id, chunk_id)
        self._codec = codec
        self._level = level
        self._data_key = data_key
        self._frame_size = frame_size
        self._open: tuple[ObjectWriter, _CountingSink, ChunkWriter] | None = None
        self.entry: ChunkEntry | None = None
        self.info: ObjectInfo | None = None

    def __enter__(self) -> ChunkWriter:
        from firebackup.format.chunk import ChunkWriter

        upload = self.repo.storage.open_write(self.key)
        sink = _CountingSink(upload)
        kwargs: dict[str, Any] = {
            "backup_id": self.backup_id,
            "chunk_id": self.chunk_id,
            "kind": self.kind,
            "level": self._level,
            "data_key": self._data_key,
        }
        if self._codec is not None:
            kwargs["codec"] = self._codec
        if self._frame_size is not None:
            kwargs["frame_size"] = self._frame_size
        try:
            writer = ChunkWriter(sink, **kwargs)
        except BaseException:
            upload.abort()
            raise
        self._open = (upload, sink, writer)
        return writer

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        opened, self._open = self._open, None
        if opened is None:
            return
        upload, sink, writer = opened
        if exc_type is not None:
            upload.abort()
            return
        try:
            stats = writer.finish()
            self.info = upload.close()
        except BaseException:
            upload.abort()
            raise
        if sink.written != stats.bytes_stored:
            raise FireBackupError(
                f"chunk {self.chunk_id}: writer reported {stats.bytes_stored} bytes but "
                f"{sink.written} were uploaded to {self.key}; this is a bug, please report it"
            )
        from firebackup.format.manifest import ChunkEntry

        self.entry = ChunkEntry(
            chunk_id=self.chunk_id,
            kind=self.kind,
            key=self.key,
            records=stats.records,
            bytes_raw=stats.bytes_raw,
            bytes_stored=stats.bytes_stored,
            sha256=stats.sha256,
        )


class Repository:
    """Backups at one storage location (see the module docstring for the layout)."""

    # Where the backups sit in the location; pitr.segments.SegmentRepository keeps segments beside them.
    PREFIX = BACKUPS_PREFIX

    def __init__(self, storage: Storage):
        self.storage = storage

    @property
    def url(self) -> str:
        return self.storage.url

    # -- names ---------------------------------------------------------------------------

    @staticmethod
    def new_backup_id(now: dt.datetime | None = None) -> str:
        """A fresh id: UTC creation time + 8 random hex digits, so key order is time order."""
        now = now or dt.datetime.now(dt.timezone.utc)
        if now.tzinfo is None:
            now = now.replace(tzinfo=dt.timezone.utc)
        now = now.astimezone(dt.timezone.utc)
        return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"

    @classmethod
    def backup_prefix(cls, backup_id: str) -> str:
        return f"{cls.PREFIX}{check_backup_id(backup_id)}/"

    @classmethod
    def manifest_key(cls, backup_id: str) -> str:
        return cls.backup_prefix(backup_id) + MANIFEST_NAME

    @classmethod
    def chunks_prefix(cls, backup_id: str) -> str:
        return cls.backup_prefix(backup_id) + CHUNKS_DIR

    @classmethod
    def chunk_key(cls, backup_id: str, chunk_id: str) -> str:
        return cls.chunks_prefix(backup_id) + check_chunk_id(chunk_id) + CHUNK_SUFFIX

    # -- chunks --------------------------------------------------------------------------

    def open_chunk_writer(self, backup_id: str, chunk_id: str, *, kind: str = "docs",
                          codec: str | None = None, level: int | None = None, data_key: DataKey | None = None,
                          frame_size: int | None = None) -> ChunkUpload:
        """Stream one chunk into storage: `with repo.open_chunk_writer(...) as w: w.add(rec)`.

        The same (backup_id, chunk_id) always writes the same key, replacing what is there,
        so a redelivered task is harmless. After the block, `.entry` holds the ChunkEntry.
        """
        return ChunkUpload(self, backup_id, chunk_id, kind=kind, codec=codec, level=level,
                           data_key=data_key, frame_size=frame_size)

    def write_chunk(self, backup_id: str, chunk_id: str, records: Iterable[bytes], *, kind: str = "docs",
                    codec: str | None = None, level: int | None = None, data_key: DataKey | None = None,
                    frame_size: int | None = None) -> ChunkEntry:
        """Write an iterable of records as one chunk and return its ChunkEntry."""
        upload = self.open_chunk_writer(backup_id, chunk_id, kind=kind, codec=codec, level=level,
                                        data_key=data_key, frame_size=frame_size)
        with upload as writer:
            writer.add_many(records)
        return committed_entry(upload)

    def iter_records(self, backup_id: str, entry: ChunkEntry, data_key: DataKey | None) -> Iterator[bytes]:
        """Yield the chunk's records in order, streaming; integrity errors name chunk and frame."""
        for records in self.iter_record_batches(backup_id, entry, data_key):
            yield from records

    def iter_record_batches(self, backup_id: str, entry: ChunkEntry,
                            data_key: DataKey | None) -> Iterator[list[bytes]]:
        """iter_records() in lists of records as they complete (for hot loops: no step per record)."""
        from firebackup.format.chunk import read_chunk_batches

        stream = self.open_chunk(entry)
        try:
            yield from read_chunk_batches(stream, backup_id=backup_id, chunk_id=entry.chunk_id,
                                          data_key=data_key, where=entry.key)
        finally:
            stream.close()

    def open_chunk(self, entry: ChunkEntry) -> BinaryIO:
        """Open the chunk object of a manifest entry for reading (the caller closes it)."""
        try:
            return self.storage.open_read(entry.key)
        except ObjectNotFound as e:
            raise ObjectNotFound(
                entry.key, f"chunk {entry.chunk_id} is missing: no object at {entry.key} in {self.url}"
            ) from e

    def list_chunk_objects(self, backup_id: str) -> dict[str, ObjectInfo]:
        """Every object under the backup's chunks/ folder, by key."""
        return {info.key: info for info in self.storage.list(self.chunks_prefix(backup_id))}

    # -- manifests -----------------------------------------------------------------------

    def write_manifest(self, manifest: Manifest, data_key: DataKey | None,
                       kek: KeyEncryptionKey | None) -> ObjectInfo:
        """Seal and store the manifest. Call it LAST: its presence is what makes a backup complete.

        First checks (one listing) that every chunk it names is stored with the recorded size,
        so a backup with a lost or half-written chunk is never marked complete (OperationFailed).
        """
        from firebackup.format.manifest import encode_manifest

        stored = self.list_chunk_objects(manifest.backup_id)
        for entry in manifest.chunks:
            info = stored.get(entry.key)
            if info is None or info.size != entry.bytes_stored:
                found = "missing" if info is None else f"{info.size} bytes, expected {entry.bytes_stored}"
                raise OperationFailed(
                    f"backup {manifest.backup_id}: chunk {entry.chunk_id} at {entry.key} is {found}; "
                    f"not writing the manifest (re-run the chunk task, then finalize again)"
                )
        data = encode_manifest(manifest, data_key=data_key, kek=kek)
        return self.storage.put(self.manifest_key(manifest.backup_id), data)

    def read_manifest_bytes(self, backup_id: str) -> bytes:
        key = self.manifest_key(backup_id)
        try:
            return self.storage.get(key)
        except ObjectNotFound as e:
            raise BackupNotFound(self._not_found_message(backup_id)) from e

    def _not_found_message(self, backup_id: str) -> str:
        try:
            incomplete = any(True for _ in self.storage.list(self.backup_prefix(backup_id)))
        except FireBackupError:
            incomplete = False
        if incomplete:
            return (f"backup {backup_id} at {self.url} is incomplete (it has no manifest); "
                    f"run 'firebackup list --from {self.url}' to see complete backups")
        return (f"no backup {backup_id} at {self.url}; "
                f"run 'firebackup list --from {self.url}' to see the ids")

    def read_summary(self, backup_id: str) -> dict[str, Any]:
        """The manifest's public summary (no key needed): backup_id, created_at, read_time,
        documents, bytes_stored, encrypted, kek_id, dek_id, format_version."""
        from firebackup.format.manifest import read_manifest_summary

        data = self.read_manifest_bytes(backup_id)
        return read_manifest_summary(data, where=self.manifest_key(backup_id))

    def read_manifest(self, backup_id: str, kek: KeyEncryptionKey | None, *,
                      allow_unencrypted: bool = False) -> tuple[Manifest, DataKey | None]:
        """Return (Manifest, DataKey | None); BackupNotFound, BadKey, WrongKeyOrTampered on failure.

        With a kek, an unencrypted backup is refused (BadKey) unless allow_unencrypted (format.md).
        """
        from firebackup.format.manifest import decode_manifest, read_manifest_summary

        key = self.manifest_key(backup_id)
        data = self.read_manifest_bytes(backup_id)
        if kek is None:
            summary = read_manifest_summary(data, where=key)
            if summary.get("encrypted"):
                kek_id = str(summary.get("kek_id") or "")
                how = (f"--kms-key {kek_id[4:]}" if kek_id.startswith("kms:")
                       else "--key-file with the key it was made with")
                raise BadKey(f"backup {backup_id} is encrypted (key {kek_id}): pass {how}")
        manifest, data_key = decode_manifest(data, kek=kek, where=key, allow_unencrypted=allow_unencrypted)
        if manifest.backup_id != backup_id:
            raise WrongKeyOrTampered(
                f"manifest names backup {manifest.backup_id}: it was copied from another backup",
                where=key,
            )
        return manifest, data_key

    # -- listing and deleting ------------------------------------------------------------

    def backup_ids(self) -> tuple[list[str], list[str]]:
        """(complete ids, incomplete ids), each sorted; complete means a manifest object exists.

        A backup's chunk keys sort before its manifest ("chunks/" < "manifest.fbm"); after a few
        of them the listing jumps past the rest, so listing costs about one page per backup
        rather than one page per thousand chunks.
        """
        seen: dict[str, bool] = {}
        start_after: str | None = None
        while True:
            restart = None
            run_id, run = None, 0
            for info in self.storage.list(self.PREFIX, start_after=start_after):
                rest = info.key[len(self.PREFIX):]
                backup_id, _, tail = rest.partition("/")
                if not BACKUP_ID_RE.match(backup_id):
                    continue  # not ours; never guess about foreign objects
                seen[backup_id] = seen.get(backup_id, False) or tail == MANIFEST_NAME
                if tail.startswith(CHUNKS_DIR):
                    run = run + 1 if backup_id == run_id else 1
                    run_id = backup_id
                    if run >= _SKIP_CHUNKS_AFTER:
                        # Every valid chunk key sorts below "~" (chunk ids are [A-Za-z0-9_-]).
                        restart = f"{self.PREFIX}{backup_id}/{CHUNKS_DIR}~"
                        break
            if restart is None:
                break
            start_after = restart
        complete = sorted(b for b, has in seen.items() if has)
        incomplete = sorted(b for b, has in seen.items() if not has)
        return complete, incomplete

    def scan(self) -> Listing:
        """Read every complete backup's public summary; unreadable manifests become problems."""
        from firebackup.format.manifest import read_manifest_summary

        complete, incomplete = self.backup_ids()
        backups: list[BackupSummary] = []
        problems: list[str] = []
        for backup_id in complete:
            key = self.manifest_key(backup_id)
            try:
                summary = read_manifest_summary(self.storage.get(key), where=key)
                if summary.get("backup_id", backup_id) != backup_id:
                    raise FireBackupError(
                        f"manifest names backup {summary.get('backup_id')}, not {backup_id}"
                    )
            except ObjectNotFound:
                continue  # deleted while we listed
            except FireBackupError as e:
                problem = _one_line(f"{key}: unreadable manifest: {e}")
                problems.append(problem)
                backups.append(BackupSummary(backup_id=backup_id, problem=problem))
                continue
            backups.append(_summary_from_dict(backup_id, summary))
        return Listing(backups=backups, problems=problems, incomplete=incomplete)

    def list_backups(self) -> list[BackupSummary]:
        """Complete backups sorted by id; an unreadable manifest gives an entry with .problem set."""
        return self.scan().backups

    def delete_backup(self, backup_id: str) -> int:
        """Delete the manifest first (so the backup stops being complete), then its chunks.

        Returns the number of objects deleted; BackupNotFound if there was nothing.
        """
        prefix = self.backup_prefix(backup_id)
        keys = [info.key for info in self.storage.list(prefix)]
        if not keys:
            raise BackupNotFound(self._not_found_message(backup_id))
        manifest = self.manifest_key(backup_id)
        if manifest in keys:
            self.storage.delete(manifest)
        for key in keys:
            if key != manifest:
                self.storage.delete(key)
        return len(keys)


_SUMMARY_FIELDS = ("backup_id", "created_at", "read_time", "documents", "bytes_stored", "encrypted")


def _summary_from_dict(backup_id: str, d: dict[str, Any]) -> BackupSummary:
    extra = {k: v for k, v in d.items() if k not in _SUMMARY_FIELDS}
    return BackupSummary(
        backup_id=backup_id,
        created_at=d.get("created_at"),
        read_time=d.get("read_time"),
        documents=d.get("documents"),
        bytes_stored=d.get("bytes_stored"),
        encrypted=d.get("encrypted"),
        extra=extra,
    )


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
