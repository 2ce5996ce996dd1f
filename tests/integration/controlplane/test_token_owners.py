"""The issue's token attacks through the API, on SQLite and PostgreSQL with real Firebase ID tokens:
a demoted and removed admin's old token, and a child token outliving its parent."""

from __future__ import annotations

import sqlalchemy as sa

from firebackup.db.models import AuditLog


def _org(harness, emails) -> tuple[str, str]:
    owner = harness.user_token(emails["owner"])
    r = harness.call("POST", "/v1/orgs", owner, json={"name": "Acme"})
    assert r.status_code == 201, r.get_data()
    return r.get_json()["id"], owner


def test_a_demoted_and_removed_admin_cannot_reinvite_themselves_with_an_old_token(harness, emails) -> None:
    org, owner = _org(harness, emails)
    base = f"/v1/orgs/{org}"
    admin_id = harness.call("POST", base + "/members", owner, json={"email": emails["admin"], "role": "admin"}
                            ).get_json()["user_id"]
    made = harness.call("POST", base + "/tokens", harness.user_token(emails["admin"]),
                        json={"name": "ci", "role": "admin"})
    assert made.status_code == 201 and made.get_json()["created_by"] == admin_id
    old = made.get_json()["token"]

    assert harness.call("PATCH", f"{base}/members/{admin_id}", owner, json={"role": "member"}).status_code == 200
    # Demoted: the token acts as a member now, whatever role it was made with.
    r = harness.call("POST", base + "/members", old, json={"email": emails["outsider"], "role": "viewer"})
    assert r.status_code == 403, r.get_data()
    assert harness.call("DELETE", f"{base}/members/{admin_id}", owner).status_code == 204

    r = harness.call("POST", base + "/members", old, json={"email": emails["admin"], "role": "admin"})
    assert r.status_code == 401, r.get_data()
    message = r.get_json()["error"]["message"]
    assert "revoked" in message and "\n" not in message
    listed = harness.call("GET", base + "/tokens", owner).get_json()["items"]
    assert [(t["id"], t["created_by_email"], t["revoked_at"] is not None) for t in listed] == [
        (made.get_json()["id"], emails["admin"], True)]
    with harness.session() as s:
        assert s.scalar(sa.select(AuditLog.details).where(AuditLog.action == "token.revoke",
                                                          AuditLog.org_id == org))["reason"].startswith("its creator")


def test_a_token_cannot_mint_unless_allowed_and_a_minted_token_dies_with_its_parent(harness, emails) -> None:
    org, owner = _org(harness, emails)
    base = f"/v1/orgs/{org}"
    plain = harness.call("POST", base + "/tokens", owner, json={"name": "ci", "role": "admin"}).get_json()["token"]
    r = harness.call("POST", base + "/tokens", plain, json={"name": "child", "role": "viewer"})
    assert r.status_code == 403, r.get_data()

    parent = harness.call("POST", base + "/tokens", owner,
                          json={"name": "minter", "role": "admin", "can_create_tokens": True}).get_json()
    child = harness.call("POST", base + "/tokens", parent["token"], json={"name": "child", "role": "viewer"})
    assert child.status_code == 201, child.get_data()
    assert child.get_json()["parent_id"] == parent["id"]
    assert harness.call("GET", base, child.get_json()["token"]).status_code == 200

    assert harness.call("DELETE", f"{base}/tokens/{parent['id']}", owner).status_code == 204
    assert harness.call("GET", base, child.get_json()["token"]).status_code == 401
