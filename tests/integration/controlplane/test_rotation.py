from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import sqlalchemy as sa

from firebackup.crypto.secrets import LocalMasterKey, Sealer
from firebackup.db.models import Project, StorageDestination, Webhook
from firebackup.db.session import make_session_factory
from firebackup.services.rotate import reseal_all
from tests.integration.controlplane.world import SA_KEY, build_world, seed_token

EMAILS = {c: f"rot-{c}@example.com" for c in ("owner", "admin", "member", "viewer", "outsider")}


def _add_destination_with_credentials(api, org_id: str, folder: str) -> str:
    r = api.call("POST", f"/v1/orgs/{org_id}/destinations", _owner_token(api, org_id), json={
        "name": "s3", "kind": "s3", "url": "s3://bucket/prefix",
        "credentials": {"access_key_id": "AKIAROTATE", "secret_access_key": "rotate-secret-access-key-0123"}})
    assert r.status_code == 201, r.get_json()
    return r.get_json()["id"]


def _owner_token(api, org_id: str) -> str:
    with api.session() as s, s.begin():
        return seed_token(s, org_id)


def _tokens(engine) -> list[str]:
    with engine.connect() as c:
        return [t for q in ("SELECT credentials_sealed FROM projects", "SELECT credentials_sealed FROM storage_destinations",
                            "SELECT secret_sealed FROM webhooks") for (t,) in c.execute(sa.text(q)) if t]


def test_rotation_reseals_every_secret_under_the_new_key_and_only_the_new_key_is_needed_after(api, engine) -> None:
    w = build_world(api, EMAILS)
    _add_destination_with_credentials(api, w.org, w.folder)
    old_id = api.sealer.current.key_id
    before = _tokens(engine)
    assert len(before) == 3 and all(api.sealer.key_id_of(t) == old_id for t in before)

    new = LocalMasterKey(os.urandom(32))
    report = reseal_all(make_session_factory(engine), Sealer(new, [api.sealer.current]), batch=1)
    assert report.total == 3 and report.already_current == 0
    after = _tokens(engine)
    assert all(api.sealer.key_id_of(t) == new.key_id for t in after) and not set(after) & set(before)

    only_new = Sealer(new)
    with api.session() as s:
        p = s.get(Project, w.project)
        assert json.loads(only_new.open(p.credentials_sealed, f"projects.credentials_sealed:{p.id}")) == SA_KEY
        wh = s.get(Webhook, w.webhook)
        assert only_new.open(wh.secret_sealed, f"webhooks.secret_sealed:{wh.id}") == b"whsec-world-0123456789"
        d = s.scalar(sa.select(StorageDestination).where(StorageDestination.credentials_sealed.is_not(None)))
        creds = json.loads(only_new.open(d.credentials_sealed, f"storage_destinations.credentials_sealed:{d.id}"))
        assert creds["secret_access_key"] == "rotate-secret-access-key-0123"

    again = reseal_all(make_session_factory(engine), Sealer(new, [api.sealer.current]))
    assert again.total == 0 and again.already_current == 3


def test_rotate_command_reads_keys_from_the_environment_and_reports_counts(api, engine, db_url) -> None:
    build_world(api, EMAILS)
    new_key = os.urandom(32)
    env = dict(os.environ, FIREBACKUP_DATABASE_URL=db_url,
               FIREBACKUP_MASTER_KEY=base64.b64encode(new_key).decode(),
               FIREBACKUP_OLD_MASTER_KEYS=base64.b64encode(api.master_key).decode())
    out = subprocess.run([sys.executable, "-m", "firebackup.services.rotate"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "projects.credentials_sealed: 1 re-sealed" in out.stdout and "webhooks.secret_sealed: 1 re-sealed" in out.stdout
    assert base64.b64encode(new_key).decode() not in out.stdout + out.stderr
    new_id = LocalMasterKey(new_key).key_id
    assert all(api.sealer.key_id_of(t) == new_id for t in _tokens(engine))


def test_rotate_command_without_the_old_key_fails_with_a_clear_message_and_changes_nothing(api, engine, db_url) -> None:
    build_world(api, EMAILS)
    before = _tokens(engine)
    env = dict(os.environ, FIREBACKUP_DATABASE_URL=db_url,
               FIREBACKUP_MASTER_KEY=base64.b64encode(os.urandom(32)).decode())
    env.pop("FIREBACKUP_OLD_MASTER_KEYS", None)
    out = subprocess.run([sys.executable, "-m", "firebackup.services.rotate"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "FIREBACKUP_OLD_MASTER_KEYS" in out.stderr and "Traceback" not in out.stderr
    assert _tokens(engine) == before
