"""Backups and restores: rows that track work done by the engine through the task queue."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from firebackup.db.models import Backup, BackupChunk, Restore, StorageDestination, new_id, utcnow
from firebackup.engine.tasks import BACKUP_PLAN, RESTORE_PLAN
from firebackup.errors import BackupNotFound, FireBackupError, IntegrityError
from firebackup.services.commands import PageRequest, StartBackup, StartRestore
from firebackup.services.context import Ctx, Role, page
from firebackup.services.errors import Conflict, Invalid
from firebackup.services.identity import require_role
from firebackup.services.resources import get_destination, get_in_org, get_project, open_destination, probe_failure
from firebackup.storage.base import Storage

ACTIVE = ("pending", "running")


def _progress(done: int, total: int, state: str) -> float:
    if state == "completed":
        return 1.0
    return min(1.0, done / total) if total else 0.0


def backup_out(row: Backup) -> dict[str, Any]:
    out = {c.key: getattr(row, c.key) for c in Backup.__table__.columns}
    out["progress"] = _progress(row.chunks_done, row.chunks_total, row.state)
    out["detached"] = [what for what, gone in (("project", row.project_id is None),
                                               ("destination", row.destination_id is None)) if gone]
    return out


def _writable(row: Backup, doing: str) -> None:
    """A backup whose destination was deleted (kept detached) is a record only: nothing can reach its objects."""
    if row.destination_id is None:
        raise Conflict(f"cannot {doing}: the backup is detached, its storage destination was deleted; "
                       "the record is kept read-only")


def restore_out(row: Restore) -> dict[str, Any]:
    from firebackup.pitr.events import format_ns

    out = {c.key: getattr(row, c.key) for c in Restore.__table__.columns}
    out["progress"] = _progress(row.chunks_done, row.chunks_total, row.state)
    out["at"] = None if row.at_ns is None else format_ns(row.at_ns)  # a point-in-time restore's instant
    return out


def list_backups(ctx: Ctx, org_id: str, q: PageRequest) -> tuple[list[dict[str, Any]], str | None]:
    rows, cursor = page(ctx.session, sa.select(Backup).where(Backup.org_id == org_id), Backup.id,
                        limit=q.limit, cursor=q.cursor, descending=True)
    return [backup_out(r) for r in rows], cursor


def _list_or_none(items: tuple[str, ...] | None) -> list[str] | None:
    return list(items) if items is not None else None


def _backup(ctx: Ctx, org_id: str, backup_id: str) -> Backup:
    return get_in_org(ctx, Backup, org_id, backup_id, "backup")


def get_backup(ctx: Ctx, org_id: str, backup_id: str) -> dict[str, Any]:
    return backup_out(_backup(ctx, org_id, backup_id))


def start_backup(ctx: Ctx, org_id: str, cmd: StartBackup) -> dict[str, Any]:
    """Create a pending backup and enqueue its `plan` task; the caller may be a user, a token or the system.

    The project and the destination must belong to the organization (another org's id is NotFound).
    """
    get_project(ctx, org_id, cmd.project_id)
    get_destination(ctx, org_id, cmd.destination_id)
    row = Backup(id=new_id("bkp"), org_id=org_id, project_id=cmd.project_id, destination_id=cmd.destination_id,
                 schedule_id=cmd.schedule_id, state="pending", collections=_list_or_none(cmd.collections),
                 include_auth=cmd.include_auth, requested_by=ctx.actor_id)
    ctx.session.add(row)
    ctx.session.flush()
    details = {"project_id": cmd.project_id, **({"schedule_id": cmd.schedule_id} if cmd.schedule_id else {})}
    # The org is named, not taken from the ctx: a system caller (the scheduler) authorized for no org.
    ctx.audit("backup.start", "backup", row.id, details, org_id=org_id)
    # Enqueued inside the transaction: if the commit fails the worker finds no row and drops the task.
    ctx.ports.queue.enqueue(BACKUP_PLAN, {"job": row.id})
    return backup_out(row)


def cancel_backup(ctx: Ctx, org_id: str, backup_id: str) -> dict[str, Any]:
    row = _backup(ctx, org_id, backup_id)
    if row.state not in ACTIVE:
        raise Conflict(f"backup is {row.state}; only pending or running backups can be cancelled")
    row.state, row.finished_at = "cancelled", utcnow()
    ctx.audit("backup.cancel", "backup", backup_id)
    return backup_out(row)


def delete_backup(ctx: Ctx, org_id: str, backup_id: str, *, storage: Storage | None = None,
                  because: str | None = None) -> None:
    """Delete the backup's record now and its objects through a worker, or through `storage` now.

    storage: the destination is being deleted in this same transaction, so no worker could open it
    later; the objects go first, and a failure leaves every row in place. because: audited.
    """
    row = _backup(ctx, org_id, backup_id)
    if row.state in ACTIVE:
        raise Conflict("backup is still in progress; cancel it first")
    _writable(row, "delete it")
    repo_id = row.repo_backup_id
    ctx.audit("backup.delete", "backup", backup_id, {"reason": because} if because else None)
    if storage is not None and repo_id:
        # The destination itself is being deleted: its objects go now, while it can still be opened.
        from firebackup.engine.repository import Repository

        try:
            Repository(storage).delete_backup(repo_id)
        except BackupNotFound:
            pass  # already gone (an earlier attempt deleted the objects, then failed before the rows)
    if not repo_id or storage is not None:
        ctx.session.delete(row)
        return
    # Objects are removed by a worker (thousands of chunks do not fit in a request), then the row; the
    # task names the row and its organization, and the worker acts only on a row marked `deleting`.
    row.state = "deleting"
    ctx.ports.queue.enqueue("delete_backup", {"backup_id": row.id, "org_id": org_id})


def verify_backup(ctx: Ctx, org_id: str, backup_id: str) -> dict[str, Any]:
    row = _backup(ctx, org_id, backup_id)
    if row.state != "completed":
        raise Conflict(f"backup is {row.state}; only completed backups can be verified")
    _writable(row, "verify it")
    row.verify_state = "pending"
    ctx.audit("backup.verify", "backup", backup_id)
    # Each request carries its own id: Cloud Tasks names a task by its payload and refuses a name it
    # used within the last hour, so a second verify of the same backup would otherwise be dropped.
    ctx.ports.queue.enqueue("verify", {"backup_id": row.id, "org_id": org_id, "request": new_id("vrq")})
    return backup_out(row)


def manifest_summary(ctx: Ctx, org_id: str, backup_id: str) -> dict[str, Any]:
    row = _backup(ctx, org_id, backup_id)
    if row.state != "completed" or not row.manifest_key:
        raise Conflict(f"backup is {row.state}; a manifest exists only for completed backups")
    chunks = ctx.session.scalar(sa.select(sa.func.count()).select_from(BackupChunk).where(
        BackupChunk.backup_id == row.id)) or 0
    stored, problem = _stored_summary(ctx, row)
    return {"backup_id": row.id, "repo_backup_id": row.repo_backup_id, "manifest_key": row.manifest_key,
            "read_time": row.read_time, "documents": row.documents, "chunks": chunks,
            "bytes_raw": row.bytes_raw, "bytes_stored": row.bytes_stored, "stored": stored, "stored_error": problem}


def _stored_summary(ctx: Ctx, row: Backup) -> tuple[dict[str, Any] | None, str | None]:
    """The manifest's clear header from the destination; a storage problem is reported, not raised."""
    from firebackup.engine.repository import Repository

    dest = ctx.session.get(StorageDestination, row.destination_id) if row.destination_id else None
    if dest is None or not row.repo_backup_id:
        return None, "the backup has no storage location on record"
    try:
        # Inside an API request: one try and short timeouts, like the destination's /test.
        storage = open_destination(ctx, dest, bounded=True)
        try:
            summary = Repository(storage).read_summary(row.repo_backup_id)
        finally:
            storage.close()
    except (BackupNotFound, IntegrityError) as e:  # our own findings about our own format
        return None, str(e).splitlines()[0][:300]
    except FireBackupError as e:
        return None, probe_failure(e, "read the manifest")
    keep = ("backup_id", "created_at", "read_time", "documents", "bytes_stored", "encrypted", "kek_id", "dek_id",
            "format_version")
    return {k: summary.get(k) for k in keep}, None


# --- restores -------------------------------------------------------------------------------------

def list_restores(ctx: Ctx, org_id: str, q: PageRequest) -> tuple[list[dict[str, Any]], str | None]:
    rows, cursor = page(ctx.session, sa.select(Restore).where(Restore.org_id == org_id), Restore.id,
                        limit=q.limit, cursor=q.cursor, descending=True)
    return [restore_out(r) for r in rows], cursor


def get_restore(ctx: Ctx, org_id: str, restore_id: str) -> dict[str, Any]:
    return restore_out(get_in_org(ctx, Restore, org_id, restore_id, "restore"))


def start_restore(ctx: Ctx, org_id: str, cmd: StartRestore) -> dict[str, Any]:
    """Create a pending restore of a completed backup into a project of the same org; enqueue `restore`."""
    backup = _backup(ctx, org_id, cmd.backup_id)
    if backup.state != "completed":
        raise Conflict(f"backup is {backup.state}; only completed backups can be restored")
    _writable(backup, "restore it")
    if cmd.include_auth and not backup.include_auth:
        raise Invalid("this backup has no Auth users; restore without include_auth")
    target = get_project(ctx, org_id, cmd.target_project_id)
    if not cmd.dry_run and cmd.mode != "skip":
        # skip only creates what is missing, so it cannot overwrite data; overwrite and merge can.
        what = "documents and Auth users" if cmd.include_auth else "documents"
        require_role(ctx, Role.admin, f"a restore in {cmd.mode} mode (it can overwrite existing {what}; a member "
                                      "may dry-run it, or restore in skip mode)")
    row = Restore(id=new_id("rst"), org_id=org_id, backup_id=backup.id, target_project_id=target.id,
                  target_database=cmd.target_database, mode=cmd.mode, collections=_list_or_none(cmd.collections),
                  dry_run=cmd.dry_run, include_auth=cmd.include_auth, state="pending", requested_by=ctx.actor_id)
    return enqueue_restore(ctx, row)


def enqueue_restore(ctx: Ctx, row: Restore, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Store a new pending restore row, audit its start and enqueue its `plan` task (a restore or a point-in-time one)."""
    ctx.session.add(row)
    ctx.session.flush()
    ctx.audit("restore.start", "restore", row.id,
              {"backup_id": row.backup_id, "mode": row.mode, "dry_run": row.dry_run, **(details or {})},
              org_id=row.org_id)
    ctx.ports.queue.enqueue(RESTORE_PLAN, {"job": row.id})
    return restore_out(row)


def cancel_restore(ctx: Ctx, org_id: str, restore_id: str) -> dict[str, Any]:
    row = get_in_org(ctx, Restore, org_id, restore_id, "restore")
    if row.state not in ACTIVE:
        raise Conflict(f"restore is {row.state}; only pending or running restores can be cancelled")
    row.state, row.finished_at = "cancelled", utcnow()
    ctx.audit("restore.cancel", "restore", restore_id)
    return restore_out(row)


def record_outcome(ctx: Ctx, row: Backup | Restore, state: str, error: str | None = None) -> None:
    """Workers call this to finish a job; the outcome is audited in the same transaction."""
    kind = "backup" if isinstance(row, Backup) else "restore"
    row.state, row.error, row.finished_at = state, error, utcnow()
    ctx.audit(f"{kind}.{state}", kind, row.id, {"error": error} if error else None, org_id=row.org_id,
              result="success" if state == "completed" else "failure")
    if state in ("completed", "failed"):
        from firebackup.services.webhooks import queue_event

        queue_event(ctx, row.org_id, f"{kind}.{state}", {f"{kind}_id": row.id, "state": state, "error": error})
