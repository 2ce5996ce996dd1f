"""Segments: captured changes compacted into encrypted objects beside the backups (docs/format.md, "PITR segments").

A segment is stored like a backup of one chunk, under `pitr/<segment_id>/`: a chunk of kind
`changes` (same header, frames, AAD and record batches as any chunk) and a manifest whose body
names the source database and the segment's version range, its data key wrapped by the
organization's KEK. So the CLI reads segments straight from storage with the key file, like
backups, and key rotation re-wraps them like backups.

One record per change: u8 operation (0 create, 1 update, 2 delete) ‖ i64 version instant (ns,
big-endian) ‖ u16 path length ‖ path (UTF-8, relative to documents/) ‖ the Document bytes (none
for a delete).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from firebackup.crypto.keys import DataKey, KeyEncryptionKey
from firebackup.engine.repository import Repository
from firebackup.errors import CorruptData, FireBackupError
from firebackup.firestore.documents import format_rfc3339
from firebackup.format.manifest import Manifest
from firebackup.pitr.events import CREATE, DELETE, UPDATE, ns_datetime
from firebackup.pitr.restore import Change

SEGMENTS_PREFIX = "pitr/"
SEGMENT_CHUNK = "c00000"
_OPS = {CREATE: 0, UPDATE: 1, DELETE: 2}
_OP_NAMES = {v: k for k, v in _OPS.items()}
_HEAD = struct.Struct(">BqH")


# The key to open segments with: one KEK, or a function from the KEK id a manifest names to that KEK
# (the control plane's organization keys: segments written before a change of key still open).
Keys = KeyEncryptionKey | Callable[[str], KeyEncryptionKey] | None


def _kek(repo: Repository, segment_id: str, keys: Keys) -> KeyEncryptionKey | None:
    if keys is None or isinstance(keys, KeyEncryptionKey):
        return keys
    kek_id = repo.read_summary(segment_id).get("kek_id")
    return keys(kek_id) if kek_id else None


class SegmentRepository(Repository):
    """The segments at one storage location: a Repository under pitr/ instead of backups/."""

    PREFIX = SEGMENTS_PREFIX


def encode_change(change: Change) -> bytes:
    path = change.path.encode("utf-8")
    return _HEAD.pack(_OPS[change.operation], change.version, len(path)) + path + (change.document or b"")


def decode_change(raw: bytes, where: str) -> Change:
    if len(raw) < _HEAD.size:
        raise CorruptData(f"{where}: a change record of {len(raw)} bytes is too short")
    op, version, n = _HEAD.unpack_from(raw)
    if op not in _OP_NAMES or len(raw) < _HEAD.size + n:
        raise CorruptData(f"{where}: a change record is malformed")
    path = raw[_HEAD.size:_HEAD.size + n].decode("utf-8")
    body = raw[_HEAD.size + n:]
    operation = _OP_NAMES[op]
    return Change(path, version, operation, None if operation == DELETE else body)


@dataclass(frozen=True)
class SegmentInfo:
    """What a segment holds: its id, source database, first and last version instant (ns), change count."""

    segment_id: str
    project: str
    database: str
    first: int
    last: int
    changes: int


def _info(m: Manifest) -> SegmentInfo:
    span = m.extra.get("pitr") or {}
    if not isinstance(span.get("first"), int) or not isinstance(span.get("last"), int):
        raise CorruptData(f"segment {m.backup_id}: its manifest has no version range")
    return SegmentInfo(m.backup_id, str(m.source.get("project")), str(m.source.get("database") or "(default)"),
                       span["first"], span["last"], m.documents)


def write_segment(repo: SegmentRepository, changes: Sequence[Change], *, project: str, database: str,
                  kek: KeyEncryptionKey | None) -> SegmentInfo:
    """Write changes (in version order) as one segment, manifest last; returns what it holds."""
    if not changes:
        raise FireBackupError("a segment needs at least one change")
    first, last = changes[0].version, changes[-1].version
    segment_id = repo.new_backup_id(ns_datetime(first))
    dek = DataKey.generate() if kek is not None else None
    entry = repo.write_chunk(segment_id, SEGMENT_CHUNK, map(encode_change, changes), kind="changes", data_key=dek)
    manifest = Manifest(backup_id=segment_id, read_time=format_rfc3339(ns_datetime(last)),
                        source={"project": project, "database": database}, chunks=[entry], documents=len(changes),
                        extra={"pitr": {"first": first, "last": last}})
    repo.write_manifest(manifest, dek, kek)
    return _info(manifest)


def read_segment(repo: SegmentRepository, segment_id: str, kek: Keys) -> tuple[SegmentInfo, Iterator[Change]]:
    """The segment's description and its changes, streamed and checked like a chunk's records."""
    manifest, dek = repo.read_manifest(segment_id, _kek(repo, segment_id, kek))
    info = _info(manifest)

    def changes() -> Iterator[Change]:
        for entry in manifest.chunks:
            for records in repo.iter_record_batches(segment_id, entry, dek):
                for raw in records:
                    yield decode_change(raw, f"segment {segment_id}")

    return info, changes()


def list_segments(repo: SegmentRepository, kek: Keys, *, project: str | None = None,
                  database: str | None = None) -> list[SegmentInfo]:
    """Every complete segment at the location (of one source database if given), oldest first."""
    out = []
    for segment_id in repo.backup_ids()[0]:
        manifest, _ = repo.read_manifest(segment_id, _kek(repo, segment_id, kek))
        info = _info(manifest)
        if (project is None or info.project == project) and (database is None or info.database == database):
            out.append(info)
    return sorted(out, key=lambda i: (i.first, i.segment_id))


def stored_changes(repo: SegmentRepository, segments: Iterable[SegmentInfo], kek: Keys, *,
                   after: int, upto: int) -> Iterator[Change]:
    """The changes with after < version <= upto from the segments whose range meets that window."""
    for info in segments:
        if info.last <= after or info.first > upto:
            continue
        _, changes = read_segment(repo, info.segment_id, kek)
        for c in changes:
            if after < c.version <= upto:
                yield c
