"""Backups and restores: ownership checks, state rules, and what each start enqueues."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from firebackup.db.models import AuditLog, Backup, Webhook, WebhookDelivery
from firebackup.services import jobs, resources
from firebackup.services.commands import AddWebhook, StartBackup, StartRestore
from firebackup.services.context import Role
from firebackup.engine.tasks import BACKUP_PLAN, RESTORE_PLAN
from firebackup.services.errors import Conflict, Invalid, NotFound, PermissionDenied


def plan_task(backup_id: str) -> tuple[str, dict[str, str]]:
    """The task that runs a new backup (its name is spelt once, in engine/tasks.py)."""
    return (BACKUP_PLAN, {"job": backup_id})


def restore_task(restore_id: str) -> tuple[str, dict[str, str]]:
    return (RESTORE_PLAN, {"job": restore_id})


def _start(world, org, **kw):
    ctx = world.ctx_as(org.users[Role.member], org.id, Role.member)
    return jobs.start_backup(ctx, org.id, StartBackup(org.project_id, org.destination_id, **kw))


def _set_state(world, backup_id: str, state: str, **values) -> None:
    row = world.session.get(Backup, backup_id)
    row.state = state
    for k, v in values.items():
        setattr(row, k, v)
    world.session.flush()


def test_start_backup_records_a_pending_row_and_enqueues_exactly_one_plan_task(world, queue) -> None:
    org = world.org()
    queue.tasks.clear()
    out = _start(world, org, collections=("users", "orders"), include_auth=True)
    assert queue.tasks == [plan_task(out["id"])]
    row = world.session.get(Backup, out["id"])
    assert (row.state, row.org_id, row.collections, row.include_auth) == ("pending", org.id, ["users", "orders"], True)
    assert row.requested_by == org.users[Role.member]
    assert out["progress"] == 0.0


@pytest.mark.parametrize("swap", ["project_id", "destination_id"])
def test_start_backup_with_another_orgs_project_or_destination_is_not_found_and_enqueues_nothing(
        world, queue, swap: str) -> None:
    mine, theirs = world.org("Mine"), world.org("Theirs")
    queue.tasks.clear()
    ids = {"project_id": mine.project_id, "destination_id": mine.destination_id, swap: getattr(theirs, swap)}
    ctx = world.ctx_as(mine.users[Role.owner], mine.id, Role.member)
    with pytest.raises(NotFound):
        jobs.start_backup(ctx, mine.id, StartBackup(**ids))
    assert queue.tasks == []
    assert world.session.scalar(sa.select(sa.func.count()).select_from(Backup)) == 0


def test_the_system_starts_a_scheduled_backup_with_no_requester_and_is_audited_as_system(world, queue) -> None:
    org = world.org()
    queue.tasks.clear()
    out = jobs.start_backup(world.system(), org.id, StartBackup(org.project_id, org.destination_id,
                                                                 schedule_id=None, include_auth=True))
    row = world.session.get(Backup, out["id"])
    assert row.requested_by is None and row.include_auth is True
    assert queue.tasks == [plan_task(row.id)]
    audit = world.session.scalar(sa.select(AuditLog).where(AuditLog.action == "backup.start"))
    assert (audit.actor_type, audit.actor_id, audit.org_id, audit.resource_id) == ("system", None, org.id, row.id)


def test_the_system_is_refused_another_orgs_project_like_anyone_else(world, queue) -> None:
    mine, theirs = world.org("Mine"), world.org("Theirs")
    queue.tasks.clear()
    with pytest.raises(NotFound):
        jobs.start_backup(world.system(), mine.id, StartBackup(theirs.project_id, mine.destination_id))
    assert queue.tasks == []


@pytest.mark.parametrize("state,allowed", [("pending", True), ("running", True), ("completed", False),
                                           ("failed", False), ("cancelled", False)])
def test_only_pending_or_running_backups_can_be_cancelled(world, state: str, allowed: bool) -> None:
    org = world.org()
    b = _start(world, org)["id"]
    _set_state(world, b, state)
    ctx = world.ctx_as(org.users[Role.member], org.id, Role.member)
    if allowed:
        assert jobs.cancel_backup(ctx, org.id, b)["state"] == "cancelled"
    else:
        with pytest.raises(Conflict):
            jobs.cancel_backup(ctx, org.id, b)


def test_a_backup_in_progress_cannot_be_deleted_and_a_finished_ones_objects_go_through_a_task(world, queue) -> None:
    org = world.org()
    b = _start(world, org)["id"]
    ctx = world.ctx_as(org.users[Role.admin], org.id, Role.admin)
    with pytest.raises(Conflict):
        jobs.delete_backup(ctx, org.id, b)
    _set_state(world, b, "completed", repo_backup_id="r-1")
    queue.tasks.clear()
    jobs.delete_backup(ctx, org.id, b)
    world.session.flush()
    # The row stays, marked, until the worker has removed its objects: the task names the row and its org.
    assert world.session.get(Backup, b).state == "deleting"
    assert queue.tasks == [("delete_backup", {"backup_id": b, "org_id": org.id})]


def test_another_orgs_backup_cannot_be_seen_cancelled_or_deleted(world) -> None:
    mine, theirs = world.org("Mine"), world.org("Theirs")
    b = _start(world, theirs)["id"]
    ctx = world.ctx_as(mine.users[Role.owner], mine.id, Role.owner)
    for call in (jobs.get_backup, jobs.cancel_backup, jobs.delete_backup, jobs.verify_backup):
        with pytest.raises(NotFound):
            call(ctx, mine.id, b)


def test_only_completed_backups_can_be_restored_or_verified(world, queue) -> None:
    org = world.org()
    b = _start(world, org)["id"]
    ctx = world.ctx_as(org.users[Role.member], org.id, Role.member)
    with pytest.raises(Conflict):
        jobs.start_restore(ctx, org.id, StartRestore(b, org.project_id))
    with pytest.raises(Conflict):
        jobs.verify_backup(ctx, org.id, b)
    _set_state(world, b, "completed")
    queue.tasks.clear()
    r = jobs.start_restore(ctx, org.id, StartRestore(b, org.project_id, mode="skip", collections=("users",)))
    assert (r["state"], r["mode"], r["collections"]) == ("pending", "skip", ["users"])
    assert jobs.verify_backup(ctx, org.id, b)["verify_state"] == "pending"
    [restore, (verify, payload)] = queue.tasks
    assert restore == restore_task(r["id"]) and verify == "verify"
    # Each verify request has its own id, so Cloud Tasks does not drop a second one as a duplicate.
    assert payload == {"backup_id": b, "org_id": org.id, "request": payload["request"]}
    assert payload["request"].startswith("vrq_")


def test_restoring_auth_users_needs_a_backup_that_has_them(world) -> None:
    org = world.org()
    b = _start(world, org, include_auth=False)["id"]
    _set_state(world, b, "completed")
    ctx = world.ctx_as(org.users[Role.member], org.id, Role.member)
    with pytest.raises(Invalid):
        jobs.start_restore(ctx, org.id, StartRestore(b, org.project_id, include_auth=True))


@pytest.mark.parametrize("mode", ["overwrite", "merge"])
def test_a_member_may_not_run_a_restore_that_can_overwrite_data_but_may_dry_run_it_or_skip(world, queue,
                                                                                        mode) -> None:
    org = world.org()
    b = _start(world, org)["id"]
    _set_state(world, b, "completed")
    member = world.ctx_as(org.users[Role.member], org.id, Role.member)
    with pytest.raises(PermissionDenied, match=f"a restore in {mode} mode .* needs the admin role"):
        jobs.start_restore(member, org.id, StartRestore(b, org.project_id, mode=mode))
    assert jobs.start_restore(member, org.id, StartRestore(b, org.project_id, mode=mode, dry_run=True))["dry_run"]
    assert jobs.start_restore(member, org.id, StartRestore(b, org.project_id, mode="skip"))["mode"] == "skip"
    admin = world.ctx_as(org.users[Role.admin], org.id, Role.admin)
    assert jobs.start_restore(admin, org.id, StartRestore(b, org.project_id, mode=mode))["mode"] == mode


def test_a_restore_into_another_orgs_project_is_not_found(world) -> None:
    mine, theirs = world.org("Mine"), world.org("Theirs")
    b = _start(world, mine)["id"]
    _set_state(world, b, "completed")
    ctx = world.ctx_as(mine.users[Role.member], mine.id, Role.member)
    with pytest.raises(NotFound):
        jobs.start_restore(ctx, mine.id, StartRestore(b, theirs.project_id))


def test_a_finished_backup_queues_one_delivery_per_enabled_webhook_subscribed_to_its_outcome(world, queue) -> None:
    org = world.org()
    admin = world.ctx_as(org.users[Role.admin], org.id, Role.admin)
    secret = "s" * 20
    done = resources.create_webhook(admin, org.id, AddWebhook("https://a.test/h", ("backup.completed",), secret))
    resources.create_webhook(admin, org.id, AddWebhook("https://b.test/h", ("backup.failed",), secret))
    off = resources.create_webhook(admin, org.id, AddWebhook("https://c.test/h", ("backup.completed",), secret))
    world.session.get(Webhook, off.id).enabled = False
    b = _start(world, org)["id"]
    _set_state(world, b, "running")
    queue.tasks.clear()

    jobs.record_outcome(world.system(), world.session.get(Backup, b), "completed")

    deliveries = world.session.scalars(sa.select(WebhookDelivery)).all()
    assert [(d.webhook_id, d.event, d.payload["data"]["backup_id"]) for d in deliveries] == [
        (done.id, "backup.completed", b)]
    assert queue.tasks == [("webhook_deliver", {"delivery_id": deliveries[0].id, "attempt": 1})]
    audit = world.session.scalar(sa.select(AuditLog).where(AuditLog.action == "backup.completed"))
    assert (audit.org_id, audit.actor_type, audit.result) == (org.id, "system", "success")


def test_a_cancelled_outcome_is_audited_but_fires_no_webhook(world, queue) -> None:
    org = world.org()
    admin = world.ctx_as(org.users[Role.admin], org.id, Role.admin)
    resources.create_webhook(admin, org.id, AddWebhook("https://a.test/h", ("backup.completed", "backup.failed"),
                                                       "s" * 20))
    b = _start(world, org)["id"]
    queue.tasks.clear()
    jobs.record_outcome(world.system(), world.session.get(Backup, b), "cancelled")
    assert queue.tasks == []
    assert world.session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)) == 0
