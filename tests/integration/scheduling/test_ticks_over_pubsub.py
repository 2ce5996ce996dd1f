"""Ticks published on the Pub/Sub emulator reach the scheduler and maintenance functions as Eventarc delivers them.

The database decides "once per due instant": each test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from firebackup.db.models import AuditLog, Backup, Schedule, ScheduleRun, new_id
from firebackup.engine.repository import Repository
from tests.integration.scheduling.conftest import Tenant, deliver, seed_tenant


def add_schedule(engine: sa.Engine, t: Tenant, cron: str, *, created_ago: timedelta, enabled: bool = True) -> str:
    sid = new_id("sch")
    with engine.begin() as conn:
        conn.execute(sa.insert(Schedule).values(
            id=sid, org_id=t.org, project_id=t.project, destination_id=t.destination, name=cron, cron=cron,
            timezone="Europe/Paris", retention={}, enabled=enabled,
            created_at=datetime.now(timezone.utc) - created_ago))
    return sid


def backups_of(engine: sa.Engine, schedule_id: str) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(Backup.id, Backup.state)
                                               .where(Backup.schedule_id == schedule_id))]


def test_a_tick_from_the_emulator_starts_the_due_backup_once_and_its_redelivery_starts_nothing(
        engine, db_url, pubsub, serve_function) -> None:
    t = seed_tenant(engine)
    every_minute = add_schedule(engine, t, "* * * * *", created_ago=timedelta(minutes=10))
    disabled = add_schedule(engine, t, "* * * * *", created_ago=timedelta(minutes=10), enabled=False)
    url = serve_function("scheduler", db_url)
    (tick,) = pubsub.publish_and_pull(1)

    assert deliver(url, tick, pubsub) == 200
    started = backups_of(engine, every_minute)
    assert [state for _, state in started] == ["pending"]
    assert deliver(url, tick, pubsub) == 200  # Pub/Sub delivers at least once
    assert backups_of(engine, every_minute) == started and backups_of(engine, disabled) == []
    with engine.connect() as conn:
        due = conn.execute(sa.select(ScheduleRun.due_at, ScheduleRun.backup_id)).all()
        actor = conn.scalar(sa.select(AuditLog.actor_type).where(AuditLog.resource_id == started[0][0]))
    # The due instant is the tick's publish minute, whatever the clock said when it was delivered.
    minute = tick.publish_time.replace(second=0, microsecond=0)
    assert [(d.replace(tzinfo=timezone.utc), b) for d, b in due] == [(minute, started[0][0])]
    assert actor == "system"


def test_two_overlapping_ticks_start_one_backup_for_one_due_instant(engine, db_url, pubsub, serve_function) -> None:
    t = seed_tenant(engine)
    # Yearly: both ticks (whatever minute each was published in) see the same latest due instant.
    yearly = add_schedule(engine, t, "0 0 1 1 *", created_ago=timedelta(days=800))
    url = serve_function("scheduler", db_url)
    ticks = pubsub.publish_and_pull(2)
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(lambda m: deliver(url, m, pubsub), [*ticks, *ticks]))
    assert statuses == [200, 200, 200, 200]
    assert len(backups_of(engine, yearly)) == 1


def test_a_maintenance_tick_reaps_a_backup_no_worker_reports_on(engine, db_url, pubsub, serve_function,
                                                                 tmp_path) -> None:
    t = seed_tenant(engine, destination_url=f"file://{tmp_path / 'dest'}")
    now = datetime.now(timezone.utc)
    repo_id = Repository.new_backup_id(now - timedelta(hours=2))
    partial = tmp_path / "dest" / Repository.chunk_key(repo_id, "d0-00000")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half a chunk")
    stale, alive = new_id("bkp"), new_id("bkp")
    with engine.begin() as conn:
        for bid, beat in ((stale, now - timedelta(hours=2)), (alive, now - timedelta(minutes=1))):
            conn.execute(sa.insert(Backup).values(
                id=bid, org_id=t.org, project_id=t.project, destination_id=t.destination, state="running",
                repo_backup_id=repo_id if bid == stale else None, started_at=now - timedelta(hours=3),
                heartbeat_at=beat, lease_until=now - timedelta(minutes=30)))
    url = serve_function("maintenance", db_url, FIREBACKUP_REAP_AFTER_SECONDS="900")
    (tick,) = pubsub.publish_and_pull(1, tick="firebackup-maintenance")

    assert deliver(url, tick, pubsub) == 200
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.select(Backup.id, Backup.state)).all())
        error = conn.scalar(sa.select(Backup.error).where(Backup.id == stale))
    assert rows == {stale: "failed", alive: "running"}
    assert error == "no worker reported for 120 minutes; the task was lost"
    assert not partial.exists()
