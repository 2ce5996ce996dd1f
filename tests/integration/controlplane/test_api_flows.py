"""End-to-end flows through the API on both engines: tokens, pagination, audit filters, OAuth, jobs, destinations."""

from __future__ import annotations

import json
import os
import time

import boto3
import pytest
import sqlalchemy as sa

from firebackup.db.models import ApiToken, AuditLog, Backup, Organization, Restore, new_id
from firebackup.services.identity import hash_token
from tests.integration.controlplane.world import SA_KEY, build_world, seed_token

EMAILS = {c: f"flow-{c}@example.com" for c in ("owner", "admin", "member", "viewer", "outsider")}


def _token(api, org_id: str, role: str = "owner", **kw) -> str:
    with api.session() as s, s.begin():
        return seed_token(s, org_id, role, **kw)


@pytest.fixture
def world(api):
    return build_world(api, EMAILS)


def test_an_api_token_is_shown_once_stored_as_a_hash_scoped_to_its_org_and_role_and_revocable(api, world) -> None:
    # A token mints tokens only when a signed-in member allowed it (test_token_owners.py has the refusal).
    admin = _token(api, world.org, "admin", can_create_tokens=True)
    r = api.call("POST", f"/v1/orgs/{world.org}/tokens", admin, json={"name": "ci", "role": "member"})
    assert r.status_code == 201
    created = r.get_json()
    token = created["token"]
    assert token.startswith("fbk_") and len(token) > 40 and created["prefix"] == token[:10]
    with api.session() as s:
        row = s.get(ApiToken, created["id"])
        assert row.token_hash == hash_token(token) and token not in row.token_hash and row.last_used_at is None
    listed = api.call("GET", f"/v1/orgs/{world.org}/tokens", admin).get_json()["items"]
    assert all("token" not in t for t in listed) and created["id"] in [t["id"] for t in listed]
    # Works in its org with its role, and records its use.
    assert api.call("POST", f"/v1/orgs/{world.org}/backups", token,
                    json={"project_id": world.project, "destination_id": world.destination}).status_code == 202
    assert api.call("POST", f"/v1/orgs/{world.org}/projects", token, json={}).status_code == 403
    with api.session() as s:
        assert s.get(ApiToken, created["id"]).last_used_at is not None
    # Another org does not exist for it.
    with api.session() as s, s.begin():
        other = Organization(id=new_id("org"), name="Other")
        s.add(other)
    assert api.call("GET", f"/v1/orgs/{other.id}", token).status_code == 404
    assert [o["id"] for o in api.call("GET", "/v1/orgs", token).get_json()["items"]] == [world.org]
    me = api.call("GET", "/v1/me", token).get_json()
    assert me == {"kind": "token", "id": created["id"], "email": None, "org_id": world.org, "role": "member"}
    # A token cannot mint one above its own role, nor create organizations.
    assert api.call("POST", f"/v1/orgs/{world.org}/tokens", admin, json={"name": "x", "role": "owner"}).status_code == 403
    assert api.call("POST", "/v1/orgs", admin, json={"name": "x"}).status_code == 403
    # Revoked: refused from then on.
    assert api.call("DELETE", f"/v1/orgs/{world.org}/tokens/{created['id']}", admin).status_code == 204
    assert api.call("GET", f"/v1/orgs/{world.org}", token).status_code == 401


