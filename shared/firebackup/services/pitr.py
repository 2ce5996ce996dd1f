"""Point-in-time recovery in the control plane: configuration, capture of document writes, changes read back.

Capture (the `pitr_capture` function) records each write once: the row's event_id is a digest of
database, path and version instant, so a redelivered event, or the same write delivered under
another event id, inserts nothing (INSERT ... ON CONFLICT DO NOTHING). Order comes from the
version instant, never from arrival. An event for a project with PITR disabled or unknown is
acknowledged with one log line: Eventarc would otherwise retry it for days.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from firebackup.crypto.keys import DataKey, KeyEncryptionKey
from firebackup.db.models import PITRChange, PITRConfig, Project, StorageDestination
from firebackup.pitr.events import DELETE, CapturedWrite, ns_datetime
from firebackup.pitr.restore import Change
from firebackup.pitr.sealing import ChangeSealer, wrap_context
from firebackup.services.context import Ctx, SystemTx
from firebackup.services.errors import Invalid, NotFound

log = logging.getLogger("firebackup.pitr")

# Reads the document at path as of the version instant (ns), or None if it did not exist then:
# completes an event too large to carry its document.
ReadDocument = Callable[[Project, str, int], "bytes | None"]
KekFor = Callable[[str], KeyEncryptionKey]  # the organization's current KEK (Workers.kek)


def change_id(database: str, path: str, version: int) -> str:
    """A write's identity: the same document at the same version instant is the same change."""
    return hashlib.sha256(f"{database}\x00{path}\x00{version}".encode()).hexdigest()


def split_ns(version: int) -> tuple[dt.datetime, int]:
    """(update_time to the microsecond, the nanoseconds below it) as the row stores them."""
    return ns_datetime(version), version % 1000


def row_ns(when: dt.datetime, nanos: int) -> int:
    from firebackup.pitr.events import instant_ns

    return instant_ns(when) + nanos


# --- configuration ------------------------------------------------------------------------------------

def enable(ctx: Ctx, org_id: str, project_id: str, *, destination_id: str, retention_days: int, enabled: bool,
           kek: KeyEncryptionKey) -> dict[str, Any]:
    """Turn PITR on or off for a project, with a retention in days; makes its data key on first use."""
    project = ctx.session.get(Project, project_id)
    if project is None or project.org_id != org_id:
        raise NotFound(f"project {project_id} not found")
    dest = ctx.session.get(StorageDestination, destination_id)
    if dest is None or dest.org_id != org_id:
        raise NotFound(f"destination {destination_id} not found")
    if retention_days < 1:
        raise Invalid(f"retention_days must be 1 or more, not {retention_days}")
    config = ctx.session.scalar(sa.select(PITRConfig).where(PITRConfig.project_id == project_id))
    if config is None:
        config = PITRConfig(org_id=org_id, project_id=project_id, destination_id=destination_id)
        ctx.session.add(config)
    config.destination_id, config.retention_days, config.enabled = destination_id, retention_days, enabled
    if config.wrapped_dek is None:
        config.wrapped_dek = kek.wrap(DataKey.generate(), wrap_context(project_id))
        config.kek_id = kek.key_id
    ctx.session.flush()
    ctx.audit("pitr.configure", "project", project_id,
              {"enabled": enabled, "retention_days": retention_days, "destination_id": destination_id})
    return describe(config)


def describe(config: PITRConfig) -> dict[str, Any]:
    return {"project_id": config.project_id, "enabled": config.enabled, "retention_days": config.retention_days,
            "destination_id": config.destination_id, "kek_id": config.kek_id}


def sealer(ctx: Ctx, config: PITRConfig) -> ChangeSealer:
    """The project's change sealer; its data key unwrapped by the KEK it was wrapped with."""
    from firebackup.services.keys import kek_named

    if config.wrapped_dek is None or config.kek_id is None:
        raise Invalid(f"PITR of project {config.project_id} has no data key; enable it again")
    return ChangeSealer.unwrap(config.project_id, config.wrapped_dek, kek_named(ctx, config.org_id, config.kek_id))


# --- capture ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Target:
    """One project row that records a database's writes."""

    project: Project
    sealer: ChangeSealer


class _Batch:
    """Rows waiting for one INSERT, and what became of it."""

    def __init__(self) -> None:
        self.values: list[dict[str, Any]] = []
        self.done = threading.Event()
        self.error: BaseException | None = None


