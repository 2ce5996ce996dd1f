from __future__ import annotations

from firebackup.db.models import AuditLog, Organization, UserOrganization
import sqlalchemy as sa


def test_a_signed_in_user_creates_an_organization_becomes_owner_and_the_change_is_audited(harness, emails) -> None:
    tok = harness.user_token(emails["owner"])
    r = harness.call("POST", "/v1/orgs", tok, json={"name": "Acme"})
    assert r.status_code == 201, r.get_json()
    org = r.get_json()
    assert org["role"] == "owner" and org["name"] == "Acme"
    me = harness.call("GET", "/v1/me", tok).get_json()
    assert me["kind"] == "user" and me["email"] == emails["owner"]
    with harness.session() as s:
        assert s.scalar(sa.select(UserOrganization.role).where(UserOrganization.org_id == org["id"])) == "owner"
        audit = s.scalars(sa.select(AuditLog).where(AuditLog.org_id == org["id"])).all()
        assert [a.action for a in audit] == ["org.create"] and audit[0].actor_id == me["id"]


def test_requests_without_a_valid_token_get_401_with_the_error_body(harness) -> None:
    for token in (None, "not-a-jwt", "fbk_unknown"):
        r = harness.call("GET", "/v1/orgs", token)
        assert r.status_code == 401
        assert r.get_json()["error"]["code"] == "unauthenticated"


def test_unknown_paths_and_methods_get_404_and_405_with_the_error_body(harness, emails) -> None:
    tok = harness.user_token(emails["owner"])
    r = harness.call("GET", "/v1/nope", tok)
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
    r = harness.call("PUT", "/v1/orgs", tok)
    assert r.status_code == 405 and r.get_json()["error"]["code"] == "method_not_allowed"
    assert "GET" in r.headers["Allow"]


def test_openapi_document_is_served_as_openapi_3_1(harness) -> None:
    doc = harness.call("GET", "/v1/openapi.json").get_json()
    assert doc["openapi"] == "3.1.0"
    assert "/v1/orgs/{org_id}/backups" in doc["paths"]
