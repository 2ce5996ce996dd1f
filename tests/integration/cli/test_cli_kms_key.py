"""`firebackup ... --kms-key` in a subprocess against the Firestore emulator, with the test-only KMS
(FIREBACKUP_KMS=fake:<folder>, crypto/fake_kms.py) standing in for Cloud KMS."""

from __future__ import annotations

from pathlib import Path

import pytest

from firebackup.crypto.fake_kms import LocalFolderKms
from tests.integration.cli.test_cli_firestore import fb, fb_json, seed

KEY_A = "projects/cust/locations/global/keyRings/backups/cryptoKeys/a"
KEY_B = "projects/cust/locations/global/keyRings/backups/cryptoKeys/b"


@pytest.fixture
def kms_env(firestore_emulator, project_id, tmp_path: Path, monkeypatch) -> dict:
    firestore_emulator.apply(monkeypatch)
    kms = LocalFolderKms(tmp_path / "kms")
    kms.create_key(KEY_A)
    kms.create_key(KEY_B)
    env = dict(firestore_emulator.env, FIREBACKUP_KMS=f"fake:{kms.folder}", FIREBACKUP_ALLOW_FAKE_KMS="1")
    return {"env": env, "kms": kms, "project": project_id, "count": seed(project_id),
            "url": f"file://{tmp_path / 'loc'}"}


def _stderr_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_a_backup_under_a_kms_key_verifies_shows_and_restores_with_that_key_only(kms_env) -> None:
    env, url = kms_env["env"], kms_env["url"]
    out = fb_json(env, "backup", "--project", kms_env["project"], "--to", url, "--kms-key", KEY_A)
    assert out["encrypted"] is True and out["documents"] == kms_env["count"]
    backup_id = out["backup_id"]

    report = fb_json(env, "verify", backup_id, "--from", url, "--kms-key", KEY_A)
    assert report["ok"] is True and report["documents"] == kms_env["count"]
    shown = fb_json(env, "show", backup_id, "--from", url, "--kms-key", KEY_A)
    assert shown["kek_id"] == "kms:" + KEY_A and shown["manifest"]["chunks"]
    assert len(fb(env, "cat", backup_id, "--from", url, "--kms-key", KEY_A).stdout.splitlines()) == kms_env["count"]
    restored = fb_json(env, "restore", backup_id, "--from", url, "--project", kms_env["project"] + "-r",
                       "--kms-key", KEY_A)
    assert restored["documents_written"] == kms_env["count"]

    # The wrong key, no key, a local key file: one line each, exit 2, nothing restored.
    wrong = fb(env, "restore", backup_id, "--from", url, "--project", kms_env["project"] + "-w", "--kms-key", KEY_B,
               expect=2)
    assert "wrong key" in _stderr_line(wrong) and KEY_A in wrong.stderr
    none = fb(env, "verify", backup_id, "--from", url, expect=2)
    assert f"pass --kms-key {KEY_A}" in _stderr_line(none)
    # Once the customer destroys the key, nothing opens the backup any more.
    kms_env["kms"].delete_key(KEY_A)
    gone = fb(env, "verify", backup_id, "--from", url, "--kms-key", KEY_A, expect=2)
    assert "does not exist" in _stderr_line(gone)


def test_kms_key_and_key_file_together_or_a_malformed_name_are_refused_in_one_line(kms_env, tmp_path) -> None:
    env, url = kms_env["env"], kms_env["url"]
    both = fb(env, "backup", "--project", kms_env["project"], "--to", url, "--kms-key", KEY_A,
              "--key-file", str(tmp_path / "k"), expect=2)
    assert "not allowed with" in _stderr_line(both)
    bad = fb(env, "backup", "--project", kms_env["project"], "--to", url, "--kms-key", "projects/p/keys/k", expect=2)
    assert "is not of the form projects/P/locations/L/keyRings/R/cryptoKeys/K" in _stderr_line(bad)
    assert not (tmp_path / "loc").exists()


def test_the_test_only_kms_is_refused_without_its_own_flag(kms_env) -> None:
    env = {k: v for k, v in kms_env["env"].items() if k != "FIREBACKUP_ALLOW_FAKE_KMS"}
    proc = fb(env, "backup", "--project", kms_env["project"], "--to", kms_env["url"], "--kms-key", KEY_A, expect=2)
    assert "for tests only" in _stderr_line(proc)
