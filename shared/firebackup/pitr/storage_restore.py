"""Restore to an instant from a storage location alone: its backups and its pitr/ segments, opened with the key.

What the CLI runs (`firebackup restore --at`): no control plane, so only compacted changes are
seen; the result warns when the segments end before the instant (later changes may still be
rows in the control plane, which moves them into segments hourly).
"""

from __future__ import annotations

from firebackup.crypto.keys import KeyEncryptionKey
from firebackup.engine.ports import DocumentTarget
from firebackup.engine.repository import Repository
from firebackup.errors import UsageError
from firebackup.pitr.events import format_ns, parse_instant
from firebackup.pitr.history import Version, history, in_backup, state_at
from firebackup.pitr.restore import PointInTimeRequest, PointInTimeResult, restore_at
from firebackup.pitr.segments import SegmentRepository, list_segments, stored_changes


def choose_base(repo: Repository, kek: KeyEncryptionKey | None, at: int, *, project: str,
                database: str) -> tuple[str, int]:
    """(backup id, read_time ns) of the newest complete backup of project/database read at or before `at`."""
    candidates = []
    for summary in repo.list_backups():
        if summary.problem is None and summary.read_time:
            read_time = parse_instant(summary.read_time)
            if read_time <= at:
                candidates.append((read_time, summary.backup_id))
    for read_time, backup_id in sorted(candidates, reverse=True):
        manifest, _ = repo.read_manifest(backup_id, kek)
        if manifest.source.get("project") == project and (manifest.source.get("database") or "(default)") == database:
            return backup_id, read_time
    raise UsageError(f"no complete backup of {project}/{database} at {repo.url} was read at or before "
                     f"{format_ns(at)}: a point-in-time restore starts from one; choose a later instant")


def restore_from_location(request: PointInTimeRequest, *, repo: Repository, target: DocumentTarget,
                          kek: KeyEncryptionKey | None, source_project: str, source_database: str
                          ) -> PointInTimeResult:
    """Base backup and segments from repo's location, written into target as of request.at."""
    base_id, base_read_time = choose_base(repo, kek, request.at, project=source_project, database=source_database)
    segments_repo = SegmentRepository(repo.storage)
    segments = list_segments(segments_repo, kek, project=source_project, database=source_database)
    warnings = []
    last = max((s.last for s in segments), default=None)
    if last is None or last < request.at:
        ends = "no captured changes are in storage" if last is None else f"captured changes in storage end at " \
                                                                           f"{format_ns(last)}"
        warnings.append(f"{ends}; later ones may still be in the control plane (compaction moves them hourly)")
    changes = stored_changes(segments_repo, segments, kek, after=base_read_time, upto=request.at)
    return restore_at(request, target=target, repo=repo, base_backup_id=base_id, base_read_time=base_read_time,
                      kek=kek, changes=changes, warnings=warnings)


def _backups_of(repo: Repository, kek: KeyEncryptionKey | None, project: str, database: str) -> list[tuple[int, str]]:
    """(read_time ns, backup id) of every readable backup of project/database at the location, oldest first."""
    out = []
    for summary in repo.list_backups():
        if summary.problem is None and summary.read_time:
            manifest, _ = repo.read_manifest(summary.backup_id, kek)
            if manifest.source.get("project") == project and (manifest.source.get("database") or "(default)") == database:
                out.append((parse_instant(summary.read_time), summary.backup_id))
    return sorted(out)


def document_history(repo: Repository, kek: KeyEncryptionKey | None, *, project: str, database: str,
                     path: str) -> list[Version]:
    """The document's versions in the location's backups and segments, oldest first."""
    segments_repo = SegmentRepository(repo.storage)
    segments = list_segments(segments_repo, kek, project=project, database=database)
    changes = [c for c in stored_changes(segments_repo, segments, kek, after=-1, upto=2**63 - 1) if c.path == path]
    copies = [(backup_id, read_time, in_backup(repo, backup_id, kek, path))
              for read_time, backup_id in _backups_of(repo, kek, project, database)]
    return history(path, changes, copies)


def document_at(repo: Repository, kek: KeyEncryptionKey | None, *, project: str, database: str, path: str,
                at: int) -> bytes | None:
    """The document as of `at`, from the newest backup read at or before it and the segments."""
    base_id, base_read_time = choose_base(repo, kek, at, project=project, database=database)
    segments_repo = SegmentRepository(repo.storage)
    segments = list_segments(segments_repo, kek, project=project, database=database)
    changes = stored_changes(segments_repo, segments, kek, after=base_read_time, upto=at)
    return state_at(path, at, changes, (base_read_time, in_backup(repo, base_id, kek, path)))
