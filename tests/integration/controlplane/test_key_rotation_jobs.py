"""BYOK through the control plane with the test-only KMS (FIREBACKUP_KMS=fake:<folder>, selected by the settings):
restore and verify use the key each manifest names after a switch of key, and a key rotation is a job on the
backup queue that resumes after an interruption and leaves every backup readable under the new key alone."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from google.api_core import exceptions as gexc

from firebackup.bootstrap import api_app as build_app
from firebackup.crypto.fake_kms import LocalFolderKms
from firebackup.crypto.secrets import LocalMasterKey, Sealer
from firebackup.db.models import AuditLog, Backup, JobTask
from firebackup.db.session import make_session_factory
from firebackup.engine.repository import Repository
from firebackup.engine.tasks import KEYS_ROTATE
from firebackup.services.ports import RecordingQueue
from firebackup.storage import open_storage
from tests.integration.controlplane.conftest import FakeFirestoreProber, FakeGoogleOAuth
from tests.integration.controlplane.jobs_world import Org, drain, make_org, seed, settings_for

KEY_A = "projects/cust/locations/global/keyRings/backups/cryptoKeys/a"
KEY_B = "projects/cust/locations/global/keyRings/backups/cryptoKeys/b"


class FlakyKms(LocalFolderKms):
    """The test-only KMS with an outage: once `up_for` more encrypts have succeeded, every call fails (a Cloud KMS
    outage in mid-rotation, outlasting the calls' own retries) until the test ends it."""

    def __init__(self, folder: Path):
        super().__init__(folder)
        self.encrypts, self.up_for = 0, None

    def encrypt(self, request: dict[str, Any], *, retry: Any = None, timeout: float | None = None) -> Any:
        if self.up_for is not None and self.encrypts >= self.up_for:
            raise gexc.ServiceUnavailable("KMS is unavailable")  # type: ignore[no-untyped-call]
        self.encrypts += 1
        return super().encrypt(request, retry=retry, timeout=timeout)


def _org(engine, tmp_path: Path, **overrides: Any) -> Org:
    key = os.urandom(32)
    settings = settings_for(engine, key, fake_kms_folder=str(tmp_path / "kms"))
    app = build_app(settings, engine=engine, sealer=Sealer(LocalMasterKey(key)), oauth=FakeGoogleOAuth(),
                    prober=FakeFirestoreProber(), **overrides)
    return make_org(app, make_session_factory(engine), tmp_path)


@pytest.fixture
def kms(tmp_path: Path) -> LocalFolderKms:
    kms = LocalFolderKms(tmp_path / "kms")
    kms.create_key(KEY_A)
    kms.create_key(KEY_B)
    return kms


def _kek_id(org: Org, backup_id: str) -> str:
    return str(org.ok("GET", f"/backups/{backup_id}/manifest")["stored"]["kek_id"])


def test_after_a_switch_of_key_older_backups_still_restore_and_verify_under_the_key_their_manifest_names(
        engine, firestore_emulator, monkeypatch, tmp_path, kms, project_id) -> None:
    firestore_emulator.apply(monkeypatch)
    org = _org(engine, tmp_path)
    try:
        count = seed(project_id)
        pid, did = org.project(project_id), org.destination(org.tmp / "loc")
        org.ok("PUT", "/encryption", {"kms_key_name": KEY_A})
        under_a = org.ok("POST", "/backups", {"project_id": pid, "destination_id": did}, 202)["id"]
        org.run()
        assert org.ok("PUT", "/encryption", {"kms_key_name": KEY_B}) == {"kms_key_name": KEY_B,
                                                                         "rotating_from": KEY_A}
        under_b = org.ok("POST", "/backups", {"project_id": pid, "destination_id": did}, 202)["id"]
        org.run()
        assert (_kek_id(org, under_a), _kek_id(org, under_b)) == ("kms:" + KEY_A, "kms:" + KEY_B)
        for n, backup_id in enumerate((under_a, under_b)):
            rst = org.ok("POST", "/restores", {"backup_id": backup_id,
                                               "target_project_id": org.project(f"{project_id}-{n}")}, 202)
            org.ok("POST", f"/backups/{backup_id}/verify", None, 202)
            org.run()
            got = org.ok("GET", f"/restores/{rst['id']}")
            assert got["state"] == "completed" and got["documents_written"] == count, got
            assert org.ok("GET", f"/backups/{backup_id}")["verify_state"] == "ok"
        # A third key while A's backups are not re-wrapped would strand them: refused, nothing changed.
        third = org.call("PUT", "/encryption", {"kms_key_name": KEY_A.replace("/a", "/c")})
        assert third.status_code == 409 and KEY_A in third.get_json()["error"]["message"]
        assert org.ok("GET", "/encryption")["kms_key_name"] == KEY_B
    finally:
        org.queue.close()


def test_a_rotation_is_a_job_that_resumes_after_an_interruption_and_then_the_old_key_is_not_needed(
        engine, firestore_emulator, monkeypatch, tmp_path, kms, project_id) -> None:
    firestore_emulator.apply(monkeypatch)
    flaky, queue = FlakyKms(kms.folder), RecordingQueue()
    org = _org(engine, tmp_path, kms_client=flaky, queue=queue)
    workers = org.app.extensions["firebackup_control_plane"].workers
    count = seed(project_id)
    pid, did = org.project(project_id), org.destination(org.tmp / "loc")
    org.ok("PUT", "/encryption", {"kms_key_name": KEY_A})
    backups = []
    for _ in range(3):
        backups.append(org.ok("POST", "/backups", {"project_id": pid, "destination_id": did}, 202)["id"])
        drain(queue, workers)
    assert {_kek_id(org, b) for b in backups} == {"kms:" + KEY_A}

    flaky.encrypts, flaky.up_for = 0, 1  # KMS goes away while the second manifest is re-wrapped
    job = org.ok("POST", "/encryption/rotate", {"kms_key_name": KEY_B}, 202)
    assert job["state"] == "pending" and queue.tasks == [(KEYS_ROTATE, {"job": job["id"]})]
    assert org.ok("POST", "/encryption/rotate", {"kms_key_name": KEY_B}, 202)["id"] == job["id"]  # asked twice
    assert len(queue.tasks) == 1
    with pytest.raises(Exception, match="KMS encrypt .* failed"):
        drain(queue, workers)  # a transient error: the queue would deliver the task again
    half = org.ok("GET", f"/encryption/rotations/{job['id']}")
    assert half["state"] == "running" and half["rewrapped"] == 1
    assert [_kek_id(org, b) for b in backups] == ["kms:" + KEY_B, "kms:" + KEY_A, "kms:" + KEY_A]
    assert org.ok("GET", "/encryption")["rotating_from"] == KEY_A  # both keys open backups meanwhile

    flaky.up_for = None  # KMS is back: the queue delivers the task again
    queue.enqueue(KEYS_ROTATE, {"job": job["id"]})
    drain(queue, workers)
    done = org.ok("GET", f"/encryption/rotations/{job['id']}")
    assert (done["state"], done["rewrapped"], done["already_current"], done["failed"]) == ("completed", 3, 0, [])
    assert flaky.encrypts == 3  # resumed after the first backup: nothing was re-wrapped twice
    assert org.ok("GET", "/encryption") == {"kms_key_name": KEY_B, "rotating_from": None}
    with org.factory() as s:
        assert s.scalar(sa.select(JobTask.attempts).where(JobTask.job_id == job["id"])) == 2
        audited = s.scalars(sa.select(AuditLog.result).where(AuditLog.org_id == org.id,
                                                             AuditLog.action == "org.encryption.rotate")).all()
        repo_ids = [s.get(Backup, b).repo_backup_id for b in backups]
    assert audited == ["success"]

    kms.delete_key(KEY_A)  # the customer destroys the old key: every backup must read under B alone
    repo = Repository(open_storage((org.tmp / "loc").as_uri()))
    for repo_id in repo_ids:
        assert repo.read_summary(repo_id)["kek_id"] == "kms:" + KEY_B
    rst = org.ok("POST", "/restores", {"backup_id": backups[0], "target_project_id": org.project(project_id + "-r")},
                 202)
    drain(queue, workers)
    got = org.ok("GET", f"/restores/{rst['id']}")
    assert got["state"] == "completed" and got["documents_written"] == count, got


def test_a_rotation_keeps_the_previous_key_while_pitr_data_of_the_organization_is_wrapped_under_it(
        engine, firestore_emulator, monkeypatch, tmp_path, kms, project_id) -> None:
    firestore_emulator.apply(monkeypatch)
    queue = RecordingQueue()
    org = _org(engine, tmp_path, queue=queue)
    workers = org.app.extensions["firebackup_control_plane"].workers
    seed(project_id)
    pid, did = org.project(project_id), org.destination(org.tmp / "loc")
    org.ok("PUT", "/encryption", {"kms_key_name": KEY_A})
    org.ok("POST", "/backups", {"project_id": pid, "destination_id": did}, 202)
    drain(queue, workers)
    pitr = org.ok("PUT", f"/projects/{pid}/pitr", {"destination_id": did, "retention_days": 7})
    assert pitr["kek_id"] == "kms:" + KEY_A  # the capture key is wrapped under A

    job = org.ok("POST", "/encryption/rotate", {"kms_key_name": KEY_B}, 202)
    drain(queue, workers)
    done = org.ok("GET", f"/encryption/rotations/{job['id']}")
    assert (done["state"], done["rewrapped"], done["failed"]) == ("completed", 1, [])
    # The backup moved to B, but A still opens PITR's capture key and segments: it is not forgotten.
    assert org.ok("GET", "/encryption") == {"kms_key_name": KEY_B, "rotating_from": KEY_A}
    third = org.call("PUT", "/encryption", {"kms_key_name": KEY_A.replace("/a", "/c")})
    assert third.status_code == 409
