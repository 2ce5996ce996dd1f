"""Asking for a key rotation: one job per rotation, its lost task sent again, never a key that strands backups."""

from __future__ import annotations

from datetime import timedelta

import pytest

from firebackup.db.models import KeyRotation
from firebackup.engine.jobs import utcnow
from firebackup.engine.tasks import KEYS_ROTATE
from firebackup.services import keys
from firebackup.services.commands import SetOrgEncryption
from firebackup.services.context import Role
from firebackup.services.errors import Conflict

KEY = "projects/c/locations/global/keyRings/r/cryptoKeys/{}"


@pytest.fixture
def admin(world):
    org = world.org()
    return world.ctx_as(org.users[Role.admin], org.id, Role.admin), org.id


def test_asking_twice_for_the_same_rotation_gives_the_same_job_and_one_task(world, admin) -> None:
    ctx, org_id = admin
    first = keys.rotate_encryption(ctx, org_id, SetOrgEncryption(KEY.format("a")))
    again = keys.rotate_encryption(ctx, org_id, SetOrgEncryption(KEY.format("a")))
    assert first["id"] == again["id"] and first["state"] == "pending"
    assert world.ports.queue.tasks == [(KEYS_ROTATE, {"job": first["id"]})]


def test_a_rotation_whose_task_was_lost_gets_its_task_again_when_asked_again(world, admin) -> None:
    ctx, org_id = admin
    job = keys.rotate_encryption(ctx, org_id, SetOrgEncryption(KEY.format("a")))
    row = world.session.get(KeyRotation, job["id"])
    row.state, row.lease_until = "running", utcnow() - timedelta(seconds=1)
    keys.rotate_encryption(ctx, org_id, SetOrgEncryption(KEY.format("a")))
    first, again = world.ports.queue.tasks
    assert first == (KEYS_ROTATE, {"job": job["id"]})
    # The same job, under a payload of its own: Cloud Tasks refuses a task name used within the hour.
    assert again[0] == KEYS_ROTATE and again[1]["job"] == job["id"] and again[1] != first[1]


def test_another_key_is_refused_while_a_rotation_runs_or_backups_are_still_under_the_previous_key(world,
                                                                                                admin) -> None:
    ctx, org_id = admin
    keys.set_encryption(ctx, org_id, SetOrgEncryption(KEY.format("a")))
    job = keys.rotate_encryption(ctx, org_id, SetOrgEncryption(KEY.format("b")))
    with pytest.raises(Conflict, match="in progress"):
        keys.rotate_encryption(ctx, org_id, SetOrgEncryption(KEY.format("c")))
    world.session.get(KeyRotation, job["id"]).state = "failed"  # some backups could not be moved
    with pytest.raises(Conflict, match=KEY.format("a")):
        keys.set_encryption(ctx, org_id, SetOrgEncryption(KEY.format("c")))
    assert keys.get_encryption(ctx, org_id) == {"kms_key_name": KEY.format("b"), "rotating_from": KEY.format("a")}
