"""BYOK end to end on the Firestore emulator: an organization's own KMS key wraps its backups, rotation re-wraps
them, and the platform's own keys cannot open them. Cloud KMS is a fake that subclasses the KmsClient port."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

from firebackup.bootstrap import api_app as build_app
from firebackup.crypto.keys import LocalKey
from firebackup.crypto.secrets import LocalMasterKey, Sealer
from firebackup.db.models import AuditLog, Backup, BackupKey
from firebackup.db.session import make_session_factory
from firebackup.engine.repository import Repository
from firebackup.errors import WrongKeyOrTampered
from firebackup.storage import open_storage
from tests.integration.controlplane.conftest import FakeFirestoreProber, FakeGoogleOAuth
from tests.integration.controlplane.jobs_world import Org, make_org, seed, settings_for
from tests.unit.crypto.kms_fakes import FakeKmsClient

KEY_A = "projects/cust/locations/global/keyRings/backups/cryptoKeys/a"
KEY_B = "projects/cust/locations/global/keyRings/backups/cryptoKeys/b"


@pytest.fixture
def kms() -> FakeKmsClient:
    return FakeKmsClient([KEY_A, KEY_B])


@pytest.fixture
def org(engine, firestore_emulator, monkeypatch, tmp_path, kms) -> Org:
    firestore_emulator.apply(monkeypatch)
    key = os.urandom(32)
    app = build_app(settings_for(engine, key), engine=engine, sealer=Sealer(LocalMasterKey(key)),
                    oauth=FakeGoogleOAuth(), prober=FakeFirestoreProber(), kms_client=kms)
    o = make_org(app, make_session_factory(engine), tmp_path)
    yield o
    o.queue.close()


def _backup(org: Org, pid: str, did: str) -> str:
    started = org.ok("POST", "/backups", {"project_id": pid, "destination_id": did}, 202)
    org.run()
    got = org.ok("GET", f"/backups/{started['id']}")
    assert got["state"] == "completed", got
    return str(started["id"])


def _restore(org: Org, backup_id: str, target: str, count: int) -> None:
    restore = org.ok("POST", "/restores", {"backup_id": backup_id, "target_project_id": target}, 202)
    org.run()
    got = org.ok("GET", f"/restores/{restore['id']}")
    assert got["state"] == "completed" and got["documents_written"] == count, got


def _rotate(org: Org, key: str) -> tuple[str, int, int, list]:
    """A rotation job, run to its end: (state, rewrapped, already_current, failed)."""
    job = org.ok("POST", "/encryption/rotate", {"kms_key_name": key}, 202)
    org.run()
    got = org.ok("GET", f"/encryption/rotations/{job['id']}")
    assert got["state"] == "completed", got
    return got["state"], got["rewrapped"], got["already_current"], got["failed"]


def test_an_org_key_wraps_its_backups_rotation_rewraps_them_and_the_platforms_keys_cannot_open_them(org, project_id,
                                                                                                   kms) -> None:
    count = seed(project_id)
    folder = org.tmp / "loc"
    pid, did = org.project(project_id), org.destination(folder)
    assert org.ok("PUT", "/encryption", {"kms_key_name": KEY_A}) == {"kms_key_name": KEY_A, "rotating_from": None}

    backup_id = _backup(org, pid, did)
    assert org.ok("GET", f"/backups/{backup_id}/manifest")["stored"]["kek_id"] == "kms:" + KEY_A
    with org.factory() as s:
        # The platform made no key of its own for this organization: nothing it holds opens the backup.
        assert s.scalar(sa.select(BackupKey).where(BackupKey.org_id == org.id)) is None
        repo_id = s.get(Backup, backup_id).repo_backup_id
    repo = Repository(open_storage(folder.as_uri()))
    with pytest.raises(WrongKeyOrTampered):
        repo.read_manifest(repo_id, LocalKey(os.urandom(32)))
    _restore(org, backup_id, org.project(project_id + "-a"), count)

    assert _rotate(org, KEY_B)[1:] == (1, 0, [])
    assert _rotate(org, KEY_B)[1:] == (0, 1, [])  # idempotent
    assert org.ok("GET", f"/backups/{backup_id}/manifest")["stored"]["kek_id"] == "kms:" + KEY_B
    del kms.keys[KEY_A]  # the old key is gone: the re-wrapped backup must not need it
    _restore(org, backup_id, org.project(project_id + "-b"), count)
    with org.factory() as s:
        actions = s.scalars(sa.select(AuditLog.action).where(AuditLog.org_id == org.id)).all()
    assert "org.encryption.set" in actions and actions.count("org.encryption.rotate") == 2


def test_when_the_customer_revokes_the_platforms_access_to_its_key_a_restore_fails_in_one_line(org, project_id,
                                                                                                kms) -> None:
    seed(project_id)
    pid, did = org.project(project_id), org.destination(org.tmp / "loc")
    org.ok("PUT", "/encryption", {"kms_key_name": KEY_A})
    backup_id = _backup(org, pid, did)
    kms.denied = True
    restore = org.ok("POST", "/restores", {"backup_id": backup_id, "target_project_id": org.project(project_id + "-r")},
                     202)
    org.run()
    got = org.ok("GET", f"/restores/{restore['id']}")
    assert got["state"] == "failed" and "permission denied" in got["error"] and "\n" not in got["error"]


def test_a_malformed_kms_key_name_is_a_422_and_changes_nothing(org) -> None:
    r = org.call("PUT", "/encryption", {"kms_key_name": "projects/p/cryptoKeys/k"})
    assert r.status_code == 422
    assert org.ok("GET", "/encryption") == {"kms_key_name": None, "rotating_from": None}
