"""Scheduled backups: what the `scheduler` function runs on every tick.

Each due instant of a schedule starts one backup, however many ticks see it: the tick inserts a
ScheduleRun row, unique on (schedule_id, due_at), in the same transaction that creates the backup
row and enqueues its plan (jobs.start_backup). A second tick that saw the same instant (a
duplicate delivery, a late one, two ticks running at once) fails that insert on the unique key
and starts nothing; the database decides, on SQLite as on PostgreSQL. The same transaction moves
the schedule's last_run_at forward only (a conditional UPDATE), so a slow tick can never start
an older instant after a newer one has run.

A tick starts only the latest due instant in (last_run_at, now]: after an outage the schedule
runs once, not once per missed minute.

A tick reads only the schedules due by now: each stores its next due instant (next_run_at, set
when it starts or when a tick finds it not due yet; NULL when new or its expression changed, so
the next tick works it out), and a partial index on the enabled ones serves the query.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import sqlalchemy as sa

from firebackup.db.models import Schedule, ScheduleRun
from firebackup.errors import FireBackupError
from firebackup.services.commands import StartBackup
from firebackup.services.context import Ctx, SystemTx
from firebackup.services.cron import parse_cron
from firebackup.services.jobs import start_backup

log = logging.getLogger("firebackup.scheduler")


@dataclass(frozen=True)
class _Due:
    schedule_id: str
    cron: str
    timezone: str
    since: dt.datetime


class _NotToRun(Exception):
    """A newer due instant of the schedule has started already, or it was disabled or deleted meanwhile."""


def run_due(tx: SystemTx, now: dt.datetime) -> list[str]:
    """Start one backup per enabled schedule whose latest due instant in (last_run_at, now] has not started.

    Returns the ids of the backups started. One schedule's problem (its project deleted, a bad
    stored expression) is logged and skips that schedule only.
    """
    with tx() as ctx:
        candidates = [_Due(s.id, s.cron, s.timezone, s.last_run_at or s.created_at) for s in ctx.session.scalars(
            # `enabled`, not `enabled IS true`: PostgreSQL proves only the former matches the partial
            # index ix_schedules_due (WHERE enabled).
            sa.select(Schedule).where(Schedule.enabled, sa.or_(Schedule.next_run_at.is_(None),
                                                               Schedule.next_run_at <= now))
            .order_by(Schedule.id))]
    started = []
    for cand in candidates:
        try:
            cron = parse_cron(cand.cron, cand.timezone)
            due = cron.latest_at_or_before(now)
            if due is None or due <= cand.since:
                _remember_next(tx, cand, cron.next_after(cand.since))
                continue
            with tx() as ctx:
                backup_id = _start(ctx, cand.schedule_id, due, cron.next_after(due))
        except (sa.exc.IntegrityError, _NotToRun):
            continue  # another tick started this instant (or a newer one) first, or it was disabled
        except FireBackupError as e:
            log.warning("schedule %s: not started: %s", cand.schedule_id, str(e).splitlines()[0] if str(e) else e)
            continue
        started.append(backup_id)  # after the commit: only what really started
    return started


def _remember_next(tx: SystemTx, cand: _Due, next_at: dt.datetime | None) -> None:
    """Store when the schedule is next due, so ticks before then skip it; not if its expression changed meanwhile."""
    with tx() as ctx:
        ctx.session.execute(sa.update(Schedule).where(Schedule.id == cand.schedule_id, Schedule.cron == cand.cron,
                                                      Schedule.timezone == cand.timezone).values(next_run_at=next_at))


def _start(ctx: Ctx, schedule_id: str, due: dt.datetime, next_at: dt.datetime | None) -> str:
    """In one transaction: claim (schedule, due) with its unique row, then start the backup; returns its id."""
    run = ScheduleRun(schedule_id=schedule_id, due_at=due)
    ctx.session.add(run)
    ctx.session.flush()  # the decision: a second claim of this instant raises IntegrityError here
    moved = ctx.session.connection().execute(
        sa.update(Schedule).where(Schedule.id == schedule_id, Schedule.enabled.is_(True),
                                  sa.or_(Schedule.last_run_at.is_(None), Schedule.last_run_at < due))
        .values(last_run_at=due, next_run_at=next_at)).rowcount
    if not moved:
        raise _NotToRun(schedule_id)
    sch = ctx.session.get(Schedule, schedule_id)
    if sch is None:
        raise _NotToRun(schedule_id)
    out = start_backup(ctx, sch.org_id, StartBackup(
        project_id=sch.project_id, destination_id=sch.destination_id,
        collections=tuple(sch.collections) if sch.collections else None, schedule_id=sch.id))
    run.backup_id = out["id"]
    backup_id: str = out["id"]
    return backup_id
