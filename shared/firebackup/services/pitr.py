"""Point-in-time recovery in the control plane: configuration, capture of document writes, changes read back.

Capture (the `pitr_capture` function) records each write once: the row's event_id is a digest of
database, path and version instant, so a redelivered event, or the same write delivered under
another event id, inserts nothing (INSERT ... ON CONFLICT DO NOTHING). Order comes from the
version instant, never from arrival. An event for a project with PITR disabled or unknown is
acknowledged with one log line: Eventarc would otherwise retry it for days.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from firebackup.crypto.keys import DataKey, KeyEncryptionKey
from firebackup.db.models import PITRChange, PITRConfig, Project, StorageDestination, utcnow
from firebackup.pitr.events import DELETE, CapturedWrite, format_ns, ns_datetime
from firebackup.pitr.restore import Change
from firebackup.pitr.sealing import ChangeSealer, wrap_context
from firebackup.services.commands import ConfigurePitr, DocumentHistory, RestoreAt
from firebackup.services.context import Ctx, Role, SystemTx
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
    from firebackup.services.resources import get_destination, get_project

    get_project(ctx, org_id, project_id)
    get_destination(ctx, org_id, destination_id)
    if retention_days < 1:
        raise Invalid(f"retention_days must be 1 or more, not {retention_days}")
    config = config_of(ctx, project_id)
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


def config_of(ctx: Ctx, project_id: str) -> PITRConfig | None:
    """The project's PITR configuration, if it ever had one."""
    return ctx.session.scalar(sa.select(PITRConfig).where(PITRConfig.project_id == project_id))


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


