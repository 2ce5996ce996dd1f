"""Retention per schedule (grandfather-father-son), with the semantics of restic's `forget`.

The policy (`plan`) is a pure function of the backups' times, the rules and the schedule's time
zone. Backups are walked newest first:

- keep_last n keeps the n newest;
- keep_hourly / daily / weekly / monthly / yearly n keep the newest backup of each period (hour,
  day, ISO week, month, year, read on the schedule's local clock) until n periods are kept; if
  periods run out before n does, the oldest backup is kept as well (it stretches the history);
- keep_within D keeps every backup taken after (newest backup - D); the reference is the newest
  backup, not now, so a schedule that stopped running does not age its last backups away;
- the newest completed backup is kept whatever the rules say; with no rule at all, all are kept.

Removal (`apply`) deletes a backup's objects from its destination first (its manifest, then its
chunks: Repository.delete_backup) and only then, in one transaction, its row and an audit entry.
It runs directly in the maintenance function rather than as a `delete_backup` task: there it
is already off any request path, and "objects, then the row" stays one visible sequence, so a
row never disappears while objects it describes remain unrecorded. A crash between the two
leaves a row whose objects are gone; the next run finds nothing to delete and removes the row.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from firebackup.db.models import Backup, Schedule, StorageDestination
from firebackup.errors import BackupNotFound, FireBackupError
from firebackup.services.commands import Retention
from firebackup.services.context import Ctx, SystemTx
from firebackup.services.cron import parse_timezone
from firebackup.services.errors import Invalid
from firebackup.services.resources import get_in_org, open_destination

log = logging.getLogger("firebackup.retention")

_WITHIN = re.compile(r"(\d+)([ymdh])")


@dataclass(frozen=True)
class Within:
    """A keep_within duration in calendar units, as restic reads it: years, months, days, hours."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    def before(self, t: dt.datetime) -> dt.datetime:
        """`t` minus this duration; a day that does not exist in the month rolls over (31 March - 1m = 3 March)."""
        months = t.year * 12 + (t.month - 1) - self.years * 12 - self.months
        first = t.replace(year=months // 12, month=months % 12 + 1, day=1)
        return first + dt.timedelta(days=t.day - 1 - self.days, hours=-self.hours)


def parse_within(text: str) -> Within:
    """"30d", "12h", "1y6m" (y years, m months, d days, h hours); raises Invalid otherwise."""
    parts = _WITHIN.findall(text)
    if not text or "".join(n + u for n, u in parts) != text or len({u for _, u in parts}) != len(parts):
        raise Invalid(f"keep_within {text!r} is not a duration; write numbers with units y, m, d, h, e.g. 30d or 1y6m")
    amounts = {u: int(n) for n, u in parts}
    within = Within(amounts.get("y", 0), amounts.get("m", 0), amounts.get("d", 0), amounts.get("h", 0))
    if within == Within():
        raise Invalid(f"keep_within {text!r} is zero; give a positive duration such as 30d")
    return within


def check_rules(rules: Retention) -> None:
    """Raise Invalid for rules a schedule cannot hold (counts below 1, a malformed keep_within)."""
    for name, value in rules.as_dict().items():
        if name == "keep_within":
            parse_within(str(value))
        elif not isinstance(value, int) or value < 1:
            raise Invalid(f"retention {name} must be a whole number of at least 1 (got {value!r}); omit it to not use it")


@dataclass(frozen=True)
class Snapshot:
    """What the policy needs of a backup: its id and when it was taken."""

    id: str
    time: dt.datetime


@dataclass(frozen=True)
class Kept:
    snapshot: Snapshot
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    keep: list[Kept]
    remove: list[Snapshot]


Period = Callable[[dt.datetime], tuple[int, ...]]
_PERIODS: tuple[tuple[str, Period], ...] = (
    ("keep_hourly", lambda t: (t.year, t.month, t.day, t.hour)),
    ("keep_daily", lambda t: (t.year, t.month, t.day)),
    ("keep_weekly", lambda t: tuple(t.isocalendar()[:2])),
    ("keep_monthly", lambda t: (t.year, t.month)),
    ("keep_yearly", lambda t: (t.year,)),
)


def plan(snapshots: Sequence[Snapshot], rules: Retention, tz: ZoneInfo, now: dt.datetime) -> Plan:
    """Which snapshots the rules keep (each with the rules that keep it) and which they remove."""
    ordered = sorted(snapshots, key=lambda s: (s.time, s.id), reverse=True)
    if rules.is_empty():
        return Plan([Kept(s, ("no retention rules",)) for s in ordered], [])
    if not ordered:
        return Plan([], [])
    # The newest snapshot not in the future (a clock ahead would otherwise shift keep_within).
    reference = max((s.time for s in ordered if s.time <= now), default=ordered[-1].time)
    cutoff = parse_within(rules.keep_within).before(reference) if rules.keep_within else None
    left = {name: count for name, count in rules.as_dict().items() if isinstance(count, int)}
    last_period: dict[str, tuple[int, ...]] = {}
    keep: list[Kept] = []
    remove: list[Snapshot] = []
    for i, snap in enumerate(ordered):
        reasons: list[str] = []
        if cutoff is not None and snap.time > cutoff:
            reasons.append(f"keep_within {rules.keep_within}")
        if left.get("keep_last", 0) > 0:
            left["keep_last"] -= 1
            reasons.append("keep_last")
        local = snap.time.astimezone(tz)
        oldest = i == len(ordered) - 1
        for name, period_of in _PERIODS:
            if left.get(name, 0) <= 0:
                continue
            period = period_of(local)
            if period != last_period.get(name) or oldest:
                last_period[name] = period
                left[name] -= 1
                reasons.append(name)
        if i == 0 and not reasons:
            reasons.append("newest backup")
        if reasons:
            keep.append(Kept(snap, tuple(reasons)))
        else:
            remove.append(snap)
    return Plan(keep, remove)


# --- over the database -------------------------------------------------------------------------------

def _schedule_plan(ctx: Ctx, sch: Schedule, now: dt.datetime) -> tuple[Plan, dict[str, Backup]]:
    rows = ctx.session.scalars(sa.select(Backup).where(Backup.schedule_id == sch.id,
                                                       Backup.state == "completed")).all()
    by_id = {b.id: b for b in rows}
    snaps = [Snapshot(b.id, b.read_time or b.created_at) for b in rows]
    return plan(snaps, Retention.from_dict(sch.retention or {}), parse_timezone(sch.timezone), now), by_id


def preview_retention(ctx: Ctx, org_id: str, schedule_id: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """What apply would remove now, and for each backup it keeps, the rules that keep it (a dry run)."""
    sch = get_in_org(ctx, Schedule, org_id, schedule_id, "schedule")
    result, _ = _schedule_plan(ctx, sch, now or dt.datetime.now(dt.timezone.utc))
    return {"schedule_id": sch.id, "timezone": sch.timezone, "rules": dict(sch.retention or {}),
            "keep": [{"backup_id": k.snapshot.id, "time": k.snapshot.time, "reasons": list(k.reasons)}
                     for k in result.keep],
            "remove": [{"backup_id": s.id, "time": s.time} for s in result.remove]}


def apply(tx: SystemTx, schedule_id: str, now: dt.datetime) -> list[str]:
    """Remove what the schedule's rules do not keep: objects first, then row and audit; returns the ids removed.

    A backup whose objects cannot be deleted now (storage unreachable) keeps its row and is tried
    again on the next run; the others go on.
    """
    with tx() as ctx:
        sch = ctx.session.get(Schedule, schedule_id)
        if sch is None:
            return []  # deleted since the caller listed it
        result, rows = _schedule_plan(ctx, sch, now)
        doomed = [(s.id, rows[s.id].destination_id, rows[s.id].repo_backup_id) for s in result.remove]
        org_id, rules = sch.org_id, dict(sch.retention or {})
    removed = []
    for backup_id, dest_id, repo_id in doomed:
        try:
            delete_backup_objects(tx, dest_id, repo_id)
        except FireBackupError as e:
            log.warning("retention: backup %s keeps its row; its objects could not be deleted: %s", backup_id,
                        str(e).splitlines()[0] if str(e) else type(e).__name__)
            continue
        with tx() as ctx:
            gone = ctx.session.connection().execute(
                sa.delete(Backup).where(Backup.id == backup_id, Backup.state == "completed")).rowcount
            if not gone:
                continue  # deleted by someone else meanwhile
            ctx.audit("backup.retention_delete", "backup", backup_id, {"schedule_id": schedule_id, "rules": rules},
                      org_id=org_id)
        removed.append(backup_id)
    return removed


def delete_backup_objects(tx: SystemTx, dest_id: str | None, repo_id: str | None) -> None:
    """Delete a backup's objects (manifest first, then chunks) from its destination; done if none are left.

    Raises FireBackupError when the destination cannot be reached or refuses.
    """
    from firebackup.engine.repository import Repository

    with tx() as ctx:
        dest = ctx.session.get(StorageDestination, dest_id) if dest_id else None
        if dest is None or not repo_id:
            return  # nothing reachable holds objects for it
        storage = open_destination(ctx, dest)
    # Outside the transaction: deleting many objects must not hold the database.
    try:
        Repository(storage).delete_backup(repo_id)
    except BackupNotFound:
        pass  # already gone (an earlier run removed the objects, then stopped before the row)
    finally:
        storage.close()
