"""Scheduled backups and retention: what the `scheduler` function calls every minute (or so)."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from firebackup.db.models import Backup, Schedule
from firebackup.services.commands import StartBackup
from firebackup.services.context import Ctx
from firebackup.services.cron import parse_cron
from firebackup.services.jobs import start_backup


def run_due(ctx: Ctx, now: datetime) -> list[str]:
    """Start a backup for each enabled schedule with a run due in (last_run_at, now]; returns backup ids.

    A schedule never run counts from its creation, and missed runs collapse into one backup. Each
    backup starts through jobs.start_backup, the same path (and checks) as one started by the API.
    """
    started = []
    for sch in ctx.session.scalars(sa.select(Schedule).where(Schedule.enabled.is_(True)).order_by(Schedule.id)):
        since = sch.last_run_at or sch.created_at
        due = parse_cron(sch.cron, sch.timezone).next_after(since)
        if due is None or due > now:
            continue
        out = start_backup(ctx, sch.org_id, StartBackup(
            project_id=sch.project_id, destination_id=sch.destination_id,
            collections=tuple(sch.collections) if sch.collections else None, schedule_id=sch.id))
        sch.last_run_at = now
        started.append(out["id"])
    return started


def apply_retention(ctx: Ctx, schedule_id: str, now: datetime) -> list[str]:
    """Delete the schedule's completed backups that neither keep_last nor keep_days protects.

    With both set, a backup is kept if either rule keeps it; with neither, everything is kept.
    Rows go now; the objects are removed by a `delete_backup` task.
    """
    sch = ctx.session.get(Schedule, schedule_id)
    if sch is None:
        return []  # the schedule was deleted since: nothing of it to apply
    rules = sch.retention or {}
    keep_last, keep_days = rules.get("keep_last"), rules.get("keep_days")
    if not keep_last and not keep_days:
        return []
    done = ctx.session.scalars(sa.select(Backup).where(Backup.schedule_id == sch.id, Backup.state == "completed")
                               # Ids made in the same instant sort randomly: rank by creation time.
                               .order_by(Backup.created_at.desc(), Backup.id.desc())).all()
    removed = []
    for i, b in enumerate(done):
        kept_by_count = keep_last is not None and i < keep_last
        kept_by_age = keep_days is not None and b.created_at >= now - timedelta(days=keep_days)
        if kept_by_count or kept_by_age:
            continue
        removed.append(b.id)
        if b.repo_backup_id:
            ctx.ports.queue.enqueue("delete_backup", {"destination_id": b.destination_id, "repo_backup_id": b.repo_backup_id})
        ctx.session.delete(b)
        ctx.audit("backup.retention_delete", "backup", b.id, {"schedule_id": sch.id}, org_id=sch.org_id)
    return removed
