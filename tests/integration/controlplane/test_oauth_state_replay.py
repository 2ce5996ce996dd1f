"""A replayed OAuth callback through the API, on SQLite and PostgreSQL: the second completion is refused."""

from __future__ import annotations

from firebackup.db.models import Organization, new_id
from tests.integration.controlplane.world import seed_token


def test_completing_the_same_oauth_state_twice_is_a_conflict(api) -> None:
    with api.session() as s, s.begin():
        org = Organization(id=new_id("org"), name="Acme")
        s.add(org)
        s.flush()
        org_id, admin = org.id, seed_token(s, org.id, "admin")
    base = f"/v1/orgs/{org_id}/projects/oauth"
    state = api.call("POST", base + "/start", admin).get_json()["state"]
    body = {"state": state, "code": "4/code", "name": "oauth", "gcp_project_id": "acme-first"}
    assert api.call("POST", base + "/complete", admin, json=body).status_code == 201
    again = api.call("POST", base + "/complete", admin, json={**body, "gcp_project_id": "acme-second"})
    assert again.status_code == 409
    assert again.get_json()["error"]["message"] == "this OAuth state was already used; start the connection again"