def test_lists_paginate_with_a_cursor_without_gaps_or_repeats(api, world) -> None:
    tok = _token(api, world.org)
    for i in range(7):
        r = api.call("POST", f"/v1/orgs/{world.org}/webhooks", tok,
                     json={"url": f"https://h.example.test/{i}", "events": ["backup.failed"], "secret": "s" * 20})
        assert r.status_code == 201
    seen, cursor, pages = [], None, 0
    while True:
        q = f"?limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = api.call("GET", f"/v1/orgs/{world.org}/webhooks{q}", tok).get_json()
        seen += [w["id"] for w in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert pages == 3 and len(seen) == 8 and len(set(seen)) == 8 and seen == sorted(seen)


def test_audit_log_filters_by_actor_action_resource_and_time(api, world) -> None:
    tok = _token(api, world.org)
    t0 = time.time()
    api.call("POST", f"/v1/orgs/{world.org}/backups", tok, json={"project_id": world.project, "destination_id": world.destination})
    api.call("POST", f"/v1/orgs/{world.org}/backups/{world.backup_pending}/cancel", tok)
    api.call("PATCH", f"/v1/orgs/{world.org}/schedules/{world.schedule}", tok, json={"enabled": False},
             headers={"User-Agent": "fb-test/1.0"})
    base = f"/v1/orgs/{world.org}/audit"
    everything = api.call("GET", base, tok).get_json()["items"]
    assert [a["action"] for a in everything] == ["schedule.update", "backup.cancel", "backup.start"]  # newest first
    assert everything[0]["user_agent"] == "fb-test/1.0" and everything[0]["ip"]
    assert [a["action"] for a in api.call("GET", base + "?action=backup.", tok).get_json()["items"]] == ["backup.cancel", "backup.start"]
    assert [a["action"] for a in api.call("GET", base + "?action=backup.cancel", tok).get_json()["items"]] == ["backup.cancel"]
    assert [a["resource_id"] for a in api.call("GET", f"{base}?resource={world.schedule}", tok).get_json()["items"]] == [world.schedule]
    actor = everything[0]["actor_id"]
    assert len(api.call("GET", f"{base}?actor={actor}", tok).get_json()["items"]) == 3
    assert api.call("GET", f"{base}?actor=usr_nobody", tok).get_json()["items"] == []
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + 3600))
    past = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 - 3600))
    assert api.call("GET", f"{base}?since={future}", tok).get_json()["items"] == []
    assert len(api.call("GET", f"{base}?since={past}&until={future}", tok).get_json()["items"]) == 3
    # Instants at the edges of what a datetime holds, given with offsets that push them past it in UTC:
    # they mean "from the beginning" and "until the end", not a 500.
    from urllib.parse import quote

    first, last = quote("0001-01-01T00:00:00+05:00"), quote("9999-12-31T23:59:59-05:00")
    r = api.call("GET", f"{base}?since={first}&until={last}", tok)
    assert r.status_code == 200 and len(r.get_json()["items"]) == 3
    r = api.call("GET", f"{base}?until={first}", tok)
    assert r.status_code == 200 and r.get_json()["items"] == []


def test_starting_a_backup_creates_a_pending_row_and_enqueues_the_plan_task(api, world) -> None:
    tok = _token(api, world.org, "member")
    r = api.call("POST", f"/v1/orgs/{world.org}/backups", tok, json={
        "project_id": world.project, "destination_id": world.destination, "collections": ["users", "orders"]})
    assert r.status_code == 202
    b = r.get_json()
    assert b["state"] == "pending" and b["progress"] == 0 and b["collections"] == ["users", "orders"]
    assert api.queue.tasks[-1] == ("backup.plan", {"job": b["id"]})
    with api.session() as s:
        assert s.get(Backup, b["id"]).state == "pending"
    # Live progress: the engine updates the row, the API shows it.
    with api.session() as s, s.begin():
        row = s.get(Backup, b["id"])
        row.state, row.chunks_total, row.chunks_done = "running", 4, 1
    got = api.call("GET", f"/v1/orgs/{world.org}/backups/{b['id']}", tok).get_json()
    assert got["state"] == "running" and got["progress"] == 0.25
    assert api.call("POST", f"/v1/orgs/{world.org}/backups/{b['id']}/cancel", tok).get_json()["state"] == "cancelled"
    assert api.call("POST", f"/v1/orgs/{world.org}/backups/{b['id']}/cancel", tok).status_code == 409


def test_backups_of_another_orgs_project_cannot_be_started(api, world) -> None:
    other = build_world(api, {k: "x" + v for k, v in EMAILS.items()})
    tok = _token(api, world.org)
    r = api.call("POST", f"/v1/orgs/{world.org}/backups", tok, json={"project_id": other.project, "destination_id": world.destination})
    assert r.status_code == 404 and r.get_json()["error"]["message"] == "project not found"
    r = api.call("POST", f"/v1/orgs/{world.org}/restores", tok, json={"backup_id": other.backup_done, "target_project_id": world.project})
    assert r.status_code == 404


def test_restore_verify_delete_and_manifest_summary_follow_the_backup_state(api, world) -> None:
    tok = _token(api, world.org, "admin")
    base = f"/v1/orgs/{world.org}"
    r = api.call("POST", base + "/restores", tok, json={"backup_id": world.backup_done, "target_project_id": world.project,
                                                         "mode": "merge", "collections": ["users"], "dry_run": True})
    assert r.status_code == 202 and r.get_json()["mode"] == "merge" and r.get_json()["dry_run"] is True
    assert api.queue.tasks[-1] == ("restore.plan", {"job": r.get_json()["id"]})
    assert api.call("POST", base + "/restores", tok, json={"backup_id": world.backup_pending,
                                                           "target_project_id": world.project}).status_code == 409
    m = api.call("GET", f"{base}/backups/{world.backup_done}/manifest", tok).get_json()
    assert m["documents"] == 10 and m["chunks"] == 1 and m["manifest_key"].endswith("manifest.fbm")
    assert api.call("GET", f"{base}/backups/{world.backup_pending}/manifest", tok).status_code == 409
    assert api.call("POST", f"{base}/backups/{world.backup_done}/verify", tok).get_json()["verify_state"] == "pending"
    assert api.call("DELETE", f"{base}/backups/{world.backup_pending}", tok).status_code == 409
    assert api.call("DELETE", f"{base}/backups/{world.backup_done}", tok).status_code == 204
    assert api.queue.tasks[-1] == ("delete_backup", {"backup_id": world.backup_done, "org_id": world.org})
    with api.session() as s:  # the worker removes the objects, then the row
        assert s.get(Backup, world.backup_done).state == "deleting"


