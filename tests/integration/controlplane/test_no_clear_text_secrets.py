"""Create every kind of secret through the API, then grep the database, every response and the logs for it."""

from __future__ import annotations

import json
import logging
import secrets

import sqlalchemy as sa

from firebackup.db.models import Base


def _dump_database(engine: sa.Engine) -> str:
    """Every row of every table, as text (bytes decoded leniently so nothing hides in a blob)."""
    out = []
    with engine.connect() as c:
        for table in Base.metadata.sorted_tables:
            for row in c.execute(sa.select(table)):
                for v in row:
                    out.append(v.decode("latin-1") if isinstance(v, bytes) else json.dumps(v, default=str)
                               if isinstance(v, (dict, list)) else str(v))
    return "\n".join(out)


def test_no_secret_appears_in_clear_text_in_the_database_api_responses_or_logs(harness, engine, emails, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)  # even SQL echo must not reveal them
    try:
        _run(harness, engine, emails, caplog)
    finally:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)


def _run(harness, engine, emails, caplog) -> None:
    mark = secrets.token_hex(8)
    sa_private = f"MIIEvSAKEY{mark}privatekeymaterial"
    gcs_private = f"MIIEvGCSKEY{mark}privatekeymaterial"
    s3_secret = f"s3SECRET{mark}wJalrXUtnFEMI"
    webhook_secret = f"whsec_{mark}_webhook_signing"
    refresh = f"1//0gREFRESH{mark}token"
    harness.oauth.refresh_token = refresh
    id_token = harness.user_token(emails["owner"])

    def key(private: str) -> dict:
        return {"type": "service_account", "project_id": "acme-prod", "private_key_id": "abc",
                "private_key": f"-----BEGIN PRIVATE KEY-----\n{private}\n-----END PRIVATE KEY-----\n",
                "client_email": "b@acme-prod.iam.gserviceaccount.com"}

    call = harness.call
    org = call("POST", "/v1/orgs", id_token, json={"name": "Acme"}).get_json()["id"]
    base = f"/v1/orgs/{org}"
    r = call("POST", base + "/projects", id_token,
             json={"name": "prod", "gcp_project_id": "acme-prod", "service_account_key": key(sa_private)})
    assert r.status_code == 201, r.get_json()
    project = r.get_json()["id"]
    assert r.get_json()["credentials_fingerprint"].startswith("hmac:")
    st = call("POST", base + "/projects/oauth/start", id_token).get_json()["state"]
    r = call("POST", base + "/projects/oauth/complete", id_token,
             json={"state": st, "code": "4/auth-code", "name": "oauth", "gcp_project_id": "acme-oauth"})
    assert r.status_code == 201, r.get_json()
    r = call("POST", base + "/destinations", id_token, json={
        "name": "s3", "kind": "s3", "url": "s3://bucket/p", "region": "us-east-1",
        "credentials": {"access_key_id": "AKIAEXAMPLE", "secret_access_key": s3_secret}})
    assert r.status_code == 201, r.get_json()
    r = call("POST", base + "/destinations", id_token, json={
        "name": "gcs", "kind": "gcs", "url": "gs://bucket/p", "credentials": {"service_account_key": key(gcs_private)}})
    assert r.status_code == 201, r.get_json()
    r = call("POST", base + "/webhooks", id_token, json={
        "url": "https://hooks.example.test/fb", "events": ["backup.completed"], "secret": webhook_secret})
    assert r.status_code == 201, r.get_json()
    r = call("POST", base + "/tokens", id_token, json={"name": "ci", "role": "member"})
    assert r.status_code == 201
    api_token = r.get_json()["token"]
    shown_once = len(harness.responses) - 1  # the one response allowed to carry the token
    # Use everything, read everything, and make requests fail with secrets inside them.
    assert call("GET", base + "/projects", api_token).status_code == 200
    assert call("POST", f"{base}/projects/{project}/test", api_token).get_json()["ok"] is True
    assert harness.prober.seen[-1][3] and sa_private in harness.prober.seen[-1][3].decode()  # unsealed for the probe only
    for path in ("/projects", "/destinations", "/webhooks", "/tokens", "/audit", "/members"):
        assert call("GET", base + path, id_token).status_code == 200
    bad = key(sa_private)
    bad["client_email"] = 12
    assert call("POST", base + "/projects", id_token, json={"name": "x", "gcp_project_id": "acme-prod2",
                                                             "service_account_key": bad}).status_code == 422
    assert call("POST", base + "/webhooks", id_token, json={"url": "ftp://x", "events": [], "secret": webhook_secret}).status_code == 422
    assert call("POST", base + "/webhooks", id_token, data=f'{{"secret": "{webhook_secret}"',
                headers={"Content-Type": "application/json"}).status_code == 400
    assert call("GET", base + "/projects", api_token + "x").status_code == 401

    db = _dump_database(engine)
    logs = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    responses = [b.decode("utf-8", "replace") for b in harness.responses]
    clear = {"service-account key": sa_private, "GCS key": gcs_private, "S3 secret": s3_secret,
             "webhook secret": webhook_secret, "OAuth refresh token": refresh, "API token": api_token,
             "Firebase ID token": id_token}
    leaks = []
    for what, value in clear.items():
        if value in db:
            leaks.append(f"{what} in the database")
        if value in logs:
            leaks.append(f"{what} in the logs")
        for i, body in enumerate(responses):
            if value in body and not (what == "API token" and i == shown_once):
                leaks.append(f"{what} in response #{i}")
    assert leaks == []
    # The checks above would see them: the sealed columns exist and the logs are not empty.
    assert "fbs1." in db and len(caplog.records) > 10 and api_token in responses[shown_once]
