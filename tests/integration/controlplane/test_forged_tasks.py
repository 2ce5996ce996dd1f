"""A task posted to the worker by someone other than the services does nothing unless the database backs it.

The issue's attack: an unauthenticated POST to the worker with {destination_id, repo_backup_id} of another
organization deleted that organization's manifest and chunks. Every handler now re-reads its payload
against the rows: real backups in the Firestore emulator, a file:// destination, SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from firebackup.db.models import Backup, StorageDestination, Webhook, WebhookDelivery
from tests.integration.controlplane.jobs_world import Org, World, make_org, seed


@pytest.fixture
def world(engine: sa.Engine, firestore_emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    firestore_emulator.apply(monkeypatch)
    return World(engine, tmp_path / "victim", chunk_docs=1000)


def _completed_backup(world: World, org: Org, project_id: str) -> str:
    seed(project_id)
    pid, did = org.project(project_id), org.destination(org.tmp / "loc")
    backup_id = org.ok("POST", "/backups", {"project_id": pid, "destination_id": did}, 202)["id"]
    world.drain()
    assert world.row(backup_id).state == "completed"
    return backup_id


def _objects(org: Org, repo_id: str) -> list[str]:
    base = org.tmp / "loc" / "backups" / repo_id
    return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())


@pytest.fixture
def attacker(world: World, tmp_path: Path) -> Org:
    return make_org(world.org.app, world.org.factory, tmp_path / "attacker")


def test_a_forged_delete_backup_task_no_longer_deletes_another_organizations_backup(
        world: World, attacker: Org, project_id: str, caplog: pytest.LogCaptureFixture) -> None:
    victim = world.org
    backup_id = _completed_backup(world, victim, project_id)
    row = world.row(backup_id)
    before = _objects(victim, row.repo_backup_id)
    assert "manifest.fbm" in before and len(before) > 1
    forged: list[Any] = [
        {"destination_id": row.destination_id, "repo_backup_id": row.repo_backup_id},  # the payload
        {"backup_id": backup_id, "org_id": attacker.id},  # the victim's backup, named as the attacker's
        {"backup_id": backup_id, "org_id": victim.id},  # right ids, but nobody asked to delete it
        {"backup_id": ["x"], "org_id": None}, {},
    ]
    handler = world.handlers["delete_backup"]
    with caplog.at_level(logging.WARNING, logger="firebackup.workers"):
        for payload in forged:
            handler(payload)
    assert _objects(victim, row.repo_backup_id) == before
    assert world.row(backup_id).state == "completed"
    assert sum("refused delete_backup task" in r.getMessage() for r in caplog.records) == len(forged)


def test_a_delete_through_the_api_still_removes_the_objects_then_the_row(world: World, project_id: str) -> None:
    org = world.org
    backup_id = _completed_backup(world, org, project_id)
    repo_id = world.row(backup_id).repo_backup_id
    org.ok("DELETE", f"/backups/{backup_id}", status=204)
    assert org.ok("GET", f"/backups/{backup_id}")["state"] == "deleting"
    assert world.queue.tasks == [("delete_backup", {"backup_id": backup_id, "org_id": org.id})]
    world.drain()
    assert _objects(org, repo_id) == []
    assert org.call("GET", f"/backups/{backup_id}").status_code == 404


def test_a_forged_verify_task_does_not_touch_a_backup_nobody_asked_to_verify(
        world: World, attacker: Org, project_id: str) -> None:
    backup_id = _completed_backup(world, world.org, project_id)
    for payload in ({"backup_id": backup_id}, {"backup_id": backup_id, "org_id": attacker.id},
                    {"backup_id": backup_id, "org_id": world.org.id}):
        world.handlers["verify"](payload)
    assert world.row(backup_id).verify_state is None
    world.org.ok("POST", f"/backups/{backup_id}/verify", status=202)
    world.drain()
    assert world.row(backup_id).verify_state == "ok"


def test_a_backup_whose_destination_is_in_another_organization_is_refused_before_anything_is_written(
        world: World, attacker: Org, project_id: str) -> None:
    seed(project_id)
    theirs = attacker.destination(attacker.tmp / "loc")
    pid, did = world.org.project(project_id), world.org.destination(world.org.tmp / "loc")
    backup_id = world.org.ok("POST", "/backups", {"project_id": pid, "destination_id": did}, 202)["id"]
    with world.org.factory() as s, s.begin():  # a row pointing across organizations, as a forged write would
        s.execute(sa.update(Backup).where(Backup.id == backup_id).values(destination_id=theirs))
    world.drain()
    row = world.row(backup_id)
    assert row.state == "failed" and "not in its organization" in (row.error or "")
    assert not (attacker.tmp / "loc" / "backups").exists() or not any((attacker.tmp / "loc" / "backups").iterdir())


def test_a_webhook_delivery_whose_event_names_another_organizations_backup_is_not_sent(
        world: World, attacker: Org, project_id: str) -> None:
    backup_id = _completed_backup(world, world.org, project_id)
    with world.org.factory() as s, s.begin():
        hook = Webhook(org_id=attacker.id, url="https://hooks.example.test/x", events=["backup.completed"],
                       secret_sealed="unused", secret_fingerprint="unused", enabled=True)
        s.add(hook)
        s.flush()
        d = WebhookDelivery(webhook_id=hook.id, event="backup.completed", payload={"backup_id": backup_id},
                            state="pending", attempts=0)
        s.add(d)
        s.flush()
        delivery_id = d.id
    world.handlers["webhook_deliver"]({"delivery_id": delivery_id, "attempt": 1})
    with world.org.factory() as s:
        got = s.get(WebhookDelivery, delivery_id)
        assert got.state == "pending" and got.attempts == 0 and got.last_attempt_at is None
        assert s.get(StorageDestination, world.row(backup_id).destination_id) is not None


def test_a_second_verify_of_the_same_backup_is_a_new_cloud_tasks_task_not_a_refused_duplicate(
        world: World, project_id: str) -> None:
    from firebackup.runtime.cloud_tasks import task_id

    backup_id = _completed_backup(world, world.org, project_id)
    names = []
    for _ in range(2):
        world.org.ok("POST", f"/backups/{backup_id}/verify", status=202)
        [(task, payload)] = world.queue.tasks
        names.append(task_id(task, payload))
        world.drain()
        assert world.row(backup_id).verify_state == "ok"
    assert names[0] != names[1]