def test_oauth_connection_seals_the_refresh_token_and_rejects_forged_or_foreign_state(api, world) -> None:
    tok = _token(api, world.org, "admin")
    base = f"/v1/orgs/{world.org}/projects/oauth"
    start = api.call("POST", base + "/start", tok).get_json()
    assert start["state"] in start["authorization_url"]
    body = {"state": start["state"], "code": "4/0Abc", "name": "via oauth", "gcp_project_id": "acme-oauth"}
    r = api.call("POST", base + "/complete", tok, json=body)
    assert r.status_code == 201 and r.get_json()["auth_kind"] == "oauth" and api.oauth.codes == ["4/0Abc"]
    from firebackup.db.models import Project

    with api.session() as s:
        p = s.get(Project, r.get_json()["id"])
        opened = api.sealer.open(p.credentials_sealed, f"projects.credentials_sealed:{p.id}")
    assert opened.decode() == api.oauth.refresh_token
    assert api.call("POST", base + "/complete", tok, json={**body, "state": "fbs1.forged", "gcp_project_id": "acme-two"}).status_code == 422
    other_tok = _token(api, build_world(api, {k: "o" + v for k, v in EMAILS.items()}).org, "admin")
    assert api.call("POST", base + "/complete", other_tok, json={**body, "gcp_project_id": "acme-three"}).status_code == 404
    expired = api.sealer.seal(json.dumps({"org": world.org, "actor": "x", "exp": 1}), "oauth-state")
    assert api.call("POST", base + "/complete", tok, json={**body, "state": expired, "gcp_project_id": "acme-four"}).status_code == 422


def test_connecting_a_project_seals_the_key_and_test_connection_uses_it(api, world) -> None:
    tok = _token(api, world.org, "admin")
    r = api.call("POST", f"/v1/orgs/{world.org}/projects", tok, json={
        "name": "staging", "gcp_project_id": "acme-staging", "database_id": "orders-db", "service_account_key": SA_KEY})
    assert r.status_code == 201
    p = r.get_json()
    assert "service_account_key" not in p and p["credentials_fingerprint"].startswith("hmac:")
    assert api.call("POST", f"/v1/orgs/{world.org}/projects", tok, json={
        "name": "again", "gcp_project_id": "acme-staging", "database_id": "orders-db", "service_account_key": SA_KEY}).status_code == 409
    res = api.call("POST", f"/v1/orgs/{world.org}/projects/{p['id']}/test", tok).get_json()
    assert res == {"ok": True, "message": "connected"}
    gcp, db, kind, creds = api.prober.seen[-1]
    assert (gcp, db, kind) == ("acme-staging", "orders-db", "service_account") and json.loads(creds) == SA_KEY


def test_local_destination_test_writes_and_deletes_a_probe_object(api, world) -> None:
    tok = _token(api, world.org, "member")
    r = api.call("POST", f"/v1/orgs/{world.org}/destinations/{world.destination}/test", tok)
    assert r.get_json() == {"ok": True, "message": "wrote and deleted a probe object"}
    leftovers = [f for _, _, fs in os.walk(world.folder) for f in fs]
    assert leftovers == []


def test_s3_destination_test_uses_the_sealed_credentials_against_a_real_s3_server(api, world, s3_server) -> None:
    env = s3_server.env
    admin = _token(api, world.org, "admin")
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    bucket = f"fb-{new_id('b').lower().replace('_', '-')}"
    s3.create_bucket(Bucket=bucket)
    r = api.call("POST", f"/v1/orgs/{world.org}/destinations", admin, json={
        "name": "minio-like", "kind": "s3compat", "url": f"s3://{bucket}/backups", "endpoint_url": env["AWS_ENDPOINT_URL"],
        "region": "us-east-1", "credentials": {"access_key_id": env["AWS_ACCESS_KEY_ID"],
                                               "secret_access_key": env["AWS_SECRET_ACCESS_KEY"]}})
    assert r.status_code == 201, r.get_json()
    dest = r.get_json()
    assert dest["options"] == {"region": "us-east-1", "endpoint_url": env["AWS_ENDPOINT_URL"]}
    res = api.call("POST", f"/v1/orgs/{world.org}/destinations/{dest['id']}/test", admin).get_json()
    assert res == {"ok": True, "message": "wrote and deleted a probe object"}
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    r = api.call("POST", f"/v1/orgs/{world.org}/destinations", admin, json={
        "name": "missing", "kind": "s3compat", "url": "s3://no-such-bucket-here/x", "endpoint_url": env["AWS_ENDPOINT_URL"],
        "credentials": {"access_key_id": "a", "secret_access_key": "b"}})
    res = api.call("POST", f"/v1/orgs/{world.org}/destinations/{r.get_json()['id']}/test", admin).get_json()
    assert res["ok"] is False and res["message"]


