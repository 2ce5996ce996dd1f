from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from firebackup.db.models import AuditLog, Backup, Schedule, new_id
from firebackup.services.context import Ctx
from firebackup.services.scheduling import apply_retention, run_due
from tests.integration.controlplane.test_job_outcomes import _harness_ports
from tests.integration.controlplane.world import build_world

EMAILS = {c: f"sched-{c}@example.com" for c in ("owner", "admin", "member", "viewer", "outsider")}
T0 = datetime(2026, 6, 1, 0, 0, tzinfo=timezone.utc)


def _schedule(api, w, **kw) -> str:
    sid = new_id("sch")
    with api.session() as s, s.begin():
        s.add(Schedule(id=sid, org_id=w.org, project_id=w.project, destination_id=w.destination, name="n",
                       cron=kw.get("cron", "0 3 * * *"), timezone=kw.get("tz", "Europe/Paris"),
                       retention=kw.get("retention", {}), created_at=T0, enabled=kw.get("enabled", True)))
    return sid


def test_due_schedules_start_one_backup_each_in_their_time_zone_and_not_twice(api) -> None:
    w = build_world(api, EMAILS)
    sid = _schedule(api, w)  # 03:00 Paris = 01:00 UTC in June
    _schedule(api, w, enabled=False)
    ports = _harness_ports(api)
    with api.session() as s, s.begin():
        assert run_due(Ctx(s, ports), T0 + timedelta(minutes=59)) == []
    with api.session() as s, s.begin():
        started = run_due(Ctx(s, ports), T0 + timedelta(hours=1))
    assert len(started) == 1 and api.queue.tasks[-1] == ("backup.plan", {"job": started[0]})
    with api.session() as s, s.begin():
        assert run_due(Ctx(s, ports), T0 + timedelta(hours=2)) == []
        b = s.get(Backup, started[0])
        assert (b.schedule_id, b.state, b.project_id) == (sid, "pending", w.project)
        assert s.scalar(sa.select(AuditLog.actor_type).where(AuditLog.resource_id == b.id)) == "system"


def test_retention_keeps_the_newest_n_or_the_recent_days_and_deletes_the_rest(api) -> None:
    w = build_world(api, EMAILS)
    sid = _schedule(api, w, retention={"keep_last": 2, "keep_days": 3})
    ids = []
    with api.session() as s, s.begin():
        for age_days in (10, 8, 6, 2, 1):
            b = Backup(id=new_id("bkp"), org_id=w.org, project_id=w.project, destination_id=w.destination,
                       schedule_id=sid, state="completed", repo_backup_id=f"r{age_days}",
                       created_at=T0 - timedelta(days=age_days))
            s.add(b)
            s.flush()
            ids.append(b.id)
    with api.session() as s, s.begin():
        removed = apply_retention(Ctx(s, _harness_ports(api)), sid, T0)
    assert sorted(removed) == sorted(ids[:3])  # the two newest are within both rules
    with api.session() as s:
        assert sorted(s.scalars(sa.select(Backup.id).where(Backup.schedule_id == sid))) == sorted(ids[3:])
    assert {p["repo_backup_id"] for n, p in api.queue.tasks if n == "delete_backup"} == {"r10", "r8", "r6"}
