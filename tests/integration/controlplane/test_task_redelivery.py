"""At-least-once delivery of backup tasks, for real: the control plane's handlers over the real Firestore
emulator, a file:// destination and the job store on SQLite and PostgreSQL, with the queue played by
the test so it can kill a task, redeliver it, deliver it twice at once, and move the lease clock.
"""

from __future__ import annotations

import threading
from typing import Any, Iterator

import grpc
import pytest
import sqlalchemy as sa

from firebackup.db.models import AuditLog, BackupChunk
from firebackup.engine.jobs import LeaseHeld
from firebackup.firestore.grpc import FirestoreConnection
from firebackup.services.source_opener import ProjectSources
from tests.integration.controlplane.jobs_world import LEASE, Killed, World, seed
from tests.integration.grpc_faults import FaultInjector


@pytest.fixture
def world(engine, firestore_emulator, monkeypatch, tmp_path) -> Iterator[World]:
    firestore_emulator.apply(monkeypatch)
    yield World(engine, tmp_path)


def _seeded_names(project_id: str) -> set[str]:
    from google.cloud import firestore

    client = firestore.Client(project=project_id)
    try:
        return {d.reference.path for c in client.collections() for d in _walk(c)}
    finally:
        client.close()


def _walk(collection: Any) -> Iterator[Any]:
    for d in collection.stream():
        yield d
        for sub in d.reference.collections():
            yield from _walk(sub)


def test_a_chunk_task_killed_mid_upload_is_redelivered_after_its_lease_and_the_backup_has_exact_counts(
        world, project_id):
    count = seed(project_id)
    backup_id = world.start(project_id)

    def die() -> None:
        raise Killed()

    world.hooks["d00000-00002.fbc"] = die  # the instance dies while the third chunk is being uploaded
    world.drain()
    assert [name for name, _ in world.lost] == ["backup.chunk"]
    row = world.row(backup_id)
    assert row.state == "running" and row.manifest_key is None  # finalize waits for the lost task
    lost = world.lost.pop()

    # Cloud Tasks may redeliver while the dead attempt's lease still stands: nothing runs twice.
    with pytest.raises(LeaseHeld):
        world.handlers[lost[0]](lost[1])
    uploads_before = dict(world.uploads)

    world.clock.advance(LEASE + 1)  # the lease of the dead attempt expires
    world.handlers[lost[0]](lost[1])
    world.drain()
    row = world.row(backup_id)
    assert row.state == "completed", row.error
    assert row.documents == count
    names = world.backed_up_names(backup_id)
    assert len(names) == count and len(set(names)) == count
    assert {n.split("/documents/", 1)[1] for n in names} == _seeded_names(project_id)
    assert world.attempts(backup_id, "d00000-00002") == 2
    # Only the lost chunk was uploaded again (its follow-up had been handed on before the death).
    assert {k: v - uploads_before.get(k, 0) for k, v in world.uploads.items() if v != uploads_before.get(k, 0)} \
        == {"d00000-00002.fbc": 1}
    with world.org.factory() as s:
        rows = s.scalars(sa.select(BackupChunk.chunk_id).where(BackupChunk.backup_id == backup_id)).all()
        assert len(rows) == len(set(rows)) == row.chunks_done
        assert s.scalar(sa.select(sa.func.count()).select_from(AuditLog).where(
            AuditLog.resource_id == backup_id, AuditLog.action == "backup.completed")) == 1


def test_a_task_killed_after_recording_chunks_resumes_after_them_when_redelivered(
        engine, firestore_emulator, monkeypatch, tmp_path, project_id):
    firestore_emulator.apply(monkeypatch)
    world = World(engine, tmp_path, chunks_per_task=4)  # each task writes up to four chunks
    count = seed(project_id)
    backup_id = world.start(project_id)

    def die() -> None:
        raise Killed()

    world.hooks["d00000-00002.fbc"] = die  # chunks 0 and 1 are recorded; the instance dies in chunk 2
    world.drain()
    assert [name for name, _ in world.lost] == ["backup.chunk"]
    name, payload = world.lost.pop()
    before = dict(world.uploads)
    world.clock.advance(LEASE + 1)
    world.handlers[name](payload)
    world.drain()
    row = world.row(backup_id)
    assert row.state == "completed" and row.documents == count, row.error
    again = {k for k, v in world.uploads.items() if v != before.get(k, 0)}
    assert "d00000-00000.fbc" not in again and "d00000-00001.fbc" not in again  # resumed after them
    assert {"d00000-00002.fbc", "d00000-00003.fbc"} <= again
    names = world.backed_up_names(backup_id)
    assert len(names) == len(set(names)) == count