def test_destination_urls_must_match_their_kind_and_local_folders_need_development_mode(api, world) -> None:
    tok = _token(api, world.org, "admin")
    bad = [
        {"name": "x", "kind": "s3", "url": "gs://b/p"},
        {"name": "x", "kind": "gcs", "url": "gs://b/p", "credentials": {"access_key_id": "a", "secret_access_key": "b"}},
        {"name": "x", "kind": "s3", "url": "s3://user:pw@b/p"},
        {"name": "x", "kind": "s3compat", "url": "s3://b/p"},
        {"name": "x", "kind": "s3", "url": "s3://b/p", "credentials": {"access_key_id": "a"}},
    ]
    for body in bad:
        r = api.call("POST", f"/v1/orgs/{world.org}/destinations", tok, json=body)
        assert r.status_code == 422, body


def test_members_invite_change_role_and_the_last_owner_cannot_be_removed_demoted_or_leave(harness, emails) -> None:
    owner = harness.user_token(emails["owner"])
    org = harness.call("POST", "/v1/orgs", owner, json={"name": "Team"}).get_json()["id"]
    base = f"/v1/orgs/{org}/members"
    r = harness.call("POST", base, owner, json={"email": emails["admin"], "role": "admin"})
    assert r.status_code == 201
    assert harness.call("POST", base, owner, json={"email": emails["admin"], "role": "viewer"}).status_code == 409
    admin = harness.user_token(emails["admin"])  # first sign-in links the invitation by email
    assert [o["id"] for o in harness.call("GET", "/v1/orgs", admin).get_json()["items"]] == [org]
    me_owner = harness.call("GET", "/v1/me", owner).get_json()["id"]
    me_admin = harness.call("GET", "/v1/me", admin).get_json()["id"]
    # Admins manage the team but not owners.
    assert harness.call("PATCH", f"{base}/{me_owner}", admin, json={"role": "viewer"}).status_code == 403
    assert harness.call("POST", base, admin, json={"email": "x@example.com", "role": "owner"}).status_code == 403
    # The last owner stays.
    assert harness.call("PATCH", f"{base}/{me_owner}", owner, json={"role": "admin"}).status_code == 409
    assert harness.call("DELETE", f"{base}/{me_owner}", owner).status_code == 409
    assert harness.call("POST", f"/v1/orgs/{org}/leave", owner).status_code == 409
    # With a second owner, the first may go.
    assert harness.call("PATCH", f"{base}/{me_admin}", owner, json={"role": "owner"}).get_json()["role"] == "owner"
    assert harness.call("POST", f"/v1/orgs/{org}/leave", owner).status_code == 204
    assert harness.call("GET", f"/v1/orgs/{org}", owner).status_code == 404
    roles = {m["user_id"]: m["role"] for m in harness.call("GET", base, admin).get_json()["items"]}
    assert roles == {me_admin: "owner"}


def test_an_id_token_from_another_project_or_a_tampered_one_is_refused(harness, emails) -> None:
    token = harness.user_token(emails["viewer"])
    head, payload, sig = token.split(".")
    import base64

    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["aud"] = "some-other-project"
    forged = head + "." + base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=") + "." + sig
    r = harness.call("GET", "/v1/me", forged)
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthenticated"
    assert harness.call("GET", "/v1/me", token).status_code == 200


def test_the_manifest_summary_reads_the_manifest_header_from_the_destination(api, world) -> None:
    from firebackup.engine.demo import backup_generated
    from firebackup.engine.repository import Repository
    from firebackup.storage import open_storage

    tok = _token(api, world.org, "viewer")
    url = f"/v1/orgs/{world.org}/backups/{world.backup_done}/manifest"
    missing = api.call("GET", url, tok).get_json()
    assert missing["stored"] is None and "20260101T000000Z-0123abcd" in missing["stored_error"]
    out = backup_generated(Repository(open_storage(f"file://{world.folder}")), documents=25, collections=["users"])
    with api.session() as s, s.begin():
        s.get(Backup, world.backup_done).repo_backup_id = out.backup_id
    got = api.call("GET", url, tok).get_json()
    assert got["stored_error"] is None
    assert got["stored"]["backup_id"] == out.backup_id and got["stored"]["documents"] == 25
    assert got["stored"]["encrypted"] is False and got["stored"]["format_version"] == 1
