"""Task handlers that run the engine for the control plane: plan (a whole backup), restore, verify,
delete_backup, webhook_deliver.

Each handler takes the task's JSON payload, loads its row, opens the project's Firestore and the
destination's storage with credentials unsealed in memory only, runs the engine and moves the row
through pending -> running -> completed | failed | cancelled; outcomes go through
jobs.record_outcome (audited, webhooks queued). Handlers are plain callables so a Cloud Tasks
worker function can call the same ones (`Workers(factory, ports).handlers()[name](payload)`).

Backups are encrypted under the organization's backup key (BackupKey row): 32 random bytes made
on the first backup, sealed with the control plane's Sealer like every other secret, used as a
LocalKey KEK that wraps each backup's data key.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any, Callable, Iterator, Mapping

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from firebackup.db.models import Backup, BackupChunk, BackupKey, Project, Restore, StorageDestination, new_id, utcnow
from firebackup.errors import AccessDenied, BackupNotFound, FireBackupError
from firebackup.services.context import Ctx, Ports

log = logging.getLogger("firebackup.workers")

Handler = Callable[[dict], Any]
TASKS = ("plan", "restore", "verify", "delete_backup", "webhook_deliver")


class Cancelled(Exception):
    """The row left the running state (cancelled or deleted) while the work was under way."""


def one_line(e: BaseException) -> str:
    """The row's error text: the first line of a FireBackupError, never a traceback or a payload."""
    if isinstance(e, FireBackupError):
        text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    else:
        text = f"internal error ({type(e).__name__}); see the worker log"
    return text[:500]


