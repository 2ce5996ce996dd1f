"""`firebackup backup / verify / restore` in a subprocess against the real Firestore emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.local import stack

FIREBACKUP = str(Path(sys.executable).parent / "firebackup")
BACKUP_KEYS = ["backup_id", "read_time", "documents", "collections", "auth_users", "chunks",
               "bytes_raw", "bytes_stored", "compression", "encrypted", "duration_s"]
RESTORE_KEYS = ["backup_id", "documents_written", "documents_skipped", "documents_failed",
                "auth_users", "dry_run", "duration_s"]


def fb(env: dict[str, str], *args: str, expect: int | None = 0) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "FIREBACKUP_DEBUG"}
    full.update(env)
    proc = subprocess.run([FIREBACKUP, *args], capture_output=True, text=True, env=full, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    if expect is not None:
        assert proc.returncode == expect, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def fb_json(env, *args: str, expect: int = 0) -> dict:
    proc = fb(env, *args, "--json", expect=expect)
    return json.loads(proc.stdout)


def seed(project: str) -> int:
    """Write documents over two root collections and a subcollection (client library; not the code under test)."""
    from google.cloud import firestore

    client = firestore.Client(project=project)
    batch = client.batch()
    n = 0
    for i in range(30):
        batch.set(client.collection("users").document(f"u{i:03d}"), {"n": i, "name": f"user {i}", "tags": ["a", "b"]})
        n += 1
    for i in range(12):
        batch.set(client.collection("orders").document(f"o{i:03d}"), {"total": i * 1.5, "meta": {"k": i}})
        batch.set(client.collection("orders").document(f"o{i:03d}").collection("lines").document("l1"), {"q": i})
        n += 2
    batch.commit()
    client.close()
    return n


@pytest.fixture
def env(firestore_emulator, project_id, tmp_path, monkeypatch):
    firestore_emulator.apply(monkeypatch)
    e = dict(firestore_emulator.env)
    seeded = seed(project_id)
    key = tmp_path / "k.key"
    fb(e, "keygen", "--out", str(key))
    return {"env": e, "project": project_id, "count": seeded, "key": str(key),
            "url": f"file://{tmp_path / 'loc'}"}


def test_backup_then_verify_through_the_cli_with_the_contract_keys(env):
    out = fb_json(env["env"], "backup", "--project", env["project"], "--to", env["url"],
                  "--key-file", env["key"])
    assert list(out)[: len(BACKUP_KEYS)] == BACKUP_KEYS
    assert out["documents"] == env["count"]
    assert sorted(out["collections"]) == ["orders", "users"]
    assert out["encrypted"] is True
    assert out["auth_users"] == 0
    assert out["chunks"] >= 1
    assert out["bytes_stored"] > 0
    report = fb_json(env["env"], "verify", out["backup_id"], "--from", env["url"], "--key-file", env["key"])
    assert report == {**report, "backup_id": out["backup_id"], "ok": True, "documents": env["count"],
                      "problems": []}
    listed = fb_json(env["env"], "list", "--from", env["url"])
    assert [b["backup_id"] for b in listed["backups"]] == [out["backup_id"]]
    assert listed["backups"][0]["documents"] == env["count"]


def test_backup_of_named_collections_only(env):
    out = fb_json(env["env"], "backup", "--project", env["project"], "--to", env["url"],
                  "--collections", "orders")
    assert out["documents"] == 24
    assert out["encrypted"] is False


def test_restore_dry_run_then_restore_into_another_database(env):
    b = fb_json(env["env"], "backup", "--project", env["project"], "--to", env["url"], "--key-file", env["key"])
    dry = fb_json(env["env"], "restore", b["backup_id"], "--from", env["url"], "--project", env["project"],
                  "--database", "copy", "--key-file", env["key"], "--dry-run")
    assert list(dry)[: len(RESTORE_KEYS)] == RESTORE_KEYS
    assert dry["dry_run"] is True
    assert dry["documents_failed"] == 0
    real = fb_json(env["env"], "restore", b["backup_id"], "--from", env["url"], "--project", env["project"],
                   "--database", "copy", "--key-file", env["key"])
    assert real["dry_run"] is False
    assert real["documents_written"] == env["count"]
    assert real["documents_failed"] == 0


def test_restore_with_the_wrong_key_exits_2(env, tmp_path):
    b = fb_json(env["env"], "backup", "--project", env["project"], "--to", env["url"], "--key-file", env["key"])
    other = tmp_path / "other.key"
    fb(env["env"], "keygen", "--out", str(other))
    proc = fb(env["env"], "restore", b["backup_id"], "--from", env["url"], "--project", env["project"],
              "--key-file", str(other), expect=2)
    assert "wrong key, or the data was altered" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_an_unreachable_emulator_is_transient_and_exits_1_with_one_line_saying_so(tmp_path, project_id):
    port = stack.free_port()
    proc = fb({"FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{port}"}, "backup", "--project", project_id,
              "--to", f"file://{tmp_path}", expect=1)  # 2 is for bad usage; this may work if retried later
    assert proc.stderr.count("\n") == 1
    assert f"127.0.0.1:{port}" in proc.stderr and "retry later" in proc.stderr and "gave up after" in proc.stderr
    assert proc.stdout == ""


def test_backup_with_auth_users_is_verified_user_by_user(firestore_emulator, auth_emulator, project_id,
                                                         tmp_path, monkeypatch):
    import firebase_admin
    from firebase_admin import auth

    firestore_emulator.apply(monkeypatch)
    auth_emulator.apply(monkeypatch)
    seed(project_id)
    app = firebase_admin.initialize_app(options={"projectId": project_id}, name=f"seed-{project_id}")
    try:
        for i in range(5):
            auth.create_user(uid=f"user{i}", email=f"user{i}@example.com", password=f"secret-{i}-pw", app=app)
    finally:
        firebase_admin.delete_app(app)
    env = {**firestore_emulator.env, **auth_emulator.env}
    key = tmp_path / "k.key"
    fb(env, "keygen", "--out", str(key))
    url = f"file://{tmp_path / 'loc'}"
    out = fb_json(env, "backup", "--project", project_id, "--to", url, "--include-auth", "--key-file", str(key))
    assert out["auth_users"] == 5
    report = fb_json(env, "verify", out["backup_id"], "--from", url, "--key-file", str(key))
    assert report["ok"] is True
    assert report["auth_users"] == 5
    assert report["documents"] == out["documents"]


def test_restore_exits_1_and_says_so_when_auth_users_could_not_be_imported(
        firestore_emulator, auth_emulator, project_id, tmp_path, monkeypatch):
    import firebase_admin
    from firebase_admin import auth

    firestore_emulator.apply(monkeypatch)
    auth_emulator.apply(monkeypatch)
    seed(project_id)
    app = firebase_admin.initialize_app(options={"projectId": project_id}, name=f"dup-{project_id}")
    try:
        auth.create_user(uid="taken", email="taken@example.com", password="secret-pw-1", app=app)
        env = {**firestore_emulator.env, **auth_emulator.env}
        url = f"file://{tmp_path / 'loc'}"
        out = fb_json(env, "backup", "--project", project_id, "--to", url, "--include-auth")
        assert out["auth_users"] == 1
        # Another user now has that email, and the Auth emulator refuses to import a duplicate email.
        auth.delete_user("taken", app=app)
        auth.create_user(uid="squatter", email="taken@example.com", app=app)
        proc = fb(env, "restore", out["backup_id"], "--from", url, "--project", project_id,
                  "--include-auth", "--json", expect=1)
    finally:
        firebase_admin.delete_app(app)
    result = json.loads(proc.stdout)
    assert result["documents_failed"] == 0
    assert result["auth_users_failed"] == 1
    assert "1 Auth users were not imported" in proc.stderr


def test_restore_remaps_references_unless_told_to_keep_them(env):
    from google.cloud import firestore

    client = firestore.Client(project=env["project"])
    client.collection("links").document("l1").set({"to": client.document("users/u001")})
    client.close()
    b = fb_json(env["env"], "backup", "--project", env["project"], "--to", env["url"])
    for database, keep in (("remapped", []), ("kept", ["--keep-references"])):
        fb_json(env["env"], "restore", b["backup_id"], "--from", env["url"], "--project", env["project"],
                "--database", database, "--collections", "links", *keep)
    for database, points_to in (("remapped", "remapped"), ("kept", "(default)")):
        target = firestore.Client(project=env["project"], database=database)
        try:
            # The raw API: the client library refuses to decode a reference into another database.
            raw = target._firestore_api.get_document(
                request={"name": f"{target._database_string}/documents/links/l1"})
        finally:
            target.close()
        assert raw.fields["to"].reference_value == (
            f"projects/{env['project']}/databases/{points_to}/documents/users/u001")
