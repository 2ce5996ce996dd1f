"""run_due: each due instant of a schedule starts one backup, whatever the ticks do (unit tier: in-memory SQLite)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from firebackup.db.models import Backup, Schedule, ScheduleRun, new_id
from firebackup.engine.tasks import BACKUP_PLAN
from firebackup.services.context import SystemTx, system_transactions
from firebackup.services.scheduling import run_due

T0 = datetime(2026, 6, 1, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def tx(world) -> SystemTx:
    return system_transactions(sessionmaker(world.session.get_bind(), expire_on_commit=False), world.ports)


def schedule(world, org, *, cron: str = "0 3 * * *", tz: str = "Europe/Paris", enabled: bool = True,
             created_at: datetime = T0) -> str:
    sid = new_id("sch")
    world.session.add(Schedule(id=sid, org_id=org.id, project_id=org.project_id, destination_id=org.destination_id,
                               name="nightly", cron=cron, timezone=tz, retention={}, enabled=enabled,
                               created_at=created_at))
    world.session.commit()  # the ticks run in transactions of their own
    return sid


def runs(tx: SystemTx) -> list[tuple[str, datetime, str | None]]:
    with tx() as ctx:
        return [(r.schedule_id, r.due_at, r.backup_id)
                for r in ctx.session.scalars(sa.select(ScheduleRun).order_by(ScheduleRun.id))]


def test_a_due_schedule_starts_one_backup_in_its_time_zone_and_a_second_tick_starts_none(world, queue, tx) -> None:
    org = world.org()
    sid = schedule(world, org)  # 03:00 in Paris is 01:00 UTC in June
    schedule(world, org, enabled=False)
    queue.tasks.clear()
    assert run_due(tx, T0 + timedelta(minutes=59)) == []
    started = run_due(tx, T0 + timedelta(hours=1))
    assert len(started) == 1 and queue.tasks == [(BACKUP_PLAN, {"job": started[0]})]
    assert run_due(tx, T0 + timedelta(hours=1)) == []  # the same tick delivered again
    assert run_due(tx, T0 + timedelta(hours=2)) == []  # a later tick, no new instant
    assert runs(tx) == [(sid, T0 + timedelta(hours=1), started[0])]
    with tx() as ctx:
        b = ctx.session.get(Backup, started[0])
        assert (b.schedule_id, b.state, b.requested_by) == (sid, "pending", None)


def test_an_outage_starts_one_backup_for_the_latest_missed_instant(world, queue, tx) -> None:
    org = world.org()
    sid = schedule(world, org, cron="*/5 * * * *", tz="UTC")
    queue.tasks.clear()
    started = run_due(tx, T0 + timedelta(hours=6, minutes=2))  # 72 instants went by unseen
    assert len(started) == 1 and len(queue.tasks) == 1
    assert runs(tx) == [(sid, T0 + timedelta(hours=6), started[0])]


def test_an_instant_another_tick_claimed_first_starts_nothing(world, queue, tx) -> None:
    org = world.org()
    sid = schedule(world, org, cron="@hourly", tz="UTC")
    due = T0 + timedelta(hours=3)
    # Another tick inserted the run row and committed after this tick read the schedules.
    with tx() as ctx:
        ctx.session.add(ScheduleRun(schedule_id=sid, due_at=due))
    queue.tasks.clear()
    assert run_due(tx, due + timedelta(seconds=20)) == []
    assert queue.tasks == []
    with tx() as ctx:
        assert ctx.session.scalar(sa.select(sa.func.count()).select_from(Backup)) == 0


def test_a_slow_tick_never_starts_an_older_instant_after_a_newer_one(world, queue, tx) -> None:
    org = world.org()
    schedule(world, org, cron="@hourly", tz="UTC")
    newer = run_due(tx, T0 + timedelta(hours=5))
    assert run_due(tx, T0 + timedelta(hours=4)) == []  # its clock is behind: 04:00 is older than 05:00
    assert [r[1] for r in runs(tx)] == [T0 + timedelta(hours=5)] and len(newer) == 1


def test_one_broken_schedule_does_not_stop_the_others(world, queue, tx) -> None:
    org = world.org()
    broken = schedule(world, org, cron="0 3 * * *")
    with tx() as ctx:  # an expression stored before croniter's rules applied
        ctx.session.execute(sa.update(Schedule).where(Schedule.id == broken).values(cron="61 3 * * *"))
    good = schedule(world, org, cron="0 3 * * *")
    started = run_due(tx, T0 + timedelta(days=1))
    assert len(started) == 1 and [r[0] for r in runs(tx)] == [good]


def test_a_schedule_never_run_counts_from_its_creation(world, queue, tx) -> None:
    org = world.org()
    schedule(world, org, cron="0 3 * * *", tz="UTC", created_at=T0 + timedelta(hours=3, minutes=1))
    assert run_due(tx, T0 + timedelta(hours=12)) == []  # 03:00 came before the schedule existed
    assert len(run_due(tx, T0 + timedelta(days=1, hours=3))) == 1


def _next_run(tx: SystemTx, sid: str) -> datetime | None:
    with tx() as ctx:
        return ctx.session.get(Schedule, sid).next_run_at


def test_a_tick_stores_each_schedules_next_instant_and_later_ticks_skip_it_until_then(world, queue, tx) -> None:
    org = world.org()
    sid = schedule(world, org, cron="0 3 * * *", tz="UTC")
    assert _next_run(tx, sid) is None  # a new schedule: the next tick works it out
    assert run_due(tx, T0 + timedelta(hours=1)) == []
    assert _next_run(tx, sid) == T0 + timedelta(hours=3)
    started = run_due(tx, T0 + timedelta(hours=3))
    assert len(started) == 1
    assert _next_run(tx, sid) == T0 + timedelta(days=1, hours=3)
    # A tick before then finds nothing to do and leaves the stored instant as it is.
    assert run_due(tx, T0 + timedelta(days=1, hours=2, minutes=59)) == []
    assert _next_run(tx, sid) == T0 + timedelta(days=1, hours=3)


def test_a_changed_expression_is_worked_out_again_by_the_next_tick(world, queue, tx) -> None:
    from firebackup.services.commands import UpdateSchedule
    from firebackup.services.resources import update_schedule

    org = world.org()
    sid = schedule(world, org, cron="0 3 * * *", tz="UTC")
    assert run_due(tx, T0 + timedelta(hours=1)) == []
    with tx() as ctx:
        update_schedule(ctx, org.id, sid, UpdateSchedule(cron="30 1 * * *"))
    assert _next_run(tx, sid) is None
    assert len(run_due(tx, T0 + timedelta(hours=1, minutes=30))) == 1
    assert _next_run(tx, sid) == T0 + timedelta(days=1, hours=1, minutes=30)
