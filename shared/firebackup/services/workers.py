"""The control plane's task handlers: the engine's backup and restore handlers over the database, plus
verify, delete_backup, webhook_deliver and an organization's key rotation (services/keys.py).

Backups and restores run through the same engine handlers as the CLI (engine/backup/handlers.py,
engine/restore/handlers.py); here they get a DbJobStore (job rows, task leases, chunk rows) and
jobs opened from the rows: the project's Firestore and the destination's storage with
credentials unsealed in memory only, and the organization's backup key. Handlers are plain
callables, so the embedded LocalQueue and a Cloud Tasks worker function run the same ones.

Backups are encrypted under the organization's backup key (BackupKey row): 32 random bytes made
on the first backup, sealed with the control plane's Sealer like every other secret, used as a
LocalKey KEK that wraps each backup's data key; or, for an organization that brought its own
Cloud KMS key, under that key only (services/keys.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from firebackup.crypto.keys import KeyEncryptionKey
from firebackup.db.models import Backup, Project, Restore, StorageDestination, Webhook, WebhookDelivery
from firebackup.engine.backup import BackupHandlers, BackupJob, BackupRequest
from firebackup.engine.jobs import Clock, one_line, utcnow
from firebackup.engine.restore import RestoreHandlers, RestoreJob, RestoreRequest
from firebackup.engine.sources import FirestoreSource
from firebackup.engine.tasks import KEYS_ROTATE
from firebackup.errors import BackupNotFound, FireBackupError
from firebackup.services.context import Ctx, Ports
from firebackup.services.job_store import DbJobStore
from firebackup.services.keys import KeyRotations, kek_named

if TYPE_CHECKING:
    from firebackup.engine.repository import Repository
    from firebackup.pitr.restore import Change, PointInTime

log = logging.getLogger("firebackup.workers")

Handler = Callable[[dict], Any]


class Workers:
    """Every control-plane task handler, bound to a session factory and the ports."""

    def __init__(self, factory: sessionmaker[Session], ports: Ports, *, threads: int = 2, clock: Clock = utcnow):
        self.factory, self.ports, self.threads, self.clock = factory, ports, max(1, threads), clock
        lease = ports.settings.lease_seconds
        self.backups = BackupHandlers(store=DbJobStore(factory, ports, Backup, clock=clock, lease_seconds=lease),
                                      queue=ports.queue, jobs=_Backups(self), clock=clock)
        self.restores = RestoreHandlers(store=DbJobStore(factory, ports, Restore, clock=clock, lease_seconds=lease),
                                        queue=ports.queue, jobs=_Restores(self), clock=clock)
        self.rotations = KeyRotations(factory, ports, clock=clock, lease_seconds=lease)

    def handlers(self) -> dict[str, Handler]:
        return {**self.backups.handlers(), **self.restores.handlers(), **self.rotations.handlers(),
                "verify": self.verify, "delete_backup": self.delete_backup, "webhook_deliver": self.webhook_deliver}

    def dead_letter(self, name: str, payload: dict, error: BaseException) -> None:
        """A task that will not be delivered again: its job ends failed with the last error, once."""
        log.error("task %s gave up: %s", name, one_line(error))
        runner = self.backups if name.startswith("backup.") else self.restores if name.startswith("restore.") else None
        if runner is not None and "job" in payload:
            runner.store.fail(payload["job"], one_line(error))
        elif name == KEYS_ROTATE and isinstance(payload.get("job"), str):
            self.rotations.fail(payload["job"], one_line(error))

    # --- plumbing ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Ctx]:
        """One short transaction with a system Ctx (no principal: audited as actor `system`)."""
        with self.factory.begin() as session:
            yield Ctx(session, self.ports)

    def kek(self, org_id: str) -> KeyEncryptionKey:
        """The organization's backup KEK: its own Cloud KMS key if it chose one (services/keys.py), else its
        BackupKey, made and sealed on first use."""
        from firebackup.services.keys import current_kek, make_local_kek

        with self._tx() as ctx:
            found = current_kek(ctx, org_id)
        if found is not None:
            return found  # with a KMS key, the BackupKey is neither made nor used for this organization's backups
        try:
            with self._tx() as ctx:
                return make_local_kek(ctx, org_id)
        except sa.exc.IntegrityError:
            return self.kek(org_id)  # another task made it first: use theirs

    def kek_of(self, org_id: str, repo: Repository, repo_backup_id: str) -> KeyEncryptionKey:
        """The KEK an existing backup's manifest names, if it is one of the organization's (services/keys.py):
        backups made before the organization switched keys stay readable. A manifest that names no key gets
        the current one, so an unencrypted manifest swapped in is refused (a downgrade)."""
        kek_id = repo.read_summary(repo_backup_id).get("kek_id")
        if not kek_id:
            return self.kek(org_id)
        with self._tx() as ctx:
            return kek_named(ctx, org_id, str(kek_id))

    def open_storage(self, ctx: Ctx, dest: StorageDestination) -> Any:
        from firebackup.services.resources import open_destination

        return open_destination(ctx, dest)

    def project_secret(self, ctx: Ctx, project: Project) -> bytes:
        from firebackup.services.resources import project_credentials

        if not self.ports.sources.needs_credentials:
            return b""  # the emulator takes no credentials: never unseal what is not needed
        return project_credentials(ctx, project)

    # --- verify, delete, webhooks -----------------------------------------------------------------
    # The queue's endpoint is reachable by more than the services that enqueue (a forged POST to the
    # worker): every payload is re-read against the database, and one whose rows do not belong to
    # the organization it names, or whose state does not call for the task, does nothing but a log line.

    def verify(self, payload: dict[str, Any]) -> None:
        from firebackup.engine.repository import Repository
        from firebackup.engine.verify import verify

        backup_id, org_id = _text(payload, "backup_id"), _text(payload, "org_id")
        with self._tx() as ctx:
            row = ctx.session.get(Backup, backup_id) if backup_id else None
            if row is None or row.org_id != org_id:
                _refuse("verify", payload, "no such backup in the organization it names")
                return
            if row.state != "completed" or not row.repo_backup_id or row.verify_state not in ("pending", "running"):
                log.info("verify of backup %s skipped: it is %s and its verification %s", row.id, row.state,
                         row.verify_state)
                return
            repo_id, dest_id = row.repo_backup_id, row.destination_id
            ctx.session.execute(sa.update(Backup).where(Backup.id == row.id).values(verify_state="running"))
        problems: list[str]
        try:
            with self._tx() as ctx:
                dest = _existing(ctx, StorageDestination, dest_id, "storage destination")
                _same_org("verify", org_id, dest=dest)
                storage = self.open_storage(ctx, dest)
            try:
                repo = Repository(storage)
                report = verify(repo, repo_id, self.kek_of(org_id, repo, repo_id), workers=self.threads)
            finally:
                storage.close()
            ok, problems = report.ok, list(report.problems)
        except Exception as e:  # noqa: BLE001 - a wrong key or unreadable storage is a failed verification
            ok, problems = False, [one_line(e)]
        with self._tx() as ctx:
            ctx.session.execute(sa.update(Backup).where(Backup.id == backup_id)
                                .values(verify_state="ok" if ok else "failed"))
            ctx.audit("backup.verified", "backup", backup_id, {"ok": ok, "problems": problems[:5]}, org_id=org_id,
                      result="success" if ok else "failure")

    def delete_backup(self, payload: dict[str, Any]) -> None:
        """Delete the objects of a backup marked `deleting` in the organization the payload names, then its row."""
        from firebackup.engine.repository import Repository

        backup_id, org_id = _text(payload, "backup_id"), _text(payload, "org_id")
        if backup_id is None or org_id is None:
            _refuse("delete_backup", payload, "it names no backup and organization")
            return
        with self._tx() as ctx:
            row = ctx.session.get(Backup, backup_id)
            if row is None:
                log.info("delete_backup: backup %s is already gone", backup_id)
                return
            if row.org_id != org_id or row.state != "deleting":
                _refuse("delete_backup", payload, f"backup is {row.state} or in another organization")
                return
            dest = ctx.session.get(StorageDestination, row.destination_id)
            if dest is not None and dest.org_id != row.org_id:
                _refuse("delete_backup", payload, "its destination is in another organization")
                return
            # No destination (deleted since) or no objects: nothing reachable to delete, the row goes.
            storage = self.open_storage(ctx, dest) if dest is not None and row.repo_backup_id else None
            repo_id = row.repo_backup_id
        if storage is not None and repo_id:
            try:
                Repository(storage).delete_backup(repo_id)
            except BackupNotFound:
                pass  # already deleted (a redelivered task)
            finally:
                storage.close()
        with self._tx() as ctx:
            ctx.session.execute(sa.delete(Backup).where(Backup.id == backup_id, Backup.org_id == org_id,
                                                        Backup.state == "deleting"))

    def webhook_deliver(self, payload: dict[str, Any]) -> None:
        from firebackup.services.webhooks import deliver

        delivery_id = _text(payload, "delivery_id")
        with self._tx() as ctx:
            d = ctx.session.get(WebhookDelivery, delivery_id) if delivery_id else None
            hook = ctx.session.get(Webhook, d.webhook_id) if d is not None else None
            if d is not None and hook is not None:
                problem = _foreign_subject(ctx, hook.org_id, d.payload)
                if "org_id" in payload and payload["org_id"] != hook.org_id:
                    problem = "the webhook is in another organization"
                if problem:
                    _refuse("webhook_deliver", payload, problem)
                    return
            attempt = payload.get("attempt")
            deliver(ctx, delivery_id or "", attempt=attempt if isinstance(attempt, int) else None, now=self.clock())


_Row = TypeVar("_Row")


def _existing(ctx: Ctx, model: type[_Row], row_id: str | None, what: str) -> _Row:
    """The row a job refers to; a permanent error, in one line, when it has been deleted since (a detached
    backup's project or destination id is NULL)."""
    row = ctx.session.get(model, row_id) if row_id is not None else None
    if row is None:
        raise FireBackupError(f"{what} {row_id} no longer exists" if row_id else f"{what} no longer exists")
    return row


def _text(payload: dict[str, Any], name: str) -> str | None:
    """A payload's id field, or None when it is missing or not a string (a forged or garbled task)."""
    value = payload.get(name) if isinstance(payload, dict) else None
    return value if isinstance(value, str) and value else None


def _refuse(task: str, payload: Any, why: str) -> None:
    """A task the database does not back: logged (ids only, never more of the payload) and dropped."""
    ids = {k: v for k, v in payload.items() if isinstance(v, str) and k.endswith("_id")} if isinstance(
        payload, dict) else {}
    log.warning("refused %s task %s: %s", task, {k: v[:64] for k, v in ids.items()}, why)


def _same_org(job: str, org_id: str, **rows: Any) -> None:
    """Every row a job opens is in the job's organization; else the job is refused (a permanent error)."""
    for what, row in rows.items():
        if row.org_id != org_id:
            log.warning("refused %s of organization %s: its %s %s is in organization %s", job, org_id, what,
                        row.id, row.org_id)
            raise FireBackupError(f"the {what} of this {job} is not in its organization; the {job} was refused")


def _foreign_subject(ctx: Ctx, org_id: str, event: Any) -> str | None:
    """A delivery's event may name only its webhook's organization's backups and restores."""
    if not isinstance(event, dict):
        return None
    backup, restore = event.get("backup_id"), event.get("restore_id")
    named: dict[str, Backup | Restore | None] = {
        "backup_id": ctx.session.get(Backup, backup) if isinstance(backup, str) else None,
        "restore_id": ctx.session.get(Restore, restore) if isinstance(restore, str) else None}
    for key, row in named.items():
        if row is not None and row.org_id != org_id:
            return f"its event names a {key[:-3]} of another organization"
    return None


class _Backups:
    """Jobs[BackupJob]: a backup row's request and adapters, opened for one task."""

    def __init__(self, workers: Workers):
        self.w = workers

    @contextlib.contextmanager
    def open(self, job_id: str) -> Iterator[BackupJob]:
        from firebackup.engine.backup import DEFAULT_CHUNK_DOCS
        from firebackup.engine.repository import Repository

        w, settings = self.w, self.w.ports.settings
        with w._tx() as ctx:
            row = _existing(ctx, Backup, job_id, "backup")
            project = _existing(ctx, Project, row.project_id, "project")
            dest = _existing(ctx, StorageDestination, row.destination_id, "storage destination")
            _same_org("backup", row.org_id, project=project, destination=dest)
            org_id, collections, include_auth = row.org_id, row.collections, row.include_auth
            # A planned backup keeps the key its plan wrapped the data key with, even if the organization
            # switched keys since (the previous key stays known until no backup is in flight).
            planned = (row.plan or {}).get("kek_id")
            kek = kek_named(ctx, org_id, planned) if planned else None
            gcp, database, kind = project.gcp_project_id, project.database_id or "(default)", project.auth_kind
            secret = w.project_secret(ctx, project)
            storage = w.open_storage(ctx, dest)
        try:
            source = FirestoreSource(w.ports.sources.firestore(gcp, database, kind, secret))
            try:
                request = BackupRequest(project=gcp, database=database, collections=collections,
                                        include_auth=include_auth, chunks_per_task=settings.chunks_per_task,
                                        chunk_docs=settings.chunk_docs or DEFAULT_CHUNK_DOCS)
                auth = w.ports.sources.auth(gcp, kind, secret) if include_auth else None
                yield BackupJob(request, source, Repository(storage), kek or w.kek(org_id), auth)
            finally:
                source.close()
        finally:
            storage.close()


class _Restores:
    """Jobs[RestoreJob]: a restore row's request and adapters, opened for one task."""

    def __init__(self, workers: Workers):
        self.w = workers

    @contextlib.contextmanager
    def open(self, job_id: str) -> Iterator[RestoreJob]:
        from firebackup.engine.repository import Repository

        w = self.w
        with w._tx() as ctx:
            row = _existing(ctx, Restore, job_id, "restore")
            backup = _existing(ctx, Backup, row.backup_id, "backup")
            target = _existing(ctx, Project, row.target_project_id, "project")
            dest = _existing(ctx, StorageDestination, backup.destination_id, "storage destination")
            _same_org("restore", row.org_id, backup=backup, project=target, destination=dest)
            if backup.repo_backup_id is None:
                raise FireBackupError(f"backup {backup.id} has no objects in storage to restore from")
            request = RestoreRequest(backup_id=backup.repo_backup_id, project=target.gcp_project_id,
                                     database=row.target_database or target.database_id,
                                     collections=row.collections, mode=row.mode,
                                     include_auth=row.include_auth, dry_run=row.dry_run,
                                     keep_references=row.keep_references)
            point_in_time = self._point_in_time(row, backup) if row.at_ns is not None else None
            org_id, kind = row.org_id, target.auth_kind
            secret = w.project_secret(ctx, target)
            storage = w.open_storage(ctx, dest)
        try:
            conn = w.ports.sources.firestore(request.project, request.database, kind, secret)
            try:
                auth = w.ports.sources.auth(request.project, kind, secret) if request.include_auth else None
                repo = Repository(storage)
                yield RestoreJob(request, conn, repo, w.kek_of(org_id, repo, request.backup_id), auth,
                                 point_in_time=point_in_time)
            finally:
                conn.close()
        finally:
            storage.close()

    def _point_in_time(self, row: Restore, base: Backup) -> PointInTime:
        """A point-in-time restore's instant and scope; its changes are read (rows, segments) when a task needs them."""
        from firebackup.pitr.events import instant_ns
        from firebackup.pitr.restore import PointInTime
        from firebackup.services.pitr import captured_changes, changed_paths

        source_id, at, scope = base.project_id, row.at_ns, row.scope
        if source_id is None or base.read_time is None or at is None:
            raise FireBackupError(f"backup {base.id} no longer names the project whose changes this restore applies")
        base_read_time = instant_ns(base.read_time)

        def changes() -> Iterator[Change]:  # streamed inside its transaction, never listed whole
            with self.w._tx() as ctx:
                yield from captured_changes(ctx, source_id, after=base_read_time, upto=at, prefix=scope)

        def paths() -> frozenset[str]:
            with self.w._tx() as ctx:
                return changed_paths(ctx, source_id, after=base_read_time, upto=at, prefix=scope)

        return PointInTime(at=at, base_read_time=base_read_time, scope=scope, changes=changes, paths=paths)


class AfterCommitQueue:
    """Holds tasks enqueued inside a transaction until it commits (drops them on rollback).

    The services enqueue before their transaction commits; an in-process worker could
    otherwise start before the row it needs is visible. Outside a transaction, tasks go at once.
    """

    def __init__(self, inner: Any):
        self.inner = inner
        self._local = threading.local()

    def _buffer(self) -> list | None:
        return getattr(self._local, "buffer", None)

    def bind(self, factory: sessionmaker[Session]) -> None:
        sa.event.listen(factory, "after_begin", self._begin)
        sa.event.listen(factory, "after_commit", self._commit)
        sa.event.listen(factory, "after_transaction_end", self._end)

    def _begin(self, session: Session, transaction: Any, connection: Any) -> None:
        if self._buffer() is None:
            self._local.buffer = []

    def _commit(self, session: Session) -> None:
        tasks, self._local.buffer = self._buffer() or [], None
        for name, payload, delay in tasks:
            self.inner.enqueue(name, payload, delay_seconds=delay)

    def _end(self, session: Session, transaction: Any) -> None:
        # Rolled back (or closed without commit): its tasks are dropped with it.
        if transaction.parent is None and not transaction.nested:
            self._local.buffer = None

    def enqueue(self, name: str, payload: dict, *, delay_seconds: float = 0.0) -> None:
        buffer = self._buffer()
        if buffer is None:
            self.inner.enqueue(name, payload, delay_seconds=delay_seconds)
        else:
            buffer.append((name, dict(payload), delay_seconds))

    def join(self) -> None:
        self.inner.join()

    def close(self) -> None:
        self.inner.close()


def local_queue(threads: int = 2) -> Any:
    """The embedded default: a LocalQueue that runs the handlers in this process, after commit."""
    from firebackup.runtime.queue import LocalQueue

    return AfterCommitQueue(LocalQueue(threads=max(1, threads)))


def attach(queue: Any, factory: sessionmaker[Session], ports: Ports, *, threads: int = 2) -> Workers:
    """Register the handlers on an in-process queue (an AfterCommitQueue around a LocalQueue)."""
    workers = Workers(factory, ports, threads=threads)
    inner = queue.inner if isinstance(queue, AfterCommitQueue) else queue
    for name, handler in workers.handlers().items():
        inner.register(name, handler)
    inner.on_give_up = workers.dead_letter
    if isinstance(queue, AfterCommitQueue):
        queue.bind(factory)
    return workers


__all__ = ["Workers", "AfterCommitQueue", "local_queue", "attach"]
