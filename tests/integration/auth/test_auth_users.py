"""Auth users against the real Firebase Auth emulator: export, import, sign in again, exact errors."""

from __future__ import annotations

import os

import json
import secrets

import pytest
import requests
from firebase_admin import auth

from firebackup.engine.backup import BackupRequest, run_backup
from firebackup.engine.sources import FirebaseAuthUsers, FirestoreSource
from firebackup.firestore.grpc import open_firestore
from firebackup.engine.repository import Repository
from firebackup.engine.restore import RestoreRequest, run_restore
from firebackup.firestore import auth as fa
from firebackup.storage import MemoryStorage
from infra.local.stack import DEFAULT_AUTH_PROJECT

pytestmark = pytest.mark.integration


@pytest.fixture
def emulator(auth_emulator, monkeypatch):
    return auth_emulator.apply(monkeypatch)


def sign_in(host: str, email: str, password: str) -> requests.Response:
    """The REST sign-in a client app makes; the emulator maps any API key to its default project."""
    return requests.post(
        f"http://{host}/identitytoolkit.googleapis.com/v1/accounts:signInWithPassword?key=fake-api-key",
        json={"email": email, "password": password, "returnSecureToken": True},
        timeout=30,
    )


def make_users(project: str, tag: str) -> dict[str, str]:
    """Users of every shape in `project`; returns {uid: password or ''}."""
    app = fa.auth_app(project, emulator_host=os.environ["FIREBASE_AUTH_EMULATOR_HOST"])
    auth.create_user(uid=f"{tag}-pw", email=f"{tag}-pw@example.com", password="s3cret-pw!", display_name="Ann Ünï",
                     photo_url="https://example.com/a.png", email_verified=True,
                     phone_number=f"+1555{int(tag[-6:], 16) % 10**7:07d}", app=app)
    auth.set_custom_user_claims(f"{tag}-pw", {"admin": True, "tier": 3, "tags": ["a", "b"]}, app=app)
    auth.create_user(uid=f"{tag}-off", email=f"{tag}-off@example.com", password="disabled-pw", disabled=True, app=app)
    res = auth.import_users([
        auth.ImportUserRecord(uid=f"{tag}-google", email=f"{tag}-g@example.com", display_name="Gee",
                              provider_data=[auth.UserProvider(uid=f"g-{tag}", provider_id="google.com",
                                                               email=f"{tag}-g@example.com", display_name="Gee")]),
        auth.ImportUserRecord(uid=f"{tag}-bare"),
    ], app=app)
    assert res.failure_count == 0
    return {f"{tag}-pw": "s3cret-pw!", f"{tag}-off": "disabled-pw", f"{tag}-google": "", f"{tag}-bare": ""}


def comparable(u) -> dict:
    return {
        "email": u.email, "email_verified": u.email_verified, "display_name": u.display_name,
        "photo_url": u.photo_url, "phone_number": u.phone_number, "disabled": u.disabled,
        "custom_claims": u.custom_claims, "created": u.user_metadata.creation_timestamp,
        "providers": sorted((p.provider_id, p.uid, p.email) for p in u.provider_data),
    }


def test_auth_users_round_trip_keeps_passwords_claims_disabled_and_providers(emulator, project_id):
    tag = f"rt{secrets.token_hex(3)}"
    users = make_users(project_id, tag)
    records, hash_config = fa.export_users(project_id, emulator_host=emulator.env[fa.EMULATOR_ENV])
    records = list(records)
    assert hash_config == {"algorithm": fa.EMULATOR_HASH}
    assert sorted(json.loads(r)["localId"] for r in records) == sorted(users)
    pw = next(json.loads(r) for r in records if json.loads(r)["localId"] == f"{tag}-pw")
    assert pw["passwordHash"] and pw["salt"] and json.loads(pw["customAttributes"])["tier"] == 3

    outcome = fa.import_user_records(DEFAULT_AUTH_PROJECT, records, hash_config, emulator_host=emulator.env[fa.EMULATOR_ENV])
    assert (outcome.imported, outcome.failed, outcome.errors) == (4, 0, [])

    src_app, dst_app = fa.auth_app(project_id, emulator_host=os.environ["FIREBASE_AUTH_EMULATOR_HOST"]), fa.auth_app(DEFAULT_AUTH_PROJECT, emulator_host=os.environ["FIREBASE_AUTH_EMULATOR_HOST"])
    for uid in users:
        assert comparable(auth.get_user(uid, app=dst_app)) == comparable(auth.get_user(uid, app=src_app)), uid
    ok = sign_in(emulator.env["FIREBASE_AUTH_EMULATOR_HOST"], f"{tag}-pw@example.com", "s3cret-pw!")
    assert ok.status_code == 200 and ok.json()["localId"] == f"{tag}-pw"
    wrong = sign_in(emulator.env["FIREBASE_AUTH_EMULATOR_HOST"], f"{tag}-pw@example.com", "not-it")
    assert wrong.status_code == 400
    off = sign_in(emulator.env["FIREBASE_AUTH_EMULATOR_HOST"], f"{tag}-off@example.com", "disabled-pw")
    assert off.status_code == 400 and "USER_DISABLED" in off.text


