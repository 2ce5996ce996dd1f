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


class Capture:
    """Records captured writes for every project with PITR on for the event's project and database."""

    def __init__(self, tx: SystemTx, *, cache_seconds: float = 30.0, read_document: ReadDocument | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.tx = tx
        self.cache_seconds = cache_seconds
        self.read_document = read_document
        self.clock = clock
        self._lock = threading.Lock()
        self._targets: dict[tuple[str, str], tuple[float, list[_Target]]] = {}

    def _lookup(self, ctx: Ctx, project: str, database: str) -> list[_Target]:
        key = (project, database)
        now = self.clock()
        with self._lock:
            hit = self._targets.get(key)
        if hit is not None and now - hit[0] < self.cache_seconds:
            return hit[1]
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
        """Store the write for each project that captures it; returns the rows inserted (0: a duplicate)."""
        with self.tx() as ctx:
            targets = self._lookup(ctx, write.project, write.database)
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
            dialect = postgresql if ctx.session.get_bind().dialect.name == "postgresql" else sqlite
            stmt = dialect.insert(PITRChange).values(values).on_conflict_do_nothing(
                index_elements=["project_id", "event_id"])
            result = ctx.session.execute(stmt)
            return int(getattr(result, "rowcount", 0) or 0)


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