class Workers:
    """The handlers, bound to a session factory and the ports (sealer, storage opener, queue)."""

    def __init__(self, factory: sessionmaker[Session], ports: Ports, *, threads: int = 2,
                 env: Mapping[str, str] | None = None, chunk_docs: int | None = None):
        self.factory, self.ports, self.threads = factory, ports, max(1, threads)
        self.chunk_docs = chunk_docs  # None: the engine's default
        self.env = os.environ if env is None else env

    def handlers(self) -> dict[str, Handler]:
        return {"plan": self.plan, "restore": self.restore, "verify": self.verify,
                "delete_backup": self.delete_backup, "webhook_deliver": self.webhook_deliver}

    # --- plumbing ------------------------------------------------------------------------------

    def _tx(self) -> Any:
        """One short transaction with a system Ctx (no principal: audited as actor `system`)."""
        factory, ports = self.factory, self.ports

        class _Tx:
            def __enter__(self_inner) -> Ctx:
                self_inner.session = factory()
                self_inner.session.begin()
                return Ctx(self_inner.session, ports)

            def __exit__(self_inner, exc_type, exc, tb) -> None:
                try:
                    if exc_type is None:
                        self_inner.session.commit()
                    else:
                        self_inner.session.rollback()
                finally:
                    self_inner.session.close()

        return _Tx()

    def _kek(self, org_id: str) -> Any:
        """The organization's backup KEK, made and sealed on first use."""
        import base64

        from firebackup.crypto.keys import LocalKey

        with self._tx() as ctx:
            row = ctx.session.scalar(sa.select(BackupKey).where(BackupKey.org_id == org_id))
            if row is not None:
                raw = self.ports.sealer.open(row.key_sealed, f"backup_keys.key_sealed:{row.id}")
                return LocalKey(base64.b64decode(raw), source="organization backup key")
        raw_key = os.urandom(32)
        kek = LocalKey(raw_key, source="organization backup key")
        kid = new_id("bkk")
        try:
            with self._tx() as ctx:
                ctx.session.add(BackupKey(id=kid, org_id=org_id, key_id=kek.key_id, key_sealed=self.ports.sealer.seal(
                    base64.b64encode(raw_key), f"backup_keys.key_sealed:{kid}")))
                ctx.audit("backup_key.create", "backup_key", kid, {"key_id": kek.key_id}, org_id=org_id)
        except sa.exc.IntegrityError:
            return self._kek(org_id)  # another task made it first: use theirs
        return kek

    def _open_storage(self, ctx: Ctx, dest: StorageDestination) -> Any:
        from firebackup.services.resources import open_destination

        return open_destination(ctx, dest)

    def _open_firestore(self, ctx: Ctx, project: Project, database: str | None = None) -> Any:
        """Emulator when FIRESTORE_EMULATOR_HOST is set; else the project's sealed credentials, in memory only."""
        from firebackup.firestore.grpc import SCOPES, open_firestore

        database = database or project.database_id or "(default)"
        if self.env.get("FIRESTORE_EMULATOR_HOST"):
            return open_firestore(project.gcp_project_id, database, emulator_host=self.env["FIRESTORE_EMULATOR_HOST"])
        from firebackup.services.resources import project_credentials

        secret = project_credentials(ctx, project)
        if project.auth_kind == "service_account":
            from google.oauth2 import service_account

            try:
                creds = service_account.Credentials.from_service_account_info(json.loads(secret), scopes=list(SCOPES))
            except ValueError:  # the message could quote the key: say only what to do
                raise AccessDenied(f"the service-account key of project {project.gcp_project_id} was rejected; "
                                   "reconnect the project with a valid key") from None
        else:
            from google.oauth2.credentials import Credentials

            creds = Credentials(None, refresh_token=secret.decode(), token_uri="https://oauth2.googleapis.com/token",
                                scopes=list(SCOPES))
        return open_firestore(project.gcp_project_id, database, credentials=creds)

    def _start(self, model: Any, row_id: str) -> bool:
        """pending -> running, atomically: a redelivered or cancelled task does nothing."""
        with self._tx() as ctx:
            res = ctx.session.execute(sa.update(model).where(model.id == row_id, model.state == "pending")
                                      .values(state="running", started_at=utcnow()))
            return res.rowcount == 1

    def _finish(self, model: Any, row_id: str, state: str, error: str | None = None, **values: Any) -> bool:
        """running -> state with the outcome audited; False if the row was cancelled or deleted meanwhile."""
        from firebackup.services.jobs import record_outcome

        with self._tx() as ctx:
            row = ctx.session.get(model, row_id, with_for_update=True)
            if row is None or row.state != "running":
                return False
            for k, v in values.items():
                setattr(row, k, v)
            record_outcome(ctx, row, state, error)
            return True

    # --- backup ----------------------------------------------------------------------------------

    def plan(self, payload: dict) -> None:
        """Run one whole backup: plan, chunks (cancel checked between chunks), manifest, outcome."""
        backup_id = payload["backup_id"]
        if not self._start(Backup, backup_id):
            return
        repo, made = None, {}
        try:
            with self._tx() as ctx:
                row = ctx.session.get(Backup, backup_id)
                project = ctx.session.get(Project, row.project_id)
                dest = ctx.session.get(StorageDestination, row.destination_id)
                org_id, collections, include_auth = row.org_id, row.collections, row.include_auth
                storage = self._open_storage(ctx, dest)
                source = self._open_firestore(ctx, project)
            try:
                from firebackup.engine.repository import Repository

                repo = Repository(storage)
                self._run_backup(backup_id, org_id, collections, include_auth, source, repo, made)
            finally:
                source.close()
                storage.close()
        except Cancelled:
            if made:
                self._discard(repo, made["repo_backup_id"])
            log.info("backup %s cancelled", backup_id)
        except Exception as e:  # noqa: BLE001 - every failure ends in the row, one line
            if made:
                self._discard(repo, made["repo_backup_id"])
            self._fail(Backup, backup_id, e)

    def _run_backup(self, backup_id: str, org_id: str, collections: list | None, include_auth: bool,
                    source: Any, repo: Any, made: dict) -> None:
        from firebackup.engine import backup as eng

        kek = self._kek(org_id)
        request = eng.BackupRequest(project=source.project, database=source.database, collections=collections,
                                    include_auth=include_auth, chunks_per_task=1,
                                    **({"chunk_docs": self.chunk_docs} if self.chunk_docs else {}))
        p = eng.plan(request, source=source, repo=repo, kek=kek)
        made["repo_backup_id"] = p.backup_id
        self._progress(backup_id, repo_backup_id=p.backup_id, read_time=p.read_time,
                       chunks_total=len(p.tasks) + (1 if include_auth else 0))
        entries: list = []
        pending = list(p.tasks)
        docs = raw = stored = 0
        while pending:
            task = pending.pop(0)
            result = eng.run_chunk(p, task, source=source, repo=repo)
            if result.follow_up is not None:
                pending.insert(0, result.follow_up)
            entries.extend(result.entries)
            docs += result.documents
            raw += sum(e.bytes_raw for e in result.entries)
            stored += sum(e.bytes_stored for e in result.entries)
            self._record_chunks(backup_id, result.entries)
            self._progress(backup_id, documents=docs, bytes_raw=raw, bytes_stored=stored, chunks_done=len(entries),
                           chunks_total=len(entries) + len(pending) + (1 if include_auth else 0))
        auth_users, hash_config = 0, None
        if include_auth:
            users, hash_config = eng._open_auth_users(p.project, None)
            auth_entries, auth_users = eng.backup_auth_users(p, users, repo=repo)
            entries.extend(auth_entries)
            self._record_chunks(backup_id, auth_entries)
            raw += sum(e.bytes_raw for e in auth_entries)
            stored += sum(e.bytes_stored for e in auth_entries)
        self._progress(backup_id)  # last cancel check before the manifest makes the backup complete
        manifest = eng.finalize(p, entries, repo=repo, kek=kek, auth_users=auth_users, auth_hash_config=hash_config)
        done = self._finish(Backup, backup_id, "completed", documents=int(getattr(manifest, "documents", docs)),
                            bytes_raw=raw, bytes_stored=stored, chunks_done=len(entries), chunks_total=len(entries),
                            manifest_key=repo.manifest_key(p.backup_id))
        if not done:
            raise Cancelled()

    def _progress(self, backup_id: str, **values: Any) -> None:
        """Write progress; raise Cancelled when the backup is no longer running (the cancel check)."""
        with self._tx() as ctx:
            stmt = sa.update(Backup).where(Backup.id == backup_id, Backup.state == "running")
            res = ctx.session.execute(stmt.values(**values) if values else stmt.values(state="running"))
            if res.rowcount != 1:
                raise Cancelled()

    def _record_chunks(self, backup_id: str, entries: list) -> None:
        if not entries:
            return
        with self._tx() as ctx:
            ids = [e.chunk_id for e in entries]
            # Idempotent: a redelivered chunk replaces its row.
            ctx.session.execute(sa.delete(BackupChunk).where(BackupChunk.backup_id == backup_id,
                                                             BackupChunk.chunk_id.in_(ids)))
            ctx.session.add_all(BackupChunk(backup_id=backup_id, chunk_id=e.chunk_id, kind=getattr(e, "kind", "docs"),
                                            key=e.key, records=e.records, bytes_raw=e.bytes_raw,
                                            bytes_stored=e.bytes_stored, sha256=e.sha256) for e in entries)

    @staticmethod
    def _discard(repo: Any, repo_backup_id: str) -> None:
        """Best effort: a backup that did not complete leaves no objects behind."""
        try:
            repo.delete_backup(repo_backup_id)
        except FireBackupError:
            pass

    def _fail(self, model: Any, row_id: str, e: BaseException) -> None:
        message = one_line(e)
        if isinstance(e, FireBackupError):
            log.warning("%s %s failed: %s", model.__tablename__, row_id, message)
        else:
            log.exception("%s %s failed unexpectedly", model.__tablename__, row_id)
        self._finish(model, row_id, "failed", message)

    # --- restore ---------------------------------------------------------------------------------

    def restore(self, payload: dict) -> None:
        restore_id = payload["restore_id"]
        if not self._start(Restore, restore_id):
            return
        try:
            from firebackup.engine.repository import Repository
            from firebackup.engine.restore import RestoreRequest, run_restore

            with self._tx() as ctx:
                row = ctx.session.get(Restore, restore_id)
                backup = ctx.session.get(Backup, row.backup_id)
                target = ctx.session.get(Project, row.target_project_id)
                dest = ctx.session.get(StorageDestination, backup.destination_id)
                request = RestoreRequest(backup_id=backup.repo_backup_id, project=target.gcp_project_id,
                                         database=row.target_database or target.database_id,
                                         collections=row.collections, mode=row.mode,
                                         include_auth=row.include_auth, dry_run=row.dry_run)
                org_id = row.org_id
                storage = self._open_storage(ctx, dest)
                conn = self._open_firestore(ctx, target, request.database)
            try:
                repo = Repository(storage)
                kek = self._kek(org_id)
                manifest, _ = repo.read_manifest(request.backup_id, kek)
                total = sum(1 for e in manifest.chunks if getattr(e, "kind", "docs") == "docs")
                with self._tx() as ctx:
                    ctx.session.execute(sa.update(Restore).where(Restore.id == restore_id).values(chunks_total=total))
                result = run_restore(request, repo=repo, kek=kek, connection=conn, threads=self.threads)
            finally:
                conn.close()
                storage.close()
            error = None
            if not result.ok:
                first = (result.errors or ["see the restore log"])[0]
                error = one_line(FireBackupError(
                    f"{result.documents_failed} documents and {result.auth_users_failed} Auth users failed to "
                    f"restore; first: {first}"))
            self._finish(Restore, restore_id, "completed" if result.ok else "failed", error,
                         documents_written=result.documents_written, chunks_done=total)
        except Exception as e:  # noqa: BLE001 - every failure ends in the row, one line
            self._fail(Restore, restore_id, e)

    # --- verify, delete, webhooks -----------------------------------------------------------------

    def verify(self, payload: dict) -> None:
        from firebackup.engine.repository import Repository
        from firebackup.engine.verify import verify

        backup_id = payload["backup_id"]
        with self._tx() as ctx:
            row = ctx.session.get(Backup, backup_id)
            if row is None or row.state != "completed" or not row.repo_backup_id:
                return
            org_id, repo_id = row.org_id, row.repo_backup_id
            dest = ctx.session.get(StorageDestination, row.destination_id)
            ctx.session.execute(sa.update(Backup).where(Backup.id == backup_id).values(verify_state="running"))
        problems: list[str]
        try:
            with self._tx() as ctx:
                storage = self._open_storage(ctx, ctx.session.get(StorageDestination, dest.id))
            try:
                report = verify(Repository(storage), repo_id, self._kek(org_id), workers=self.threads)
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

    def delete_backup(self, payload: dict) -> None:
        from firebackup.engine.repository import Repository

        with self._tx() as ctx:
            dest = ctx.session.get(StorageDestination, payload["destination_id"])
            if dest is None:
                return  # the destination itself is gone; nothing we can reach
            storage = self._open_storage(ctx, dest)
        try:
            Repository(storage).delete_backup(payload["repo_backup_id"])
        except BackupNotFound:
            pass  # already deleted (a redelivered task)
        finally:
            storage.close()

    def webhook_deliver(self, payload: dict) -> None:
        from firebackup.services.webhooks import deliver

        with self._tx() as ctx:
            deliver(ctx, payload["delivery_id"])


