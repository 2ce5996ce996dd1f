"""Builds one organization with one of every resource, directly in the database, for route tests."""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from firebackup.db.models import (ApiToken, Backup, BackupChunk, KeyRotation, Organization, Project, Restore, Schedule,
                                  StorageDestination, User, UserOrganization, Webhook, new_id)
from firebackup.services.identity import hash_token, new_api_token

SA_KEY = {
    "type": "service_account",
    "project_id": "acme-prod",
    "private_key_id": "0123456789abcdef",
    "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC-sa-key-secret\n-----END PRIVATE KEY-----\n",
    "client_email": "backup@acme-prod.iam.gserviceaccount.com",
}


@dataclass
class World:
    org: str
    users: dict[str, str]  # role -> user id (incl. "target", a viewer to be managed)
    project: str
    destination: str
    backup_pending: str
    backup_done: str
    restore: str
    schedule: str
    webhook: str
    token: str
    folder: str
    rotation: str = ""


def user_id_for(session, email: str) -> str:
    uid = session.scalar(sa.select(User.id).where(User.email == email))
    if uid is None:
        u = User(email=email)
        session.add(u)
        session.flush()
        uid = u.id
    return uid


def seed_token(s, org_id: str, role: str = "owner", name: str = "t", *, can_create_tokens: bool = False) -> str:
    """An API token made in the database by a new member of `role` (a token acts for its creator, within
    their current role), for tests whose subject is not the token itself; returns the token."""
    holder = User(email=f"holder-{secrets.token_hex(6)}@example.com")
    s.add(holder)
    s.flush()
    s.add(UserOrganization(user_id=holder.id, org_id=org_id, role=role))
    tok = new_api_token()
    s.add(ApiToken(id=new_id("tok"), org_id=org_id, name=name, role=role, token_hash=hash_token(tok), prefix=tok[:10],
                   created_by=holder.id, can_create_tokens=can_create_tokens))
    s.flush()
    return tok


def build_world(harness, emails: dict[str, str]) -> World:
    seal = harness.sealer.seal
    with harness.session() as s, s.begin():
        org = Organization(id=new_id("org"), name="Acme")
        s.add(org)
        s.flush()
        users = {}
        for role in ("owner", "admin", "member", "viewer"):
            users[role] = user_id_for(s, emails[role])
            s.add(UserOrganization(user_id=users[role], org_id=org.id, role=role))
        target = User(email=f"target-{secrets.token_hex(4)}@example.com")
        s.add(target)
        s.flush()
        users["target"] = target.id
        s.add(UserOrganization(user_id=target.id, org_id=org.id, role="viewer"))
        # The outsider owns an organization of their own.
        other = Organization(id=new_id("org"), name="Other")
        s.add(other)
        s.flush()
        users["outsider"] = user_id_for(s, emails["outsider"])
        s.add(UserOrganization(user_id=users["outsider"], org_id=other.id, role="owner"))

        pid, did, wid = new_id("prj"), new_id("dst"), new_id("whk")
        key = json.dumps(SA_KEY).encode()
        s.add(Project(id=pid, org_id=org.id, name="prod", gcp_project_id=f"acme-{secrets.token_hex(3)}",
                      auth_kind="service_account",
                      credentials_sealed=seal(key, f"projects.credentials_sealed:{pid}"),
                      credentials_fingerprint=harness.sealer.fingerprint(key)))
        folder = tempfile.mkdtemp(prefix="fb-dest-")
        s.add(StorageDestination(id=did, org_id=org.id, name="local", kind="local", url=f"file://{folder}", options={}))
        s.flush()
        pend = Backup(id=new_id("bkp"), org_id=org.id, project_id=pid, destination_id=did, state="pending")
        done = Backup(id=new_id("bkp"), org_id=org.id, project_id=pid, destination_id=did, state="completed",
                      repo_backup_id="20260101T000000Z-0123abcd", manifest_key="backups/20260101T000000Z-0123abcd/manifest.fbm",
                      documents=10, chunks_total=1, chunks_done=1, bytes_raw=100, bytes_stored=50,
                      read_time=datetime(2026, 1, 1, tzinfo=timezone.utc))
        s.add_all([pend, done])
        s.flush()
        s.add(BackupChunk(backup_id=done.id, chunk_id="d00000-00000", key="k", records=10, bytes_raw=100,
                          bytes_stored=50, sha256="0" * 64))
        rst = Restore(id=new_id("rst"), org_id=org.id, backup_id=done.id, target_project_id=pid, state="pending")
        sch = Schedule(id=new_id("sch"), org_id=org.id, project_id=pid, destination_id=did, name="nightly",
                       cron="0 3 * * *", timezone="UTC", retention={"keep_last": 7})
        s.add(Webhook(id=wid, org_id=org.id, url="https://hooks.example.test/x", events=["backup.completed"],
                      secret_sealed=seal("whsec-world-0123456789", f"webhooks.secret_sealed:{wid}"),
                      secret_fingerprint=harness.sealer.fingerprint("whsec-world-0123456789")))
        tok = ApiToken(id=new_id("tok"), org_id=org.id, name="ci", role="viewer", token_hash=hash_token(new_api_token()),
                       prefix="fbk_xxxxxx", created_by=users["owner"])
        rot = KeyRotation(id=new_id("rot"), org_id=org.id, kms_key_name="projects/c/locations/global/keyRings/r/"
                          "cryptoKeys/old", state="completed")
        s.add_all([rst, sch, tok, rot])
        s.flush()
        return World(org.id, users, pid, did, pend.id, done.id, rst.id, sch.id, wid, tok.id, folder, rot.id)