def test_export_pages_through_every_user(emulator, project_id):
    app = fa.auth_app(project_id, emulator_host=os.environ["FIREBASE_AUTH_EMULATOR_HOST"])
    res = auth.import_users([auth.ImportUserRecord(uid=f"p{i:02d}", email=f"p{i}@example.com") for i in range(7)], app=app)
    assert res.success_count == 7
    records = list(fa.iter_user_records(project_id, page_size=3, emulator_host=emulator.env[fa.EMULATOR_ENV]))
    assert [json.loads(r)["localId"] for r in records] == [f"p{i:02d}" for i in range(7)]


def test_import_reports_per_user_errors_exactly(emulator, project_id):
    target = project_id + "-dst"
    records = [json.dumps({"localId": f"ok{i}", "email": f"ok{i}@example.com"}).encode() for i in range(5)]
    records += [
        json.dumps({"localId": "bad-email", "email": "not an email"}).encode(),
        b"{not json",
        json.dumps({"localId": "pw", "passwordHash": "aGFzaA==", "salt": "c2FsdA=="}).encode(),  # no hash parameters
    ]
    outcome = fa.import_user_records(target, records, None, emulator_host=emulator.env[fa.EMULATOR_ENV])
    assert (outcome.imported, outcome.failed, outcome.skipped) == (5, 3, 0)
    assert sorted(e.split(":")[0] for e in outcome.errors) == ["auth user ?", "auth user bad-email", "auth user pw"]
    listed = sorted(u.uid for u in auth.list_users(app=fa.auth_app(target, emulator_host=os.environ["FIREBASE_AUTH_EMULATOR_HOST"])).iterate_all())
    assert listed == sorted(f"ok{i}" for i in range(5))


def _target_with_existing_users(project_id: str) -> tuple[str, list[bytes]]:
    """A target holding users `keep-0` and `keep-1` (old emails) and records for them (new emails) and two new users."""
    target = project_id + "-modes"
    app = fa.auth_app(target, emulator_host=os.environ["FIREBASE_AUTH_EMULATOR_HOST"])
    res = auth.import_users([auth.ImportUserRecord(uid=f"keep-{i}", email=f"old{i}@example.com", disabled=True)
                             for i in range(2)], app=app)
    assert res.success_count == 2
    records = [json.dumps({"localId": f"keep-{i}", "email": f"new{i}@example.com"}).encode() for i in range(2)]
    records += [json.dumps({"localId": f"fresh-{i}", "email": f"fresh{i}@example.com"}).encode() for i in range(2)]
    return target, records


def _emails(target: str) -> dict[str, tuple[str, bool]]:
    return {u.uid: (u.email, u.disabled) for u in auth.list_users(app=fa.auth_app(target, emulator_host=os.environ["FIREBASE_AUTH_EMULATOR_HOST"])).iterate_all()}


@pytest.mark.parametrize("mode", ["overwrite", "merge"])
def test_overwrite_and_merge_replace_a_user_whose_uid_is_already_there(emulator, project_id, mode):
    target, records = _target_with_existing_users(project_id)
    outcome = fa.import_user_records(target, records, None, mode=mode, emulator_host=emulator.env[fa.EMULATOR_ENV])
    assert (outcome.imported, outcome.failed, outcome.skipped, outcome.errors) == (4, 0, 0, [])
    assert _emails(target) == {"keep-0": ("new0@example.com", False), "keep-1": ("new1@example.com", False),
                               "fresh-0": ("fresh0@example.com", False), "fresh-1": ("fresh1@example.com", False)}


def test_skip_leaves_users_already_there_as_they_are_and_counts_them(emulator, project_id):
    target, records = _target_with_existing_users(project_id)
    outcome = fa.import_user_records(target, records, None, mode="skip", emulator_host=emulator.env[fa.EMULATOR_ENV])
    assert (outcome.imported, outcome.failed, outcome.skipped) == (2, 0, 2)
    assert _emails(target) == {"keep-0": ("old0@example.com", True), "keep-1": ("old1@example.com", True),
                               "fresh-0": ("fresh0@example.com", False), "fresh-1": ("fresh1@example.com", False)}


