"""--include-auth: every user becomes one JSON record in kind="auth" chunks, with the hash config."""

from __future__ import annotations

import os

import json

import pytest
from firebase_admin import auth

from firebackup.crypto.keys import LocalKey
from firebackup.engine.sources import FirebaseAuthUsers, FirestoreSource
from firebackup.engine.backup import BackupRequest, run_backup
from firebackup.firestore import auth as fa

from backup_helpers import backup_records, commit, doc

pytestmark = pytest.mark.integration


def test_auth_users_are_backed_up_encrypted_in_auth_chunks_beside_the_documents(
        auth_emulator, monkeypatch, conn, repo):
    auth_emulator.apply(monkeypatch)
    app = fa.auth_app(conn.project, emulator_host=os.environ["FIREBASE_AUTH_EMULATOR_HOST"])
    for i in range(3):
        auth.create_user(uid=f"u{i}", email=f"u{i}@example.com", password=f"pw-{i}-secret", app=app)
    auth.set_custom_user_claims("u1", {"admin": True}, app=app)
    commit(conn, put=[doc(conn, "things/t1")])
    kek = LocalKey.from_text(LocalKey.generate_text())

    result = run_backup(BackupRequest(project=conn.project, include_auth=True), repo=repo, kek=kek, source=FirestoreSource(conn),
                        auth=FirebaseAuthUsers(emulator_host=auth_emulator.env["FIREBASE_AUTH_EMULATOR_HOST"]))

    assert (result.auth_users, result.documents, result.chunks) == (3, 1, 2)
    manifest, _ = repo.read_manifest(result.backup_id, kek)
    assert [(c.chunk_id, c.kind, c.records) for c in manifest.chunks] == [("d00000-00000", "docs", 1),
                                                                          ("a00000", "auth", 3)]
    assert manifest.auth_users == 3 and manifest.auth_hash_config == {"algorithm": fa.EMULATOR_HASH}
    users = {u["localId"]: u for u in map(json.loads, backup_records(repo, result.backup_id, kek, kind="auth"))}
    assert sorted(users) == ["u0", "u1", "u2"]
    assert json.loads(users["u1"]["customAttributes"]) == {"admin": True}
    assert all(u.get("passwordHash") for u in users.values())
