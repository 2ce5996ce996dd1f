"""Maintenance: retention removes objects before rows, the reaper fails lost jobs, and each step stands alone."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from firebackup.db.models import AuditLog, Backup, Restore, Schedule, StorageDestination, WebhookDelivery, new_id
from firebackup.engine.repository import Repository
from firebackup.services import maintenance, resources, retention
from firebackup.services.commands import AddWebhook
from firebackup.services.context import Role, SystemTx, system_transactions
from tests.unit.services.conftest import WrittenStorage

NOW = datetime(2026, 6, 10, 12, 0, tzinfo=timezone.utc)
REAP_AFTER = timedelta(minutes=30)


@pytest.fixture
def tx(world) -> SystemTx:
    return system_transactions(sessionmaker(world.session.get_bind(), expire_on_commit=False), world.ports)


def destination_storage(world, stores, org) -> WrittenStorage:
    dest = world.session.get(StorageDestination, org.destination_id)
    return stores.open(dest.kind, dest.url, {}, None)


def backup(world, org, storage: WrittenStorage | None, *, state: str = "completed", when: datetime = NOW,
           schedule_id: str | None = None, **values) -> tuple[str, str]:
    """A backup row and, if a storage is given, a manifest and a chunk under its repository id."""
    repo_id = Repository.new_backup_id(when)
    row = Backup(id=new_id("bkp"), org_id=org.id, project_id=org.project_id, destination_id=org.destination_id,
                 schedule_id=schedule_id, state=state, repo_backup_id=repo_id, created_at=when, read_time=when,
                 **values)
    world.session.add(row)
    world.session.commit()
    if storage is not None:
        storage.put(Repository.chunk_key(repo_id, "d0-00000"), b"chunk")
        storage.put(Repository.manifest_key(repo_id), b"manifest")
    return row.id, repo_id


def schedule(world, org, rules: dict[str, object]) -> str:
    sid = new_id("sch")
    world.session.add(Schedule(id=sid, org_id=org.id, project_id=org.project_id, destination_id=org.destination_id,
                               name="nightly", cron="0 3 * * *", timezone="UTC", retention=rules))
    world.session.commit()
    return sid


def objects_of(storage: WrittenStorage, repo_id: str) -> list[str]:
    return [o.key for o in storage.list(Repository.backup_prefix(repo_id))]


# --- retention ------------------------------------------------------------------------------------

class RowWatchingStorage(WrittenStorage):
    """Notes, for each object deleted, whether the backup rows still existed at that moment."""

    def __init__(self, url: str, tx: SystemTx) -> None:
        super().__init__(url)
        self.tx = tx
        self.rows_at_delete: list[int] = []

    def delete(self, key: str) -> None:
        with self.tx() as ctx:
            self.rows_at_delete.append(ctx.session.scalar(sa.select(sa.func.count()).select_from(Backup)) or 0)
        super().delete(key)


def test_retention_deletes_each_backups_objects_before_its_row_and_audits_it(world, stores, tx) -> None:
    org = world.org()
    url = world.session.get(StorageDestination, org.destination_id).url
    storage = stores.by_url[url] = RowWatchingStorage(url, tx)
    sid = schedule(world, org, {"keep_last": 1})
    old, old_repo = backup(world, org, storage, when=NOW - timedelta(days=2), schedule_id=sid)
    new, new_repo = backup(world, org, storage, when=NOW - timedelta(days=1), schedule_id=sid)
    backup(world, org, storage, state="failed", when=NOW - timedelta(days=3), schedule_id=sid)

    assert retention.apply(tx, sid, NOW) == [old]
    assert storage.rows_at_delete == [3, 3]  # both objects went while all three rows were still there
    assert objects_of(storage, old_repo) == [] and len(objects_of(storage, new_repo)) == 2
    with tx() as ctx:
        assert sorted(ctx.session.scalars(sa.select(Backup.state))) == ["completed", "failed"]
        audit = ctx.session.scalar(sa.select(AuditLog).where(AuditLog.action == "backup.retention_delete"))
        assert (audit.resource_id, audit.org_id, audit.actor_type) == (old, org.id, "system")


def test_a_backup_whose_objects_cannot_be_deleted_keeps_its_row_for_the_next_run(world, stores, tx) -> None:
    org = world.org()
    storage = destination_storage(world, stores, org)
    sid = schedule(world, org, {"keep_last": 1})
    old, old_repo = backup(world, org, storage, when=NOW - timedelta(days=2), schedule_id=sid)
    backup(world, org, storage, when=NOW - timedelta(days=1), schedule_id=sid)
    stores.refused.add(storage.url)
    assert retention.apply(tx, sid, NOW) == []
    with tx() as ctx:
        assert ctx.session.get(Backup, old) is not None
    stores.refused.clear()
    assert retention.apply(tx, sid, NOW) == [old] and objects_of(storage, old_repo) == []


# --- the reaper -------------------------------------------------------------------------------------

def test_the_reaper_fails_a_running_job_nobody_reports_on_and_deletes_its_partial_objects(
        world, stores, queue, tx) -> None:
    org = world.org()
    admin = world.ctx_as(org.users[Role.admin], org.id, Role.admin)
    resources.create_webhook(admin, org.id, AddWebhook("https://hooks.example.test/x", ("backup.failed",), "s3cret"))
    storage = destination_storage(world, stores, org)
    stale = dict(state="running", lease_until=NOW - timedelta(minutes=40), heartbeat_at=NOW - timedelta(minutes=45),
                 started_at=NOW - timedelta(hours=1))
    lost, lost_repo = backup(world, org, storage, **stale)
    beating, _ = backup(world, org, storage, **{**stale, "heartbeat_at": NOW - timedelta(minutes=5)})
    leased, _ = backup(world, org, storage, **{**stale, "lease_until": NOW + timedelta(minutes=5)})
    pending, _ = backup(world, org, storage, state="pending")
    restore = Restore(id=new_id("rst"), org_id=org.id, backup_id=beating, target_project_id=org.project_id,
                      state="running", lease_until=NOW - timedelta(hours=2), heartbeat_at=NOW - timedelta(hours=3))
    world.session.add(restore)
    world.session.commit()

    assert maintenance.reap(tx, NOW, REAP_AFTER) == [lost, restore.id]
    assert maintenance.reap(tx, NOW, REAP_AFTER) == []  # a second run finds nothing more
    assert objects_of(storage, lost_repo) == []
    with tx() as ctx:
        states = dict(ctx.session.execute(sa.select(Backup.id, Backup.state)).all())
        assert states == {lost: "failed", beating: "running", leased: "running", pending: "pending"}
        assert ctx.session.get(Backup, lost).error == "no worker reported for 45 minutes; the task was lost"
        assert ctx.session.get(Restore, restore.id).error == "no worker reported for 180 minutes; the task was lost"
        audited = ctx.session.scalars(sa.select(AuditLog.resource_id).where(AuditLog.action.like("%.failed"))).all()
        assert sorted(audited) == sorted([lost, restore.id])
        deliveries = ctx.session.scalars(sa.select(WebhookDelivery)).all()
        assert [(d.event, d.payload["data"]["backup_id"]) for d in deliveries] == [("backup.failed", lost)]


# --- one run, every step ----------------------------------------------------------------------------

def test_a_failing_step_is_reported_and_the_other_steps_still_run(world, stores, tx, monkeypatch) -> None:
    org = world.org()
    storage = destination_storage(world, stores, org)
    sid = schedule(world, org, {"keep_within": "1d"})
    old, _ = backup(world, org, storage, when=NOW - timedelta(days=5), schedule_id=sid)
    backup(world, org, storage, when=NOW - timedelta(hours=1), schedule_id=sid)

    def broken(*args: object) -> list[str]:
        raise RuntimeError("database went away")

    monkeypatch.setattr(maintenance, "reap", broken)
    report = maintenance.run(tx, NOW, reap_after=REAP_AFTER)
    assert report.errors == ["reaper: internal error (RuntimeError); see the worker log"]
    assert report.removed == {sid: [old]} and report.webhooks_redelivered == 0


# --- keyed fingerprints -------------------------------------------------------------------------------


def test_maintenance_replaces_old_unkeyed_sha256_fingerprints_with_keyed_ones_and_leaves_keyed_ones(world, tx) -> None:
    import hashlib

    from firebackup.db.models import Webhook

    org = world.org()
    admin = world.ctx_as(org.users[Role.admin], org.id, Role.admin)
    old = resources.create_webhook(admin, org.id, AddWebhook("https://hooks.example.test/a", ("backup.failed",),
                                                             "guessable"))
    new = resources.create_webhook(admin, org.id, AddWebhook("https://hooks.example.test/b", ("backup.failed",),
                                                             "another-secret"))
    world.session.commit()
    unkeyed = "sha256:" + hashlib.sha256(b"guessable").hexdigest()[:16]  # the form rows had before keying
    world.session.execute(sa.update(Webhook).where(Webhook.id == old.id).values(secret_fingerprint=unkeyed))
    world.session.commit()
    keyed_new = world.session.get(Webhook, new.id).secret_fingerprint

    report = maintenance.run(tx, NOW, reap_after=REAP_AFTER)
    world.session.expire_all()
    assert report.errors == [] and report.refingerprinted == 1
    assert world.session.get(Webhook, old.id).secret_fingerprint == world.ports.sealer.fingerprint("guessable")
    assert world.session.get(Webhook, new.id).secret_fingerprint == keyed_new
    assert maintenance.run(tx, NOW, reap_after=REAP_AFTER).refingerprinted == 0  # nothing old is left