def test_a_skip_dry_run_counts_what_a_real_run_would_and_writes_nothing(emulator, project_id):
    target, records = _target_with_existing_users(project_id)
    outcome = fa.import_user_records(target, records, None, mode="skip", dry_run=True, emulator_host=emulator.env[fa.EMULATOR_ENV])
    assert (outcome.imported, outcome.failed, outcome.skipped) == (2, 0, 2)
    assert set(_emails(target)) == {"keep-0", "keep-1"}


def test_an_unknown_mode_is_a_usage_error(project_id):
    from firebackup.errors import UsageError

    with pytest.raises(UsageError, match="unknown restore mode"):
        fa.import_user_records(project_id, [], None, mode="upsert")


def test_import_sends_batches_of_a_thousand_users(emulator, project_id):
    records = [json.dumps({"localId": f"u{i:05d}", "email": f"u{i}@example.com", "disabled": i % 2 == 0}).encode()
               for i in range(2345)]
    outcome = fa.import_user_records(project_id, records, None, emulator_host=emulator.env[fa.EMULATOR_ENV])
    assert (outcome.imported, outcome.failed) == (2345, 0)
    assert sum(1 for _ in auth.list_users(app=fa.auth_app(project_id, emulator_host=os.environ["FIREBASE_AUTH_EMULATOR_HOST"])).iterate_all()) == 2345


def test_dry_run_import_sends_nothing(emulator, project_id):
    records = [json.dumps({"localId": f"d{i}"}).encode() for i in range(3)]
    outcome = fa.import_user_records(project_id, records, None, dry_run=True, emulator_host=emulator.env[fa.EMULATOR_ENV])
    assert (outcome.imported, outcome.failed) == (3, 0)
    assert list(auth.list_users(app=fa.auth_app(project_id, emulator_host=os.environ["FIREBASE_AUTH_EMULATOR_HOST"])).iterate_all()) == []


def test_backup_and_restore_with_auth_users(emulator, firestore_emulator, monkeypatch, project_id):
    firestore_emulator.apply(monkeypatch)
    tag = f"br{secrets.token_hex(3)}"
    users = make_users(project_id, tag)
    repo = Repository(MemoryStorage())
    host = firestore_emulator.env["FIRESTORE_EMULATOR_HOST"]
    source = FirestoreSource(open_firestore(project_id, emulator_host=host))
    target = open_firestore(DEFAULT_AUTH_PROJECT, emulator_host=host)
    firebase_auth = FirebaseAuthUsers(emulator_host=emulator.env["FIREBASE_AUTH_EMULATOR_HOST"])
    backup = run_backup(BackupRequest(project=project_id, include_auth=True), source=source, repo=repo,
                        auth=firebase_auth)
    source.close()
    assert backup.auth_users == len(users)
    result = run_restore(RestoreRequest(backup_id=backup.backup_id, project=DEFAULT_AUTH_PROJECT, include_auth=True), repo=repo, target=target,
                         auth=firebase_auth)
    assert result.auth_users == len(users) and result.auth_users_failed == 0
    ok = sign_in(emulator.env["FIREBASE_AUTH_EMULATOR_HOST"], f"{tag}-pw@example.com", "s3cret-pw!")
    assert ok.status_code == 200
    again = run_restore(RestoreRequest(backup_id=backup.backup_id, project=DEFAULT_AUTH_PROJECT, include_auth=True, mode="skip"), repo=repo,
                        target=target, auth=firebase_auth)
    assert (again.auth_users, again.auth_users_skipped, again.auth_users_failed) == (0, len(users), 0)
    assert again.to_dict()["auth_users_skipped"] == len(users)
    replaced = run_restore(RestoreRequest(backup_id=backup.backup_id, project=DEFAULT_AUTH_PROJECT, include_auth=True), repo=repo, target=target,
                         auth=firebase_auth)
    assert (replaced.auth_users, replaced.auth_users_failed) == (len(users), 0)
    assert "auth_users_skipped" not in replaced.to_dict()


def test_an_unreachable_auth_endpoint_is_transient_and_reported_in_one_line(monkeypatch, project_id):
    from firebackup.errors import SourceUnavailable, is_transient
    from firebackup.retry import RetryPolicy

    dead = "127.0.0.1:9"  # nothing listens on the discard port
    monkeypatch.setenv(fa.EMULATOR_ENV, dead)  # what firebase_admin reads (see fa.client_environment)
    with pytest.raises(SourceUnavailable) as e:
        list(fa.iter_user_records(project_id + "-dead", emulator_host=dead,
                                  retry=RetryPolicy(attempts=2, sleep=lambda s: None)))
    assert "\n" not in str(e.value) and dead in str(e.value)
    assert is_transient(e.value) and "gave up after 2 attempts" in str(e.value)
