"""Deleting a project or destination never takes its backups along silently: refused, or deleted or
detached as the caller chose, each consequence audited."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from firebackup.db.models import AuditLog, Backup, Schedule, StorageDestination, new_id
from firebackup.engine.repository import Repository
from firebackup.services import jobs, resources
from firebackup.services.commands import DeleteWithBackups, StartRestore
from firebackup.services.context import Role
from firebackup.services.errors import Conflict

REPO_ID = "20260101T000000Z-0123abcd"


def _backup(world, org, state: str = "completed") -> str:
    b = Backup(id=new_id("bkp"), org_id=org.id, project_id=org.project_id, destination_id=org.destination_id,
               state=state, repo_backup_id=REPO_ID if state == "completed" else None)
    world.session.add(b)
    world.session.add(Schedule(id=new_id("sch"), org_id=org.id, project_id=org.project_id,
                               destination_id=org.destination_id, name="nightly", cron="0 3 * * *"))
    world.session.flush()
    return b.id


def _admin(world, org):
    return world.ctx_as(org.users[Role.admin], org.id, Role.admin)


def _actions(world) -> list[str]:
    """The audited consequences, sorted (ids made in one millisecond do not sort by creation)."""
    return sorted(a.action for a in world.session.scalars(sa.select(AuditLog))
                  if a.action.split(".")[0] in ("backup", "schedule", "project", "destination", "restore")
                  and a.action not in ("project.connect", "destination.create"))


@pytest.mark.parametrize("what", ["project", "destination"])
def test_deleting_with_backups_on_record_and_no_choice_is_refused_and_nothing_changes(world, what) -> None:
    org = world.org()
    bid = _backup(world, org)
    delete = resources.delete_project if what == "project" else resources.delete_destination
    row_id = org.project_id if what == "project" else org.destination_id
    with pytest.raises(Conflict, match=r"has 1 backup\(s\); add \?backups=delete .* or \?backups=detach"):
        delete(_admin(world, org), org.id, row_id)
    assert world.session.get(Backup, bid) is not None and _actions(world) == []


@pytest.mark.parametrize("what", ["project", "destination"])
def test_a_backup_in_progress_blocks_the_deletion_whatever_the_choice(world, what) -> None:
    org = world.org()
    _backup(world, org, "running")
    delete = resources.delete_project if what == "project" else resources.delete_destination
    row_id = org.project_id if what == "project" else org.destination_id
    with pytest.raises(Conflict, match="in progress; cancel them first"):
        delete(_admin(world, org), org.id, row_id, DeleteWithBackups("detach"))


def test_detaching_keeps_the_records_listed_read_only_and_audits_each_consequence(world) -> None:
    org = world.org()
    bid = _backup(world, org)
    resources.delete_destination(_admin(world, org), org.id, org.destination_id, DeleteWithBackups("detach"))
    out = jobs.get_backup(_admin(world, org), org.id, bid)
    assert (out["destination_id"], out["project_id"], out["detached"]) == (None, org.project_id, ["destination"])
    assert _actions(world) == ["backup.detach", "destination.delete", "schedule.delete"]
    admin = _admin(world, org)
    for refused in (lambda: jobs.verify_backup(admin, org.id, bid), lambda: jobs.delete_backup(admin, org.id, bid),
                    lambda: jobs.start_restore(admin, org.id, StartRestore(backup_id=bid,
                                                                          target_project_id=org.project_id))):
        with pytest.raises(Conflict, match="detached, its storage destination was deleted"):
            refused()


def test_a_backup_detached_from_its_project_still_restores_from_its_destination(world) -> None:
    org = world.org()
    bid = _backup(world, org)
    resources.delete_project(_admin(world, org), org.id, org.project_id, DeleteWithBackups("detach"))
    assert jobs.get_backup(_admin(world, org), org.id, bid)["detached"] == ["project"]
    assert world.session.scalars(sa.select(Schedule)).all() == []


def test_deleting_a_project_with_its_backups_goes_through_backup_deletion_for_each(world, queue) -> None:
    org = world.org()
    bid = _backup(world, org)
    resources.delete_project(_admin(world, org), org.id, org.project_id, DeleteWithBackups("delete"))
    # The worker deletes the objects, then the row; until then the row says so, bound to its organization.
    assert world.session.get(Backup, bid).state == "deleting"
    assert queue.tasks == [("delete_backup", {"backup_id": bid, "org_id": org.id})]
    assert _actions(world) == ["backup.delete", "project.delete", "schedule.delete"]


def test_deleting_a_destination_with_its_backups_deletes_their_objects_before_the_destination_goes(
        world, stores, queue) -> None:
    org = world.org()
    bid = _backup(world, org)
    url = world.session.get(StorageDestination, org.destination_id).url
    storage = stores.open("local", url, {}, None)
    repo = Repository(storage)
    storage.put(repo.manifest_key(REPO_ID), b"m")
    storage.put(repo.backup_prefix(REPO_ID) + "chunk", b"c")
    resources.delete_destination(_admin(world, org), org.id, org.destination_id, DeleteWithBackups("delete"))
    assert list(storage.list(repo.backup_prefix(REPO_ID))) == []
    assert world.session.get(Backup, bid) is None and queue.tasks == []  # nothing left for a worker to open
    assert _actions(world) == ["backup.delete", "destination.delete", "schedule.delete"]


def test_a_destination_whose_objects_cannot_be_deleted_keeps_every_record(world, stores) -> None:
    org = world.org()
    bid = _backup(world, org)
    stores.refused.add(world.session.get(StorageDestination, org.destination_id).url)
    with pytest.raises(Conflict, match="^could not open the destination to delete its backups: access denied"):
        resources.delete_destination(_admin(world, org), org.id, org.destination_id, DeleteWithBackups("delete"))
    assert world.session.get(Backup, bid) is not None
