"""Deleting a destination with backups through the API, on SQLite and PostgreSQL: refused without a
choice; detached, the records stay listed and say what is gone (the foreign keys SET NULL)."""

from __future__ import annotations

import sqlalchemy as sa

from firebackup.db.models import AuditLog, Backup, Restore
from tests.integration.controlplane.world import build_world, seed_token

EMAILS = {c: f"cascade-{c}@example.com" for c in ("owner", "admin", "member", "viewer", "outsider")}


def test_a_destination_with_backups_is_refused_then_detached_with_its_backups_kept(api) -> None:
    w = build_world(api, EMAILS)
    with api.session() as s, s.begin():
        # The world's pending backup and restore would block it (tested in the unit tier): finished here.
        s.execute(sa.update(Backup).where(Backup.id == w.backup_pending).values(state="cancelled"))
        s.execute(sa.update(Restore).where(Restore.id == w.restore).values(state="completed"))
        admin = seed_token(s, w.org, "admin")
    path = f"/v1/orgs/{w.org}/destinations/{w.destination}"
    refused = api.call("DELETE", path, admin)
    assert refused.status_code == 409 and "?backups=detach" in refused.get_json()["error"]["message"]
    assert api.call("DELETE", path + "?backups=keep", admin).status_code == 422
    assert api.call("DELETE", path + "?backups=detach", admin).status_code == 204
    listed = api.call("GET", f"/v1/orgs/{w.org}/backups", admin).get_json()["items"]
    assert sorted((b["id"], b["destination_id"], tuple(b["detached"])) for b in listed) == sorted(
        (bid, None, ("destination",)) for bid in (w.backup_pending, w.backup_done))
    r = api.call("POST", f"/v1/orgs/{w.org}/backups/{w.backup_done}/verify", admin)
    assert r.status_code == 409 and "read-only" in r.get_json()["error"]["message"]
    with api.session() as s:
        actions = sorted(s.scalars(sa.select(AuditLog.action).where(
            AuditLog.org_id == w.org, AuditLog.action.in_(("backup.detach", "schedule.delete", "destination.delete")))))
    assert actions == ["backup.detach", "backup.detach", "destination.delete", "schedule.delete"]
