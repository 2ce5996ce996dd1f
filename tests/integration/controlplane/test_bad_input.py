"""Hostile and broken requests get a 4xx with the error body, never a 500 and never a partial change."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from firebackup.db.models import AuditLog, Organization, UserOrganization, new_id
from tests.integration.controlplane.world import seed_token


@pytest.fixture
def owner(api):
    """An org with an owner API token: (org_id, token)."""
    with api.session() as s, s.begin():
        org = Organization(id=new_id("org"), name="Acme")
        s.add(org)
        s.flush()
        tok = seed_token(s, org.id)
    return org.id, tok


def _err(r, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, (r.status_code, r.get_data()[:300])
    body = r.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    if code:
        assert body["error"]["code"] == code
    return body["error"]


def test_an_oversized_body_is_refused_with_413(api, owner) -> None:
    org, tok = owner
    big = json.dumps({"url": "https://x.test/" + "a" * 1_100_000, "events": ["backup.completed"], "secret": "s" * 20})
    r = api.call("POST", f"/v1/orgs/{org}/webhooks", tok, data=big, headers={"Content-Type": "application/json"})
    _err(r, 413, "request_too_large")


def test_malformed_json_is_refused_with_400(api, owner) -> None:
    org, tok = owner
    for data in ['{"name": ', "not json", "[" * 5000 + "]" * 5000, '{"name": "a"} trailing']:
        r = api.call("POST", f"/v1/orgs/{org}/webhooks", tok, data=data, headers={"Content-Type": "application/json"})
        assert r.status_code in (400, 422), r.get_data()[:200]
        _err(r, r.status_code)


def test_a_body_that_is_not_json_is_refused_with_415(api, owner) -> None:
    org, tok = owner
    r = api.call("POST", f"/v1/orgs/{org}/webhooks", tok, data="url=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    _err(r, 415, "unsupported_media_type")


@pytest.mark.parametrize("body,field", [
    ({"name": 5}, "name"),
    ({"name": ["a"]}, "name"),
    ({"name": None}, "name"),
    ({}, "name"),
    ({"name": "ok", "is_admin": True}, "is_admin"),
])
def test_wrong_types_missing_and_unknown_fields_are_refused_with_422_naming_the_field(api, owner, body, field) -> None:
    org, tok = owner
    e = _err(api.call("PATCH", f"/v1/orgs/{org}", tok, json=body), 422, "invalid")
    assert [d["loc"][0] for d in e["details"]] == [field]


def test_validation_errors_never_echo_the_input_back(api, owner) -> None:
    org, tok = owner
    secret_ish = "-----BEGIN PRIVATE KEY-----secret"
    r = api.call("POST", f"/v1/orgs/{org}/projects", tok, json={
        "name": "p", "gcp_project_id": "acme-prod", "service_account_key": {"type": "nope", "private_key": secret_ish,
                                                                          "client_email": 5}})
    _err(r, 422)
    assert secret_ish.encode() not in r.get_data()


@pytest.mark.parametrize("name", [
    "'; DROP TABLE organizations; --", "\" OR 1=1 --", "<script>alert(1)</script>", "Robert'); --", "%00%27", "{{7*7}}",
])
def test_sql_and_html_metacharacters_are_stored_as_plain_text(api, owner, name) -> None:
    org, tok = owner
    r = api.call("PATCH", f"/v1/orgs/{org}", tok, json={"name": name})
    assert r.status_code == 200 and r.get_json()["name"] == name
    assert r.headers["Content-Type"] == "application/json"
    assert api.call("GET", f"/v1/orgs/{org}", tok).get_json()["name"] == name


@pytest.mark.parametrize("bad", ["a\u0000b", "x\ud800y"])
def test_nul_and_unpaired_surrogates_are_refused_with_422(api, owner, bad) -> None:
    org, tok = owner
    data = json.dumps({"name": bad})  # json.dumps escapes both, so they reach the server as JSON escapes
    r = api.call("PATCH", f"/v1/orgs/{org}", tok, data=data, headers={"Content-Type": "application/json"})
    _err(r, 422, "invalid")
    r = api.call("GET", f"/v1/orgs/{org}/audit?action=a%00b", tok)
    _err(r, 422, "invalid")


@pytest.mark.parametrize("path", ["/v1/orgs/' OR '1'='1", "/v1/orgs/%00", "/v1/orgs/" + "a" * 41,
                                  "/v1/orgs/<img>/projects"])
def test_malformed_ids_in_the_path_are_not_found(api, owner, path) -> None:
    _, tok = owner
    _err(api.call("GET", path, tok), 404)


def test_bad_query_parameters_are_refused_with_422(api, owner) -> None:
    org, tok = owner
    for q in ("limit=0", "limit=201", "limit=abc", "since=yesterday", "cursor=" + "x" * 41, "unknown=1"):
        _err(api.call("GET", f"/v1/orgs/{org}/audit?{q}", tok), 422, "invalid")


def test_a_refused_request_changes_nothing_and_writes_no_success_audit_row(api, owner) -> None:
    org, tok = owner
    r = api.call("POST", f"/v1/orgs/{org}/schedules", tok, json={
        "name": "s", "project_id": "prj_nope", "destination_id": "dst_nope", "cron": "0 3 * * *"})
    _err(r, 404)
    r = api.call("POST", f"/v1/orgs/{org}/schedules", tok, json={
        "name": "s", "project_id": "prj_nope", "destination_id": "dst_nope", "cron": "61 3 * * *"})
    e = _err(r, 422, "invalid")
    assert "minute" in e["message"]
    with api.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(AuditLog).where(AuditLog.org_id == org)) == 0


def test_an_oversized_body_without_content_length_is_refused_with_413(api, owner) -> None:
    import io

    org, tok = owner
    big = json.dumps({"name": "a" * 1_100_000}).encode()
    # A chunked request as a WSGI server hands it over: no CONTENT_LENGTH, input marked as terminated.
    from werkzeug.test import EnvironBuilder

    env = EnvironBuilder(path=f"/v1/orgs/{org}", method="PATCH", input_stream=io.BytesIO(big),
                         headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/json"}).get_environ()
    env.pop("CONTENT_LENGTH", None)
    env["wsgi.input_terminated"] = True
    r = api.app.test_client().open(env)
    _err(r, 413)


def test_text_at_the_documented_maximum_length_is_stored_on_every_engine(api, owner) -> None:
    org, tok = owner
    name = "é" * 200
    r = api.call("PATCH", f"/v1/orgs/{org}", tok, json={"name": name})
    assert r.status_code == 200 and r.get_json()["name"] == name
    _err(api.call("PATCH", f"/v1/orgs/{org}", tok, json={"name": name + "x"}), 422)
    # "İ" lower-cases to two characters: 172 characters in, 332 after, over the 320 the column holds.
    r = api.call("POST", f"/v1/orgs/{org}/members", tok, json={"email": "İ" * 160 + "@example.com", "role": "viewer"})
    _err(r, 422, "invalid")
    r = api.call("POST", f"/v1/orgs/{org}/members", tok, json={"email": "İ" * 150 + "@example.com", "role": "viewer"})
    assert r.status_code == 201 and len(r.get_json()["email"]) == 312