def test_the_same_chunk_task_delivered_twice_at_once_is_written_once(world, project_id):
    count = seed(project_id)
    backup_id = world.start(project_id)
    payload = world.task("backup.chunk", "d00000-00001")
    uploading, release = threading.Event(), threading.Event()

    def hold() -> None:
        uploading.set()
        assert release.wait(60)

    world.hooks["d00000-00001.fbc"] = hold
    first = threading.Thread(target=world.handlers["backup.chunk"], args=(payload,))
    first.start()
    assert uploading.wait(60)
    with pytest.raises(LeaseHeld):  # the second delivery finds the first one's lease and runs nothing
        world.handlers["backup.chunk"](payload)
    release.set()
    first.join(60)
    world.drain()
    row = world.row(backup_id)
    assert row.state == "completed", row.error
    assert row.documents == count and len(world.backed_up_names(backup_id)) == count
    assert world.uploads["d00000-00001.fbc"] == 1
    assert world.attempts(backup_id, "d00000-00001") == 1


class _Denying:
    """Firestore connections whose RunQuery streams, once deny() is called, are refused after 3 documents."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.injector = FaultInjector({})

    def deny(self) -> None:
        self.injector.faults = _Always()

    def connection(self, project: str, database: str) -> FirestoreConnection:
        channel = grpc.intercept_channel(grpc.insecure_channel(self.host), self.injector)
        return FirestoreConnection(channel, project=project, database=database, host=self.host, emulator=True)


class _Always(dict):
    def get(self, key: Any, default: Any = None) -> Any:
        return (3, grpc.StatusCode.PERMISSION_DENIED)


class DeniedSources(ProjectSources):
    """The project's Firestore refuses reads part-way (its owner revoked the role during the backup)."""

    def __init__(self, host: str) -> None:
        super().__init__(firestore_emulator_host=host)
        self.denied = _Denying(host)

    def firestore(self, gcp_project_id: str, database: str, auth_kind: str, secret: bytes) -> FirestoreConnection:
        return self.denied.connection(gcp_project_id, database)


def test_a_permission_denied_read_fails_the_backup_once_with_one_line_and_no_retry(
        engine, firestore_emulator, monkeypatch, tmp_path, project_id):
    firestore_emulator.apply(monkeypatch)
    sources = DeniedSources(firestore_emulator.env["FIRESTORE_EMULATOR_HOST"])
    world = World(engine, tmp_path, sources=sources)
    seed(project_id)
    backup_id = world.start(project_id)
    second = world.task("backup.chunk", "d00000-00001")  # the first chunk is written and recorded by now
    assert world.objects(backup_id) == ["chunks/d00000-00000.fbc"]
    sources.denied.deny()
    world.handlers["backup.chunk"](second)  # a permanent failure is not raised to the queue: no retry
    world.drain()
    row = world.row(backup_id)
    assert row.state == "failed"
    # One line: what was refused, where, and what to grant.
    assert row.error.startswith(f"RunQuery on projects/{project_id}/databases/(default) at "), row.error
    assert "permission denied" in row.error and "\n" not in row.error
    assert row.error.endswith("grant the credentials Cloud Datastore access (roles/datastore.user or "
                              "roles/datastore.importExportAdmin)")
    assert sources.denied.injector.injected == 1  # read once, refused once, never retried
    assert world.attempts(backup_id, "d00000-00000") == 1
    assert world.objects(backup_id) == []  # what it wrote before the refusal is gone
    # Delivered again (Cloud Tasks after a lost acknowledgement): the failed job does nothing more.
    world.handlers["backup.finalize"]({"job": backup_id})
    with world.org.factory() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(AuditLog).where(
            AuditLog.resource_id == backup_id, AuditLog.action == "backup.failed")) == 1
        assert s.scalar(sa.select(sa.func.count()).select_from(AuditLog).where(
            AuditLog.resource_id == backup_id, AuditLog.action == "backup.completed")) == 0
