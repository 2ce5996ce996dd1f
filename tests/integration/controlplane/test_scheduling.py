from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

from firebackup.db.models import AuditLog, Backup, Schedule, new_id
from firebackup.engine.repository import Repository
from firebackup.services import maintenance
from firebackup.services.context import system_transactions
from firebackup.services.scheduling import run_due
from tests.integration.controlplane.test_job_outcomes import _harness_ports
from tests.integration.controlplane.world import build_world, seed_token

EMAILS = {c: f"sched-{c}@example.com" for c in ("owner", "admin", "member", "viewer", "outsider")}
T0 = datetime(2026, 6, 1, 0, 0, tzinfo=timezone.utc)


def _schedule(api, w, **kw) -> str:
    sid = new_id("sch")
    with api.session() as s, s.begin():
        s.add(Schedule(id=sid, org_id=w.org, project_id=w.project, destination_id=w.destination, name="n",
                       cron=kw.get("cron", "0 3 * * *"), timezone=kw.get("tz", "Europe/Paris"),
                       retention=kw.get("retention", {}), created_at=T0, enabled=kw.get("enabled", True)))
    return sid


def _token(api, org: str, role: str) -> str:
    with api.session() as s, s.begin():
        return seed_token(s, org, role)


def test_due_schedules_start_one_backup_each_in_their_time_zone_and_not_twice(api) -> None:
    w = build_world(api, EMAILS)
    sid = _schedule(api, w)  # 03:00 Paris = 01:00 UTC in June
    _schedule(api, w, enabled=False)
    tx = system_transactions(api.factory, _harness_ports(api))
    assert run_due(tx, T0 + timedelta(minutes=59)) == []
    started = run_due(tx, T0 + timedelta(hours=1))
    assert len(started) == 1 and api.queue.tasks[-1] == ("backup.plan", {"job": started[0]})
    assert run_due(tx, T0 + timedelta(hours=1)) == [] and run_due(tx, T0 + timedelta(hours=2)) == []
    with api.session() as s:
        b = s.get(Backup, started[0])
        assert (b.schedule_id, b.state, b.project_id) == (sid, "pending", w.project)
        assert s.scalar(sa.select(AuditLog.actor_type).where(AuditLog.resource_id == b.id)) == "system"


def test_the_retention_dry_run_shows_what_maintenance_then_removes_objects_and_rows_alike(api) -> None:
    w = build_world(api, EMAILS)
    now = datetime.now(timezone.utc)
    day0 = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)  # fixed times of day
    sid = _schedule(api, w, tz="UTC", retention={"keep_daily": 2, "keep_within": "12h"})
    ids, repos = {}, {}
    with api.session() as s, s.begin():
        for name, at in (("oldest", day0 - timedelta(days=7)), ("older", day0 - timedelta(hours=16)),
                         ("yesterday", day0 - timedelta(hours=4)), ("recent", day0 + timedelta(hours=10)),
                         ("newest", day0 + timedelta(hours=12))):
            repo = Repository.new_backup_id(at)
            b = Backup(id=new_id("bkp"), org_id=w.org, project_id=w.project, destination_id=w.destination,
                       schedule_id=sid, state="completed", repo_backup_id=repo, read_time=at, created_at=at)
            s.add(b)
            ids[name], repos[name] = b.id, repo
            for key in (Repository.manifest_key(repo), Repository.chunk_key(repo, "d0-00000")):
                Path(w.folder, key).parent.mkdir(parents=True, exist_ok=True)
                Path(w.folder, key).write_bytes(b"x")

    viewer = _token(api, w.org, "viewer")
    r = api.call("GET", f"/v1/orgs/{w.org}/schedules/{sid}/retention/preview", viewer)
    assert r.status_code == 200, r.get_json()
    preview = r.get_json()
    names = {v: k for k, v in ids.items()}
    assert {names[k["backup_id"]]: k["reasons"] for k in preview["keep"]} == {
        "newest": ["keep_within 12h", "keep_daily"], "recent": ["keep_within 12h"], "yesterday": ["keep_daily"]}
    removed_preview = sorted(b["backup_id"] for b in preview["remove"])
    assert removed_preview == sorted([ids["oldest"], ids["older"]])

    report = maintenance.run(system_transactions(api.factory, _harness_ports(api)), now,
                             reap_after=timedelta(minutes=30))
    assert report.errors == [] and sorted(report.removed[sid]) == removed_preview
    for name in ("oldest", "older"):
        assert not [p for p in Path(w.folder).rglob("*") if p.is_file() and repos[name] in str(p)]
    assert Path(w.folder, Repository.manifest_key(repos["yesterday"])).exists()
    with api.session() as s:
        left = set(s.scalars(sa.select(Backup.id).where(Backup.schedule_id == sid)))
        audited = set(s.scalars(sa.select(AuditLog.resource_id).where(AuditLog.action == "backup.retention_delete")))
    assert left == {ids["newest"], ids["recent"], ids["yesterday"]} and audited == set(removed_preview)

    other = build_world(api, EMAILS)  # another organization's schedule is not found through this one
    assert api.call("GET", f"/v1/orgs/{w.org}/schedules/{other.schedule}/retention/preview",
                    viewer).status_code == 404