class Capture:
    """Records captured writes for every project with PITR on for the event's project and database.

    Concurrent requests share commits (group commit): each adds its rows to the pending batch and
    waits; whoever takes the flush lock first writes every row pending in one INSERT and one
    commit. A request returns only once its rows are committed, so an acknowledged event is stored;
    a failed flush fails every request in it (Eventarc delivers them again).
    """

    def __init__(self, tx: SystemTx, *, cache_seconds: float = 30.0, read_document: ReadDocument | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.tx = tx
        self.cache_seconds = cache_seconds
        self.read_document = read_document
        self.clock = clock
        self._lock = threading.Lock()
        self._targets: dict[tuple[str, str], tuple[float, list[_Target]]] = {}
        self._pending: _Batch | None = None
        self._flushing = threading.Lock()

    def _lookup(self, project: str, database: str) -> list[_Target]:
        key = (project, database)
        now = self.clock()
        with self._lock:
            hit = self._targets.get(key)
        if hit is not None and now - hit[0] < self.cache_seconds:
            return hit[1]
        with self.tx() as ctx:
            rows = ctx.session.execute(
                sa.select(Project, PITRConfig).join(PITRConfig, PITRConfig.project_id == Project.id)
                .where(Project.gcp_project_id == project, Project.database_id == database, PITRConfig.enabled))
            targets = []
            for p, config in rows:
                ctx.session.expunge(p)
                targets.append(_Target(p, sealer(ctx, config)))
        with self._lock:
            self._targets[key] = (now, targets)
        return targets

    def record(self, write: CapturedWrite) -> int:
        """Store the write for each project that captures it; returns the rows handed to the store (0: dropped).

        A write already stored (a redelivery) inserts nothing.
        """
        targets = self._lookup(write.project, write.database)
        if not targets:
            log.info("pitr_capture: dropped the write of %s in %s/%s: PITR is not enabled for that "
                     "project and database", write.path, write.project, write.database)
            return 0
        document, operation = write.document, write.operation
        if write.incomplete:
            if self.read_document is None:
                raise Invalid(f"the event for {write.path} carries no document and nothing can read it")
            document = self.read_document(targets[0].project, write.path, write.version)
            operation = DELETE if document is None else operation
        when, nanos = split_ns(write.version)
        eid = change_id(write.database, write.path, write.version)
        values = [{"project_id": t.project.id, "event_id": eid, "database_id": write.database,
                   "operation": operation, "document_path": write.path, "update_time": when,
                   "update_time_nanos": nanos,
                   "after": None if document is None else t.sealer.seal(write.path, write.version, document),
                   "compacted": False} for t in targets]
        self._commit(values)
        return len(values)

    def _commit(self, values: list[dict[str, Any]]) -> None:
        with self._lock:
            batch = self._pending
            if batch is None:
                batch = self._pending = _Batch()
            batch.values.extend(values)
        with self._flushing:  # while one batch is written, the next one fills up
            if not batch.done.is_set():
                with self._lock:
                    if self._pending is batch:
                        self._pending = None
                try:
                    self._insert(batch.values)
                except BaseException as e:  # noqa: BLE001 - every request of the batch learns of it
                    batch.error = e
                finally:
                    batch.done.set()
        if batch.error is not None:
            raise batch.error

    def _insert(self, values: list[dict[str, Any]]) -> None:
        # One row per (project, change) in the batch: a duplicate inside one INSERT would make
        # PostgreSQL's ON CONFLICT refuse the statement.
        unique = list({(v["project_id"], v["event_id"]): v for v in values}.values())
        with self.tx() as ctx:
            dialect = postgresql if ctx.session.get_bind().dialect.name == "postgresql" else sqlite
            ctx.session.execute(dialect.insert(PITRChange).values(unique).on_conflict_do_nothing(
                index_elements=["project_id", "event_id"]))


# --- reading changes back -----------------------------------------------------------------------------

def changes(ctx: Ctx, project_id: str, *, after: int, upto: int, prefix: str | None = None,
            batch: int = 5000) -> Iterator[Change]:
    """The captured changes of a project with after < version <= upto (ns), opened, in version order."""
    config = ctx.session.scalar(sa.select(PITRConfig).where(PITRConfig.project_id == project_id))
    if config is None:
        raise NotFound(f"PITR is not configured for project {project_id}")
    opener = sealer(ctx, config)
    lo, hi = split_ns(after)[0], split_ns(upto)[0] + dt.timedelta(microseconds=1)
    stmt = (sa.select(PITRChange.document_path, PITRChange.update_time, PITRChange.update_time_nanos,
                      PITRChange.operation, PITRChange.after)
            .where(PITRChange.project_id == project_id, PITRChange.update_time >= lo, PITRChange.update_time < hi)
            .order_by(PITRChange.update_time, PITRChange.update_time_nanos, PITRChange.id))
    if prefix:
        stmt = stmt.where(sa.or_(PITRChange.document_path == prefix,
                                 PITRChange.document_path.startswith(prefix + "/", autoescape=True)))
    for path, when, nanos, operation, sealed in ctx.session.execute(stmt.execution_options(yield_per=batch)):
        version = row_ns(when, nanos)
        if not after < version <= upto:
            continue
        yield Change(path, version, operation,
                           None if sealed is None else opener.open(path, version, sealed))


def firestore_reader(tx: SystemTx, workers: Any) -> ReadDocument:
    """Reads a document of a connected project at a version instant, with the project's own credentials."""
    from google.cloud.firestore_v1.types import BatchGetDocumentsRequest, BatchGetDocumentsResponse

    from firebackup.firestore.rewrite import database_path

    request_pb: Any = BatchGetDocumentsRequest.pb()  # the skeletons in firestore.protos have no read_time
    response_pb: Any = BatchGetDocumentsResponse.pb()

    def read(project: Project, path: str, version: int) -> bytes | None:
        with tx() as ctx:
            secret = workers.project_secret(ctx, project)
        conn = workers.ports.sources.firestore(project.gcp_project_id, project.database_id, project.auth_kind, secret)
        try:
            db = database_path(project.gcp_project_id, project.database_id)
            request = request_pb(database=db, documents=[f"{db}/documents/{path}"])
            request.read_time.seconds, request.read_time.nanos = divmod(version, 1_000_000_000)
            for raw in conn.batch_get_documents(request.SerializeToString()):
                response = response_pb.FromString(raw)
                if response.HasField("found"):
                    return bytes(response.found.SerializeToString())
            return None
        finally:
            conn.close()

    return read


# --- compaction and retention (maintenance) -----------------------------------------------------------

@dataclass
class Compaction:
    """What one compaction run did."""

    segments: int = 0
    changes: int = 0
    rows_expired: int = 0
    segments_expired: int = 0


def _org_kek(ctx: Ctx, org_id: str) -> KeyEncryptionKey:
    from firebackup.services.keys import org_kms_kek, stored_local_kek

    kek: KeyEncryptionKey | None = org_kms_kek(ctx, org_id) or stored_local_kek(ctx, org_id)
    if kek is None:
        raise Invalid(f"organization {org_id} has no backup key yet; enable PITR again to make one")
    return kek


def _open_segments(ctx: Ctx, config: PITRConfig) -> Any:
    from firebackup.pitr.segments import SegmentRepository
    from firebackup.services.resources import open_destination

    dest = ctx.session.get(StorageDestination, config.destination_id)
    if dest is None:
        raise NotFound(f"PITR destination {config.destination_id} of project {config.project_id} is gone")
    return SegmentRepository(open_destination(ctx, dest))


def compact_project(tx: SystemTx, project_id: str, cutoff: dt.datetime, *, max_changes: int) -> Compaction:
    """Move the project's changes older than cutoff into segments; rows go only once the segment reads back."""
    from firebackup.errors import IntegrityError
    from firebackup.pitr.segments import read_segment, write_segment

    done = Compaction()
    while True:
        with tx() as ctx:
            config = ctx.session.scalar(sa.select(PITRConfig).where(PITRConfig.project_id == project_id))
            project = ctx.session.get(Project, project_id)
            if config is None or project is None:
                return done
            opener, kek = sealer(ctx, config), _org_kek(ctx, config.org_id)
            rows = ctx.session.execute(
                sa.select(PITRChange.id, PITRChange.document_path, PITRChange.update_time,
                          PITRChange.update_time_nanos, PITRChange.operation, PITRChange.after)
                .where(PITRChange.project_id == project_id, PITRChange.update_time < cutoff)
                .order_by(PITRChange.update_time, PITRChange.update_time_nanos, PITRChange.id)
                .limit(max_changes)).all()
            if not rows:
                return done
            repo = _open_segments(ctx, config)
            source = (project.gcp_project_id, project.database_id)
        try:
            batch = []
            for _, path, when, nanos, operation, sealed in rows:
                version = row_ns(when, nanos)
                batch.append(Change(path, version, operation,
                                    None if sealed is None else opener.open(path, version, sealed)))
            info = write_segment(repo, batch, project=source[0], database=source[1], kek=kek)
            _, back = read_segment(repo, info.segment_id, kek)
            if list(back) != batch:
                repo.delete_backup(info.segment_id)
                raise IntegrityError(f"segment {info.segment_id} did not read back as written; rows kept")
        finally:
            repo.storage.close()
        with tx() as ctx:
            ctx.session.execute(sa.delete(PITRChange).where(PITRChange.id.in_([r[0] for r in rows])))
        done.segments += 1
        done.changes += len(rows)
        if len(rows) < max_changes:
            return done


def needed_since(ctx: Ctx, project_id: str, oldest: dt.datetime) -> dt.datetime | None:
    """The read_time of the base backup the oldest kept restore point needs: changes at or before it are not.

    None: no completed backup of the project, so nothing can be restored yet and nothing may go.
    """
    from firebackup.db.models import Backup

    completed = sa.select(Backup.read_time).where(Backup.project_id == project_id, Backup.state == "completed",
                                                  Backup.read_time.is_not(None))
    base = ctx.session.scalar(completed.where(Backup.read_time <= oldest).order_by(Backup.read_time.desc()).limit(1))
    if base is None:  # the window starts before the first backup: its first read_time is the oldest point
        base = ctx.session.scalar(completed.order_by(Backup.read_time).limit(1))
    return base


def expire(tx: SystemTx, project_id: str, now: dt.datetime) -> Compaction:
    """Retention: drop rows and segments older than every restore point the window keeps needs."""
    from firebackup.pitr.segments import list_segments

    done = Compaction()
    with tx() as ctx:
        config = ctx.session.scalar(sa.select(PITRConfig).where(PITRConfig.project_id == project_id))
        if config is None:
            return done
        keep = needed_since(ctx, project_id, now - dt.timedelta(days=config.retention_days))
        if keep is None:
            return done
        result = ctx.session.execute(sa.delete(PITRChange).where(
            PITRChange.project_id == project_id, PITRChange.update_time < keep))
        done.rows_expired = int(getattr(result, "rowcount", 0) or 0)
        repo, kek = _open_segments(ctx, config), _org_kek(ctx, config.org_id)
        project = ctx.session.get(Project, project_id)
    from firebackup.pitr.events import instant_ns

    try:
        if project is not None:
            for info in list_segments(repo, kek, project=project.gcp_project_id, database=project.database_id):
                if info.last < instant_ns(keep):
                    repo.delete_backup(info.segment_id)
                    done.segments_expired += 1
    finally:
        repo.storage.close()
    return done


def compact_all(tx: SystemTx, now: dt.datetime, *, older_than: dt.timedelta, max_changes: int) -> Compaction:
    """Compaction then retention for every project with a PITR configuration."""
    with tx() as ctx:
        ids = list(ctx.session.scalars(sa.select(PITRConfig.project_id).order_by(PITRConfig.project_id)))
    total = Compaction()
    for project_id in ids:
        for part in (compact_project(tx, project_id, now - older_than, max_changes=max_changes),
                     expire(tx, project_id, now)):
            total.segments += part.segments
            total.changes += part.changes
            total.rows_expired += part.rows_expired
            total.segments_expired += part.segments_expired
    return total


def captured_changes(tx: SystemTx, project_id: str, *, after: int, upto: int,
                     prefix: str | None = None) -> list[Change]:
    """Every captured change of the project in (after, upto]: the rows and the segments in storage."""
    from firebackup.pitr.restore import in_scope
    from firebackup.pitr.segments import list_segments, stored_changes

    with tx() as ctx:
        out = list(changes(ctx, project_id, after=after, upto=upto, prefix=prefix))
        config = ctx.session.scalar(sa.select(PITRConfig).where(PITRConfig.project_id == project_id))
        project = ctx.session.get(Project, project_id)
        if config is None or project is None:
            raise NotFound(f"PITR is not configured for project {project_id}")
        repo, kek = _open_segments(ctx, config), _org_kek(ctx, config.org_id)
        source = (project.gcp_project_id, project.database_id)
    try:
        segments = list_segments(repo, kek, project=source[0], database=source[1])
        out.extend(c for c in stored_changes(repo, segments, kek, after=after, upto=upto) if in_scope(c.path, prefix))
    finally:
        repo.storage.close()
    return out