class Capture:
    """Records captured writes for every project with PITR on for the event's project and database.

    record() stores one write in a transaction of its own; GroupCommit shares commits among the
    concurrent requests of the `pitr_capture` function.
    """

    def __init__(self, tx: SystemTx, *, cache_seconds: float = 30.0, read_document: ReadDocument | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.tx = tx
        self.cache_seconds = cache_seconds
        self.read_document = read_document
        self.clock = clock
        self._lock = threading.Lock()
        self._targets: dict[tuple[str, str], tuple[float, list[_Target]]] = {}

    def cached_targets(self, project: str, database: str) -> list[_Target] | None:
        """The projects recording this database's writes as read less than cache_seconds ago; None: call targets()."""
        with self._lock:
            hit = self._targets.get((project, database))
        if hit is not None and self.clock() - hit[0] < self.cache_seconds:
            return hit[1]
        return None

    def targets(self, project: str, database: str) -> list[_Target]:
        """The projects recording this database's writes (the cache, else one query)."""
        cached = self.cached_targets(project, database)
        if cached is not None:
            return cached
        now = self.clock()
        with self.tx() as ctx:
            rows = ctx.session.execute(
                sa.select(Project, PITRConfig).join(PITRConfig, PITRConfig.project_id == Project.id)
                .where(Project.gcp_project_id == project, Project.database_id == database, PITRConfig.enabled))
            targets = []
            for p, config in rows:
                ctx.session.expunge(p)
                targets.append(_Target(p, sealer(ctx, config)))
        with self._lock:
            self._targets[(project, database)] = (now, targets)
        return targets

    def rows(self, write: CapturedWrite, targets: list[_Target]) -> list[dict[str, Any]]:
        """The rows that store the write, one per target; none (and a log line) when no project captures it.

        An event that carried no document has it read from Firestore first: that blocks.
        """
        if not targets:
            log.info("pitr_capture: dropped the write of %s in %s/%s: PITR is not enabled for that "
                     "project and database", write.path, write.project, write.database)
            return []
        document, operation = write.document, write.operation
        if write.incomplete:
            if self.read_document is None:
                raise Invalid(f"the event for {write.path} carries no document and nothing can read it")
            document = self.read_document(targets[0].project, write.path, write.version)
            operation = DELETE if document is None else operation
        when, nanos = split_ns(write.version)
        eid = change_id(write.database, write.path, write.version)
        return [{"project_id": t.project.id, "event_id": eid, "database_id": write.database,
                 "operation": operation, "document_path": write.path, "update_time": when,
                 "update_time_nanos": nanos,
                 "after": None if document is None else t.sealer.seal(write.path, write.version, document),
                 "compacted": False} for t in targets]

    def record(self, write: CapturedWrite) -> int:
        """Store the write for each project that captures it; returns the rows handed to the store (0: dropped).

        A write already stored (a redelivery) inserts nothing.
        """
        rows = self.rows(write, self.targets(write.project, write.database))
        if rows:
            self.store(rows)
        return len(rows)

    def store(self, rows: list[dict[str, Any]]) -> None:
        """Insert the rows in one transaction; a change already stored is left as it is."""
        # One row per (project, change): a duplicate inside one INSERT would make PostgreSQL's
        # ON CONFLICT refuse the statement.
        unique = list({(v["project_id"], v["event_id"]): v for v in rows}.values())
        with self.tx() as ctx:
            conn = ctx.session.connection()
            if conn.dialect.name == "postgresql":
                columns = [[v[c] for v in unique] for c in _ARRAY_COLUMNS]
                columns[_UPDATE_TIME] = [t.replace(tzinfo=None) for t in columns[_UPDATE_TIME]]
                conn.exec_driver_sql(_PG_INSERT, (utcnow().replace(tzinfo=None), *columns))
                return
            table: Any = PITRChange.__table__
            stmt: Any = sqlite.insert(table).on_conflict_do_nothing(index_elements=["project_id", "event_id"])
            # RETURNING makes SQLAlchemy send the list as multi-row INSERTs (up to 1,000 rows a
            # statement); a SQLite older than 3.35 has none: one row at a time there.
            if conn.dialect.insert_executemany_returning:
                stmt = stmt.returning(table.c.id)
            conn.execute(stmt, unique)


# PostgreSQL stores a batch with one short statement whatever its size, each column an array:
# neither does SQLAlchemy compile a multi-row INSERT per batch nor pg8000 rewrite a placeholder per
# value. That halves the CPU a captured row costs at 50 rows a batch (bench/pitr.py). update_time
# and created_at are naive UTC, as UTCDateTime stores them.
_ARRAY_COLUMNS = ("project_id", "event_id", "database_id", "operation", "document_path", "update_time",
                  "update_time_nanos", "after")
_UPDATE_TIME = _ARRAY_COLUMNS.index("update_time")  # aware UTC in a row: split_ns
_PG_INSERT = (
    f"INSERT INTO {PITRChange.__tablename__} ({', '.join(_ARRAY_COLUMNS)}, compacted, created_at)"
    " SELECT c.*, false, %s FROM unnest(%s::varchar[], %s::varchar[], %s::varchar[], %s::varchar[], %s::text[],"
    " %s::timestamp[], %s::int[], %s::bytea[]) AS c"
    " ON CONFLICT (project_id, event_id) DO NOTHING")


class GroupCommit:
    """Records the writes of concurrent requests on one event loop, sharing commits (the `pitr_capture` function).

    Each request's rows join the pending batch. One flush at a time writes every row pending then,
    in one INSERT and one commit, while the next batch fills; so a burst of N requests costs a few
    commits, not N. Database work runs on one thread of its own, and reads of documents too large for
    their event on two more: at most three connections per process (the pool's 2 + 1), whatever the
    number of requests in flight. A request returns only once its rows are committed, so an
    acknowledged event is stored; a failed flush fails every request in it (Eventarc delivers them again).
    """

    def __init__(self, capture: Capture):
        self.capture = capture
        self._database = ThreadPoolExecutor(1, thread_name_prefix="pitr-database")
        self._reads = ThreadPoolExecutor(2, thread_name_prefix="pitr-read")
        self._pending: list[tuple[list[dict[str, Any]], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def record(self, write: CapturedWrite) -> int:
        """As Capture.record, sharing the commit with the requests pending meanwhile."""
        loop = asyncio.get_running_loop()
        targets = self.capture.cached_targets(write.project, write.database)
        if targets is None:
            targets = await loop.run_in_executor(self._database, self.capture.targets, write.project, write.database)
        if write.incomplete and targets:  # reads Firestore: off the loop, and not in the database's line
            rows = await loop.run_in_executor(self._reads, self.capture.rows, write, targets)
        else:
            rows = self.capture.rows(write, targets)
        if not rows:
            return 0
        stored: asyncio.Future[None] = loop.create_future()
        self._pending.append((rows, stored))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        await stored
        return len(rows)

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                outcome: BaseException | None = None
                try:
                    await loop.run_in_executor(self._database, self.capture.store, [r for rows, _ in batch for r in rows])
                except BaseException as e:  # noqa: BLE001 - every request of the batch learns of it
                    outcome = e
                for _, stored in batch:
                    if stored.done():  # its request was cancelled (the caller went away)
                        continue
                    if outcome is None:
                        stored.set_result(None)
                    else:
                        stored.set_exception(outcome)
                if isinstance(outcome, asyncio.CancelledError):
                    raise outcome
        finally:
            self._flusher = None


# --- reading changes back -----------------------------------------------------------------------------

def _configured(ctx: Ctx, project_id: str) -> PITRConfig:
    config = config_of(ctx, project_id)
    if config is None:
        raise NotFound(f"PITR is not configured for project {project_id}")
    return config


def _window(project_id: str, *, after: int, upto: int, prefix: str | None) -> list[Any]:
    """The WHERE terms of a project's rows with after < version <= upto (ns) under prefix, exact to the ns."""
    (lo, lo_nanos), (hi, hi_nanos) = split_ns(after), split_ns(upto)
    # The microsecond range uses the (project_id, update_time) index; the two ORs settle the
    # nanoseconds below a microsecond at each end, so DISTINCT and counts need no filter after SQL.
    terms: list[Any] = [PITRChange.project_id == project_id, PITRChange.update_time >= lo, PITRChange.update_time <= hi,
                        sa.or_(PITRChange.update_time > lo, PITRChange.update_time_nanos > lo_nanos),
                        sa.or_(PITRChange.update_time < hi, PITRChange.update_time_nanos <= hi_nanos)]
    if prefix:
        from firebackup.pitr.restore import is_document

        under = PITRChange.document_path.startswith(prefix + "/", autoescape=True)
        terms.append(PITRChange.document_path == prefix if is_document(prefix)
                     else sa.or_(PITRChange.document_path == prefix, under))
    return terms


def changes(ctx: Ctx, project_id: str, *, after: int, upto: int, prefix: str | None = None,
            batch: int = 5000) -> Iterator[Change]:
    """The captured changes of a project with after < version <= upto (ns), opened, in version order."""
    opener = sealer(ctx, _configured(ctx, project_id))
    stmt = (sa.select(PITRChange.document_path, PITRChange.update_time, PITRChange.update_time_nanos,
                      PITRChange.operation, PITRChange.after)
            .where(*_window(project_id, after=after, upto=upto, prefix=prefix))
            .order_by(PITRChange.update_time, PITRChange.update_time_nanos, PITRChange.id))
    for row in ctx.session.execute(stmt.execution_options(yield_per=batch)):
        yield _opened(opener, *row)


def _opened(opener: ChangeSealer, path: str, when: dt.datetime, nanos: int, operation: str,
            sealed: bytes | None) -> Change:
    """A stored change row as a Change, its document opened."""
    version = row_ns(when, nanos)
    return Change(path, version, operation, None if sealed is None else opener.open(path, version, sealed))


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

    def add(self, other: "Compaction") -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def _org_keys(ctx: Ctx, org_id: str) -> Callable[[str], KeyEncryptionKey]:
    """Opens segments under whichever of the organization's keys each names (current, previous, BackupKey)."""
    from firebackup.services.keys import kek_named

    return lambda kek_id: kek_named(ctx, org_id, kek_id)


def _org_kek(ctx: Ctx, org_id: str) -> KeyEncryptionKey:
    from firebackup.services.keys import current_kek

    kek = current_kek(ctx, org_id)
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
    """Move the project's changes older than cutoff into segments; rows go only once the segment reads back
    (and its key is still one of the organization's: keys.org_keeps)."""
    from firebackup.errors import IntegrityError
    from firebackup.pitr.segments import read_segment, write_segment
    from firebackup.services.keys import org_keeps

    done = Compaction()
    while True:
        with tx() as ctx:
            config = config_of(ctx, project_id)
            project = ctx.session.get(Project, project_id)
            if config is None or project is None:
                return done
            org_id, opener, kek = config.org_id, sealer(ctx, config), _org_kek(ctx, config.org_id)
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
            batch = [_opened(opener, *row[1:]) for row in rows]
            info = write_segment(repo, batch, project=source[0], database=source[1], kek=kek)
            _, back = read_segment(repo, info.segment_id, kek)
            if list(back) != batch:
                repo.delete_backup(info.segment_id)
                raise IntegrityError(f"segment {info.segment_id} did not read back as written; rows kept")
            with tx() as ctx:
                kept = org_keeps(ctx, org_id, kek.key_id)
                if kept:
                    ctx.session.execute(sa.delete(PITRChange).where(PITRChange.id.in_([r[0] for r in rows])))
            if not kept:  # a rotation forgot the key taken before its switch: compacted again under the current one
                repo.delete_backup(info.segment_id)
                continue
        finally:
            repo.storage.close()
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
    from firebackup.pitr.events import instant_ns
    from firebackup.pitr.segments import list_segments

    done = Compaction()
    with tx() as ctx:
        config = config_of(ctx, project_id)
        if config is None:
            return done
        keep = needed_since(ctx, project_id, now - dt.timedelta(days=config.retention_days))
        if keep is None:
            return done
        result = ctx.session.execute(sa.delete(PITRChange).where(
            PITRChange.project_id == project_id, PITRChange.update_time < keep))
        done.rows_expired = int(getattr(result, "rowcount", 0) or 0)
        project = ctx.session.get(Project, project_id)
        repo = _open_segments(ctx, config)
        try:  # inside the transaction: the key lookups of each segment's KEK use its session
            if project is not None:
                for info in list_segments(repo, _org_keys(ctx, config.org_id), project=project.gcp_project_id,
                                          database=project.database_id):
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
        check_backups(tx, project_id)  # before compaction and retention touch the changes it compares
        total.add(compact_project(tx, project_id, now - older_than, max_changes=max_changes))
        total.add(expire(tx, project_id, now))
    return total


def _stored_changes(ctx: Ctx, project_id: str, *, after: int, upto: int, prefix: str | None) -> Iterator[Change]:
    """The changes in (after, upto] under prefix from the project's segments; storage closed when it ends."""
    from firebackup.pitr.restore import in_scope
    from firebackup.pitr.segments import list_segments, stored_changes

    config = _configured(ctx, project_id)
    project = ctx.session.get(Project, project_id)
    if project is None:
        raise NotFound(f"PITR is not configured for project {project_id}")
    repo, kek = _open_segments(ctx, config), _org_keys(ctx, config.org_id)
    try:  # a generator's finally also runs when its reader stops early and closes it
        segments = list_segments(repo, kek, project=project.gcp_project_id, database=project.database_id)
        yield from (c for c in stored_changes(repo, segments, kek, after=after, upto=upto) if in_scope(c.path, prefix))
    finally:
        repo.storage.close()


def captured_changes(ctx: Ctx, project_id: str, *, after: int, upto: int,
                     prefix: str | None = None) -> Iterator[Change]:
    """Every captured change of the project in (after, upto]: the rows, then the segments in storage, streamed.

    Read it inside ctx's transaction; closing it early closes the segments' storage.
    """
    yield from changes(ctx, project_id, after=after, upto=upto, prefix=prefix)
    yield from _stored_changes(ctx, project_id, after=after, upto=upto, prefix=prefix)


def captured_versions(ctx: Ctx, project_id: str, *, after: int, upto: int) -> Iterator[tuple[str, int]]:
    """(path, version) of every captured change of the project in (after, upto]; no row's document is opened."""
    rows = sa.select(PITRChange.document_path, PITRChange.update_time, PITRChange.update_time_nanos).where(
        *_window(project_id, after=after, upto=upto, prefix=None))
    for path, when, nanos in ctx.session.execute(rows.execution_options(yield_per=5000)):
        yield path, row_ns(when, nanos)
    yield from ((c.path, c.version) for c in _stored_changes(ctx, project_id, after=after, upto=upto, prefix=None))


def changed_paths(ctx: Ctx, project_id: str, *, after: int, upto: int, prefix: str | None = None) -> frozenset[str]:
    """The paths of every captured change of the project in (after, upto] under prefix; no row's document is opened.

    What a point-in-time restore's chunk tasks leave out of the base backup: the rows give their
    distinct paths in SQL; segments are decoded, keeping only paths.
    """
    rows = sa.select(PITRChange.document_path).distinct().where(
        *_window(project_id, after=after, upto=upto, prefix=prefix))
    paths = set(ctx.session.scalars(rows.execution_options(yield_per=5000)))
    paths.update(c.path for c in _stored_changes(ctx, project_id, after=after, upto=upto, prefix=prefix))
    return frozenset(paths)


# --- gaps: writes capture missed, seen by a backup ----------------------------------------------------

def _backup_documents(ctx: Ctx, backup: Any) -> dict[str, int]:
    """Path -> update_time (ns) of every document in a completed backup, read with the key it names."""
    from firebackup.engine.repository import Repository
    from firebackup.firestore.documents import decode_timestamp, first_len_field
    from firebackup.pitr.events import version_ns
    from firebackup.services.keys import kek_named
    from firebackup.services.resources import open_destination

    dest = ctx.session.get(StorageDestination, backup.destination_id)
    if dest is None or backup.repo_backup_id is None:
        return {}
    repo = Repository(open_destination(ctx, dest))
    try:
        kek_id = repo.read_summary(backup.repo_backup_id).get("kek_id")
        kek = kek_named(ctx, backup.org_id, kek_id) if kek_id else None
        manifest, dek = repo.read_manifest(backup.repo_backup_id, kek)
        prefix = len(f"projects/{manifest.source.get('project')}/databases/"
                     f"{manifest.source.get('database') or '(default)'}/documents/")
        seen: dict[str, int] = {}
        for entry in manifest.chunks:
            if entry.kind != "docs":
                continue
            for records in repo.iter_record_batches(backup.repo_backup_id, entry, dek):
                for raw in records:  # maintenance only: a pass over the backup's names and update times
                    stamp = first_len_field(raw, 4, "Document")
                    name = first_len_field(raw, 1, "Document")
                    if stamp is not None and name is not None:
                        seen[name[prefix:].decode()] = version_ns(*decode_timestamp(stamp))
        return seen
    finally:
        repo.storage.close()


def gap_windows(seen: dict[str, int], captured: Iterable[tuple[str, int]], *, start: int,
                read_time: int) -> list[tuple[int, int]]:
    """Windows (lo, hi) around each update a backup saw that capture has no (path, version) for.

    lo is the last captured instant before the missed update (or the start of capture), hi the
    first captured instant after it (or the backup's read time): every missed instant lies strictly
    inside, and no captured one does. `captured` is read once.
    """
    import bisect

    versions: dict[str, set[int]] = {}
    for path, version in captured:
        versions.setdefault(path, set()).add(version)
    instants = sorted({v for vs in versions.values() for v in vs})
    windows = set()
    for path, updated in seen.items():
        if start < updated <= read_time and updated not in versions.get(path, ()):
            i = bisect.bisect_left(instants, updated)
            lo = instants[i - 1] if i > 0 else start
            hi = instants[i] if i < len(instants) else read_time
            windows.add((lo, hi))
    return sorted(windows)


def check_backups(tx: SystemTx, project_id: str) -> list[tuple[int, int]]:
    """Compare every completed backup not yet checked with the captured changes; record the gaps found."""
    from firebackup.db.models import Backup, PITRGap
    from firebackup.pitr.events import format_ns, instant_ns

    found: list[tuple[int, int]] = []
    with tx() as ctx:
        config = config_of(ctx, project_id)
        if config is None:
            return found
        since = config.gaps_checked_through or config.created_at
        start = instant_ns(config.created_at)
        backup_ids = list(ctx.session.scalars(
            sa.select(Backup.id).where(Backup.project_id == project_id, Backup.state == "completed",
                                       Backup.read_time > since).order_by(Backup.read_time)))
    for backup_id in backup_ids:
        with tx() as ctx:
            backup = ctx.session.get(Backup, backup_id)
            config = config_of(ctx, project_id)
            if backup is None or backup.read_time is None or config is None:
                continue
            read_time = instant_ns(backup.read_time)
            seen = _backup_documents(ctx, backup)
            windows = gap_windows(seen, captured_versions(ctx, project_id, after=start, upto=read_time),
                                  start=start, read_time=read_time)
            for lo, hi in windows:
                exists = ctx.session.scalar(sa.select(PITRGap.id).where(
                    PITRGap.project_id == project_id, PITRGap.start_ns == lo, PITRGap.end_ns == hi))
                if exists is None:
                    ctx.session.add(PITRGap(project_id=project_id, start_ns=lo, end_ns=hi, backup_id=backup.id, reason=(
                        f"backup {backup.id} holds documents updated between {format_ns(lo)} and {format_ns(hi)} "
                        f"that capture never recorded: pitr_capture was down or not triggered")))
                    log.warning("pitr: gap in project %s between %s and %s", project_id, format_ns(lo), format_ns(hi))
            config.gaps_checked_through = backup.read_time
            found.extend(windows)
    return found


def gaps_between(ctx: Ctx, project_id: str, after: int, upto: int) -> list[Any]:
    """The recorded gaps whose window meets (after, upto]: changes there may be missing."""
    from firebackup.db.models import PITRGap

    return list(ctx.session.scalars(sa.select(PITRGap).where(
        PITRGap.project_id == project_id, PITRGap.start_ns < upto, PITRGap.end_ns > after).order_by(PITRGap.start_ns)))


# --- the API: configuration, covered window, restore ------------------------------------------------

def _config(ctx: Ctx, org_id: str, project_id: str) -> tuple[Project, PITRConfig]:
    from firebackup.services.resources import get_project

    project = get_project(ctx, org_id, project_id)
    config = config_of(ctx, project.id)
    if config is None:
        raise NotFound(f"PITR is not configured for project {project_id}; PUT its pitr settings first")
    return project, config


def org_kek(ctx: Ctx, org_id: str) -> KeyEncryptionKey:
    """The organization's KEK for new data keys: its KMS key, else its BackupKey, made now if it has none."""
    from firebackup.services.keys import current_kek, make_local_kek

    return current_kek(ctx, org_id) or make_local_kek(ctx, org_id)


def configure(ctx: Ctx, org_id: str, project_id: str, cmd: ConfigurePitr) -> dict[str, Any]:
    """PUT a project's PITR settings: on or off, retention in days, where segments go."""
    enable(ctx, org_id, project_id, destination_id=cmd.destination_id, retention_days=cmd.retention_days,
           enabled=cmd.enabled, kek=org_kek(ctx, org_id))
    return window(ctx, org_id, project_id)


def window(ctx: Ctx, org_id: str, project_id: str) -> dict[str, Any]:
    """The settings and the covered window: earliest restorable instant, latest captured instant, gaps."""
    from firebackup.db.models import Backup, PITRGap
    from firebackup.pitr.events import format_ns, instant_ns
    from firebackup.pitr.segments import list_segments

    from firebackup.services.resources import get_project

    project = get_project(ctx, org_id, project_id)
    config = config_of(ctx, project.id)
    if config is None:  # never configured reads as off, so a page listing projects makes no failing call
        return {"project_id": project.id, "enabled": False, "retention_days": 7, "destination_id": None,
                "kek_id": None, "earliest_restorable": None, "latest_captured": None, "gaps": []}
    earliest = ctx.session.scalar(sa.select(sa.func.min(Backup.read_time)).where(
        Backup.project_id == project.id, Backup.state == "completed", Backup.read_time >= config.created_at))
    last_row = ctx.session.execute(sa.select(PITRChange.update_time, PITRChange.update_time_nanos)
                                   .where(PITRChange.project_id == project.id)
                                   .order_by(PITRChange.update_time.desc(), PITRChange.update_time_nanos.desc())
                                   .limit(1)).first()
    latest = row_ns(*last_row) if last_row else None
    repo = _open_segments(ctx, config)
    try:
        for info in list_segments(repo, _org_keys(ctx, config.org_id), project=project.gcp_project_id,
                                  database=project.database_id):
            latest = info.last if latest is None else max(latest, info.last)
    finally:
        repo.storage.close()
    gaps = ctx.session.scalars(sa.select(PITRGap).where(PITRGap.project_id == project.id).order_by(PITRGap.start_ns))
    return {**describe(config),
            "earliest_restorable": None if earliest is None else format_ns(instant_ns(earliest)),
            "latest_captured": None if latest is None else format_ns(latest),
            "gaps": [{"start": format_ns(g.start_ns), "end": format_ns(g.end_ns), "reason": g.reason} for g in gaps]}


def restore(ctx: Ctx, org_id: str, project_id: str, cmd: RestoreAt) -> dict[str, Any]:
    """Start restoring the project's database as of cmd.at into a project of the organization: a restore job.

    Validated here (the instant, the scope, the role, a base backup, the gaps); the restore_worker
    runs it (engine/restore/handlers.py) and GET /restores/{id} shows its state and counts.
    """
    from firebackup.db.models import Backup, Restore, new_id
    from firebackup.errors import UsageError
    from firebackup.pitr.events import format_ns, instant_ns, parse_instant
    from firebackup.pitr.restore import PointInTimeRequest
    from firebackup.services.errors import Conflict
    from firebackup.services.identity import require_role
    from firebackup.services.jobs import enqueue_restore
    from firebackup.services.resources import get_project

    project, config = _config(ctx, org_id, project_id)
    try:
        at = parse_instant(cmd.at)
        request = PointInTimeRequest(at=at, project="-", scope=cmd.scope, mode=cmd.mode)
    except UsageError as e:
        raise Invalid(str(e)) from None
    target = get_project(ctx, org_id, cmd.target_project_id or project.id)
    if not cmd.dry_run and cmd.mode != "skip":
        require_role(ctx, Role.admin, f"a point-in-time restore in {cmd.mode} mode (it can overwrite documents; "
                                      "a member may dry-run it, or restore in skip mode)")
    base = ctx.session.scalar(sa.select(Backup).where(
        Backup.project_id == project.id, Backup.state == "completed", Backup.read_time.is_not(None),
        Backup.repo_backup_id.is_not(None), Backup.read_time <= split_ns(at)[0])
        .order_by(Backup.read_time.desc()).limit(1))
    if base is None or base.read_time is None or base.repo_backup_id is None:
        raise Invalid(f"no completed backup of project {project_id} was read at or before {cmd.at}: a point-in-time "
                      "restore starts from one; choose a later instant")
    if base.destination_id is None or ctx.session.get(StorageDestination, base.destination_id) is None:
        raise Conflict(f"the destination of backup {base.id} is gone")
    after = instant_ns(base.read_time)
    warnings = []
    for gap in gaps_between(ctx, project.id, after, at):
        what = (f"{format_ns(at)} depends on the window {format_ns(gap.start_ns)} .. {format_ns(gap.end_ns)}, "
                f"in which capture missed writes ({gap.reason})")
        if not cmd.allow_gaps:
            raise Conflict(f"{what}; choose another instant, or pass allow_gaps to restore anyway")
        warnings.append(what)
    row = Restore(id=new_id("rst"), org_id=org_id, backup_id=base.id, target_project_id=target.id,
                  target_database=cmd.target_database, mode=cmd.mode, dry_run=cmd.dry_run, include_auth=False,
                  state="pending", requested_by=ctx.actor_id, at_ns=at, scope=request.scope,
                  allow_gaps=cmd.allow_gaps, keep_references=cmd.keep_references, warnings=warnings)
    return enqueue_restore(ctx, row, {"at": format_ns(at), "scope": request.scope, "project_id": project.id,
                                      "allow_gaps": cmd.allow_gaps, "gaps_crossed": len(warnings)})


def document_history(ctx: Ctx, org_id: str, project_id: str, cmd: DocumentHistory) -> dict[str, Any]:
    """The document's versions (backups and captured changes), and the diff between two instants if asked."""
    from firebackup.db.models import Backup
    from firebackup.engine.repository import Repository
    from firebackup.engine.jobs import one_line
    from firebackup.errors import FireBackupError, UsageError
    from firebackup.pitr.events import instant_ns, parse_instant
    from firebackup.pitr.history import diff, history, in_backup, state_at
    from firebackup.pitr.restore import check_scope
    from firebackup.services.errors import Conflict, ServiceError
    from firebackup.services.keys import kek_named
    from firebackup.services.resources import open_destination

    project, _ = _config(ctx, org_id, project_id)
    try:
        path = check_scope(cmd.path) or ""
        instants = [parse_instant(t) for t in (cmd.at, cmd.until) if t is not None]
    except UsageError as e:
        raise Invalid(str(e)) from None
    if len(instants) == 1:
        raise Invalid("a diff needs both at and until")
    copies: list[tuple[str, int, bytes | None]] = []
    for backup in ctx.session.scalars(sa.select(Backup).where(
            Backup.project_id == project.id, Backup.state == "completed", Backup.read_time.is_not(None),
            Backup.repo_backup_id.is_not(None)).order_by(Backup.read_time)):
        dest = ctx.session.get(StorageDestination, backup.destination_id)
        if dest is None or backup.read_time is None or backup.repo_backup_id is None:
            continue
        repo = Repository(open_destination(ctx, dest))
        try:
            kek_id = repo.read_summary(backup.repo_backup_id).get("kek_id")
            kek = kek_named(ctx, org_id, kek_id) if kek_id else None
            copies.append((backup.id, instant_ns(backup.read_time), in_backup(repo, backup.repo_backup_id, kek, path)))
        except ServiceError:
            raise
        except FireBackupError as e:  # a backup on record whose objects are gone or damaged: one line, no 500
            raise Conflict(f"backup {backup.id} cannot be read for the document's history: {one_line(e)}") from None
        finally:
            repo.storage.close()
    changes_of = list(captured_changes(ctx, project.id, after=-1, upto=2**63 - 1, prefix=path))
    versions = history(path, changes_of, copies)
    out: dict[str, Any] = {"path": path, "versions": [v.to_dict() for v in versions], "diff": None}
    if instants:
        states = []
        for at in instants:
            bases = [(t, doc) for _, t, doc in copies if t <= at]
            if not bases:
                raise Invalid(f"no backup of the project was read at or before {format_ns(at)}")
            states.append(state_at(path, at, changes_of, bases[-1]))
        out["diff"] = diff(states[0], states[1])
    return out
