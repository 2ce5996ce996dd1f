"""Backups, restores, verify and delete started through the API actually run (in-process LocalQueue),
against the real Firestore emulator and a file:// destination, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from firebackup.bootstrap import api_app as build_app
from firebackup.crypto.secrets import LocalMasterKey, Sealer
from firebackup.db.models import AuditLog, Backup, BackupChunk, BackupKey
from firebackup.db.session import make_session_factory
from firebackup.services.ports import RecordingQueue
from firebackup.services.workers import Workers
from tests.integration.controlplane.conftest import FakeFirestoreProber, FakeGoogleOAuth
from tests.integration.controlplane.jobs_world import Org, drain, make_org, seed, settings_for
from tests.integration.controlplane.world import SA_KEY


@pytest.fixture
def org(engine, firestore_emulator, monkeypatch, tmp_path) -> Org:
    """The API as deployed by default (FIREBACKUP_QUEUE=local): tasks run in this process."""
    firestore_emulator.apply(monkeypatch)
    key = os.urandom(32)
    app = build_app(settings_for(engine, key), engine=engine, sealer=Sealer(LocalMasterKey(key)),
                    oauth=FakeGoogleOAuth(), prober=FakeFirestoreProber())
    o = make_org(app, make_session_factory(engine), tmp_path)
    yield o
    o.queue.close()


def _repo_id(org: Org, backup_id: str) -> str | None:
    with org.factory() as s:
        return s.get(Backup, backup_id).repo_backup_id


def _objects(folder: Path, repo_backup_id: str) -> dict[str, int]:
    base = folder / "backups" / repo_backup_id
    return {str(p.relative_to(base)): p.stat().st_size for p in base.rglob("*") if p.is_file()} if base.exists() else {}


def test_a_backup_started_through_the_api_completes_with_exact_counts_and_an_audited_outcome(org, project_id):
    count = seed(project_id)
    pid, did = org.project(project_id), org.destination(org.tmp / "loc")
    started = org.ok("POST", "/backups", {"project_id": pid, "destination_id": did}, 202)
    assert started["state"] == "pending"
    org.run()
    got = org.ok("GET", f"/backups/{started['id']}")
    assert got["state"] == "completed", got
    assert got["error"] is None and got["progress"] == 1.0
    assert got["documents"] == count
    repo_id = _repo_id(org, started["id"])
    objects = _objects(org.tmp / "loc", repo_id)
    chunks = {k: v for k, v in objects.items() if k.startswith("chunks/")}
    assert "manifest.fbm" in objects and chunks
    assert got["bytes_stored"] == sum(chunks.values())
    assert got["bytes_raw"] > 0 and got["read_time"] is not None
    assert got["manifest_key"] == f"backups/{repo_id}/manifest.fbm"
    assert got["chunks_done"] == got["chunks_total"] == len(chunks)
    with org.factory() as s:
        outcome = s.scalars(sa.select(AuditLog).where(AuditLog.resource_id == started["id"])).all()
        assert [a.action for a in outcome if a.action == "backup.completed"] == ["backup.completed"]
        done = next(a for a in outcome if a.action == "backup.completed")
        assert done.actor_type == "system" and done.result == "success" and done.org_id == org.id
        rows = s.scalars(sa.select(BackupChunk).where(BackupChunk.backup_id == started["id"])).all()
        assert sorted(f"chunks/{r.chunk_id}.fbc" for r in rows) == sorted(chunks)
        assert sum(r.records for r in rows) == count
        # The backup is encrypted under the organization's backup key, which is stored sealed only.
        bk = s.scalar(sa.select(BackupKey).where(BackupKey.org_id == org.id))
        assert bk is not None and bk.key_sealed.startswith("fbs1.")
    summary = org.ok("GET", f"/backups/{started['id']}/manifest")
    assert summary["stored"]["encrypted"] is True and summary["stored"]["kek_id"] == bk.key_id
    assert summary["stored"]["documents"] == count


def test_a_completed_backup_restores_into_another_project_and_verifies_ok(org, project_id):
    from google.cloud import firestore

    count = seed(project_id)
    pid, did = org.project(project_id), org.destination(org.tmp / "loc")
    target_gcp = project_id + "-copy"
    target = org.project(target_gcp)
    backup = org.ok("POST", "/backups", {"project_id": pid, "destination_id": did}, 202)
    org.run()
    assert org.ok("GET", f"/backups/{backup['id']}")["state"] == "completed"

    restore = org.ok("POST", "/restores", {"backup_id": backup["id"], "target_project_id": target}, 202)
    org.run()
    got = org.ok("GET", f"/restores/{restore['id']}")
    assert got["state"] == "completed", got
    assert got["documents_written"] == count and got["error"] is None
    client = firestore.Client(project=target_gcp)
    try:
        assert client.collection("users").document("u007").get().to_dict() == {"n": 7, "name": "user 7"}
        assert client.collection("orders").document("o003").collection("lines").document("l1").get().to_dict() == {"q": 3}
        assert len(list(client.collection("users").stream())) == 25
    finally:
        client.close()
    with org.factory() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(AuditLog).where(
            AuditLog.resource_id == restore["id"], AuditLog.action == "restore.completed")) == 1

    assert org.ok("POST", f"/backups/{backup['id']}/verify", status=202)["verify_state"] == "pending"
    org.run()
    assert org.ok("GET", f"/backups/{backup['id']}")["verify_state"] == "ok"
    with org.factory() as s:
        audit = s.scalar(sa.select(AuditLog).where(AuditLog.resource_id == backup["id"],
                                                   AuditLog.action == "backup.verified"))
        assert audit.result == "success" and audit.details == {"ok": True, "problems": []}


def test_a_backup_to_an_unwritable_destination_fails_with_a_one_line_error(org, project_id):
    seed(project_id)
    blocker = org.tmp / "not-a-folder"
    blocker.write_text("a file where the destination folder should be\n")
    pid, did = org.project(project_id), org.destination(blocker / "loc")
    started = org.ok("POST", "/backups", {"project_id": pid, "destination_id": did}, 202)
    org.run()
    got = org.ok("GET", f"/backups/{started['id']}")
    assert got["state"] == "failed"
    assert got["error"] and "\n" not in got["error"] and "Traceback" not in got["error"]
    assert not got["error"].startswith("internal error"), got["error"]
    assert got["finished_at"] is not None and got["manifest_key"] is None
    with org.factory() as s:
        failed = s.scalar(sa.select(AuditLog).where(AuditLog.resource_id == started["id"],
                                                    AuditLog.action == "backup.failed"))
        assert failed.result == "failure" and failed.details == {"error": got["error"]}


def test_deleting_a_backup_removes_its_objects_from_the_destination(org, project_id):
    seed(project_id)
    pid, did = org.project(project_id), org.destination(org.tmp / "loc")
    started = org.ok("POST", "/backups", {"project_id": pid, "destination_id": did}, 202)
    org.run()
    repo_id = _repo_id(org, started["id"])
    assert "manifest.fbm" in _objects(org.tmp / "loc", repo_id)
    org.ok("DELETE", f"/backups/{started['id']}", status=204)
    org.run()
    assert _objects(org.tmp / "loc", repo_id) == {}
    assert org.call("GET", f"/backups/{started['id']}").status_code == 404


def test_a_backup_cancelled_before_its_task_runs_stays_cancelled_and_writes_nothing(engine, firestore_emulator,
                                                                                   monkeypatch, tmp_path, project_id):
    firestore_emulator.apply(monkeypatch)
    seed(project_id)
    key = os.urandom(32)
    queue = RecordingQueue()
    sealer = Sealer(LocalMasterKey(key))
    app = build_app(settings_for(engine, key, queue="recording"), engine=engine, sealer=sealer, queue=queue,
                    oauth=FakeGoogleOAuth(), prober=FakeFirestoreProber())
    org = make_org(app, make_session_factory(engine), tmp_path)
    pid, did = org.project(project_id), org.destination(tmp_path / "loc")
    started = org.ok("POST", "/backups", {"project_id": pid, "destination_id": did}, 202)
    assert org.ok("POST", f"/backups/{started['id']}/cancel")["state"] == "cancelled"
    assert queue.tasks == [("backup.plan", {"job": started["id"]})]
    from firebackup.bootstrap import ports as build_ports

    assert drain(queue, Workers(org.factory, build_ports(settings_for(engine, key), sealer=sealer, queue=queue))) == [
        "backup.plan"]
    got = org.ok("GET", f"/backups/{started['id']}")
    assert got["state"] == "cancelled" and _repo_id(org, started["id"]) is None
    assert not (tmp_path / "loc" / "backups").exists() or not any((tmp_path / "loc" / "backups").iterdir())
    with org.factory() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(AuditLog).where(
            AuditLog.resource_id == started["id"], AuditLog.action.in_(["backup.completed", "backup.failed"]))) == 0


def test_the_default_app_runs_tasks_in_process_and_recording_keeps_them(engine) -> None:
    key = os.urandom(32)
    kw = dict(engine=engine, sealer=Sealer(LocalMasterKey(key)), oauth=FakeGoogleOAuth(), prober=FakeFirestoreProber())
    local = build_app(settings_for(engine, key), **kw).extensions["firebackup_queue"]
    assert set(local.inner._handlers) == {
        "backup.plan", "backup.chunk", "backup.auth", "backup.finalize", "restore.plan", "restore.chunk",
        "restore.auth", "restore.changes", "restore.finalize", "keys.rotate", "verify", "delete_backup",
        "webhook_deliver"}
    local.close()
    assert isinstance(build_app(settings_for(engine, key, queue="recording"), **kw).extensions["firebackup_queue"],
                      RecordingQueue)


def test_a_backup_cancelled_between_chunks_is_not_completed_and_leaves_no_objects(engine, firestore_emulator,
                                                                                 monkeypatch, tmp_path, project_id):
    firestore_emulator.apply(monkeypatch)
    seed(project_id)
    key = os.urandom(32)
    queue = RecordingQueue()
    sealer = Sealer(LocalMasterKey(key))
    app = build_app(settings_for(engine, key, queue="recording"), engine=engine, sealer=sealer, queue=queue,
                    oauth=FakeGoogleOAuth(), prober=FakeFirestoreProber())
    org = make_org(app, make_session_factory(engine), tmp_path)
    pid, did = org.project(project_id), org.destination(tmp_path / "loc")
    started = org.ok("POST", "/backups", {"project_id": pid, "destination_id": did}, 202)
    from firebackup.bootstrap import ports as build_ports

    workers = Workers(org.factory, build_ports(settings_for(engine, key, chunk_docs=10), sealer=sealer, queue=queue))
    store, cancelled = workers.backups.store, []
    record = store.record_chunk

    def record_then_cancel(job_id, *args):
        """The user presses cancel through the API right after the first chunk is recorded."""
        record(job_id, *args)
        if not cancelled:
            cancelled.append(job_id)
            assert org.ok("POST", f"/backups/{job_id}/cancel")["state"] == "cancelled"

    store.record_chunk = record_then_cancel
    ran = drain(queue, workers)
    got = org.ok("GET", f"/backups/{started['id']}")
    assert cancelled and got["state"] == "cancelled"
    assert "backup.finalize" not in ran
    assert got["manifest_key"] is None
    repo_id = _repo_id(org, started["id"])
    assert repo_id is not None and _objects(tmp_path / "loc", repo_id) == {}
    with org.factory() as s:
        # One chunk was written before the cancel; no further chunk was read.
        assert s.scalar(sa.select(sa.func.count()).select_from(BackupChunk).where(
            BackupChunk.backup_id == started["id"])) == 1
        assert s.scalar(sa.select(sa.func.count()).select_from(AuditLog).where(
            AuditLog.resource_id == started["id"], AuditLog.action.in_(["backup.completed", "backup.failed"]))) == 0


def test_the_backup_worker_function_runs_exactly_one_task_per_request_for_an_authenticated_caller(
        engine, firestore_emulator, monkeypatch, tmp_path, project_id):
    import base64

    import functions_framework

    from firebackup.runtime.worker_auth import SECRET_HEADER

    firestore_emulator.apply(monkeypatch)
    seed(project_id)
    key = os.urandom(32)
    queue = RecordingQueue()
    app = build_app(settings_for(engine, key, queue="recording"), engine=engine, sealer=Sealer(LocalMasterKey(key)),
                    queue=queue, oauth=FakeGoogleOAuth(), prober=FakeFirestoreProber())
    org = make_org(app, make_session_factory(engine), tmp_path)
    pid, did = org.project(project_id), org.destination(tmp_path / "loc")
    started = org.ok("POST", "/backups", {"project_id": pid, "destination_id": did}, 202)
    secret = "controlplane-worker-secret-01234"
    monkeypatch.setenv("FIREBACKUP_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("FIREBACKUP_MASTER_KEY", base64.b64encode(key).decode())
    monkeypatch.setenv("FIREBACKUP_ALLOW_LOCAL_STORAGE", "1")  # the worker opens the local folder too
    monkeypatch.setenv("FIREBACKUP_LOCAL_STORAGE_ROOT", str(tmp_path))
    monkeypatch.setenv("FIREBACKUP_QUEUE", "recording")  # the tasks it enqueues are kept, never run here
    monkeypatch.setenv("FIREBACKUP_WORKER_SECRET", secret)
    root = Path(__file__).resolve().parents[3]
    worker = functions_framework.create_app(target="backup_worker",
                                            source=str(root / "functions" / "backup_worker" / "main.py")).test_client()
    name, payload = queue.tasks[0]
    assert worker.post("/", json={"task": name, "payload": payload}).status_code == 401
    assert org.ok("GET", f"/backups/{started['id']}")["state"] == "pending"
    headers = {SECRET_HEADER: secret}
    assert worker.post("/", json={"task": "nope", "payload": {}}, headers=headers).status_code == 400
    assert worker.post("/", json={"task": name, "payload": payload}, headers=headers).status_code == 204
    got = org.ok("GET", f"/backups/{started['id']}")
    # The plan ran, and only the plan: its chunk tasks went to the queue for other requests.
    assert got["state"] == "running" and got["read_time"] is not None
    assert got["chunks_done"] == 0 and got["documents"] == 0


def test_a_real_project_whose_service_account_key_is_rejected_fails_with_a_one_line_error(engine, tmp_path,
                                                                                         project_id):
    # Not the emulator: the worker unseals the project's key and builds credentials from it.
    key = os.urandom(32)
    app = build_app(settings_for(engine, key, firestore_emulator_host=None), engine=engine,
                    sealer=Sealer(LocalMasterKey(key)), oauth=FakeGoogleOAuth(), prober=FakeFirestoreProber())
    org = make_org(app, make_session_factory(engine), tmp_path)
    pid, did = org.project(project_id), org.destination(org.tmp / "loc")
    started = org.ok("POST", "/backups", {"project_id": pid, "destination_id": did}, 202)
    org.run()
    got = org.ok("GET", f"/backups/{started['id']}")
    assert got["state"] == "failed"
    assert got["error"] == (f"the service-account key of project {project_id} was rejected; "
                            "reconnect the project with a valid key")
    assert SA_KEY["private_key"].split("\n")[1] not in got["error"]