def _guarded(name: str, handler: Handler) -> Handler:
    """In-process queue: a failing task is logged and dropped, so it never stops the queue."""

    def run(payload: dict) -> None:
        try:
            handler(payload)
        except Exception:  # noqa: BLE001
            log.exception("task %s failed", name)

    return run


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
        for name, payload in tasks:
            self.inner.enqueue(name, payload)

    def _end(self, session: Session, transaction: Any) -> None:
        # Rolled back (or closed without commit): its tasks are dropped with it.
        if transaction.parent is None and not transaction.nested:
            self._local.buffer = None

    def enqueue(self, name: str, payload: dict) -> None:
        buffer = self._buffer()
        if buffer is None:
            self.inner.enqueue(name, payload)
        else:
            buffer.append((name, dict(payload)))

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
        inner.register(name, _guarded(name, handler))
    if isinstance(queue, AfterCommitQueue):
        queue.bind(factory)
    return workers


def run_task(name: str, payload: dict, factory: sessionmaker[Session], ports: Ports) -> None:
    """One task, for a worker function fed by Cloud Tasks (exceptions propagate so the task is retried)."""
    Workers(factory, ports).handlers()[name](payload)


__all__ = ["Workers", "AfterCommitQueue", "local_queue", "attach", "run_task", "TASKS", "one_line"]
