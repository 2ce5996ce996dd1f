"""A user who is disabled, or signed out everywhere, loses access once the ID token cache time has passed.

Real ID tokens from the Auth emulator, the account changed through the emulator's admin REST API (as the
Firebase console or the Admin SDK would), the API asking Firebase again on every call (cache time 0).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from tests.integration.controlplane.conftest import AUTH_PROJECT, Harness, make_harness


@pytest.fixture
def uncached(engine: sa.Engine, firebase_users: Any, tmp_path: Any) -> Harness:
    """The API with Firebase asked on every call: the cache time set to 0."""
    return make_harness(engine, firebase_users, tmp_path, id_token_cache_seconds=0)


def _claims(id_token: str) -> dict[str, Any]:
    body = id_token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


def _update_account(auth_emulator: Any, fields: dict[str, Any]) -> None:
    host = auth_emulator.env["FIREBASE_AUTH_EMULATOR_HOST"]
    r = requests.post(f"http://{host}/identitytoolkit.googleapis.com/v1/projects/{AUTH_PROJECT}/accounts:update",
                      json=fields, headers={"Authorization": "Bearer owner"}, timeout=30)
    assert r.status_code == 200, r.text


def _signed_in(h: Harness, email: str) -> tuple[str, str]:
    """A user signs in and uses the API: they make an organization and read it back."""
    token = h.user_token(email)
    org = h.call("POST", "/v1/orgs", token, json={"name": "Mine"})
    assert org.status_code == 201
    assert h.call("GET", f"/v1/orgs/{org.get_json()['id']}", token).status_code == 200
    return token, org.get_json()["id"]


def test_a_disabled_user_gets_401_on_their_next_call(uncached: Harness, auth_emulator: Any,
                                                       emails: dict[str, str]) -> None:
    token, org = _signed_in(uncached, emails["owner"])
    _update_account(auth_emulator, {"localId": _claims(token)["user_id"], "disableUser": True})
    for path in ("/v1/me", f"/v1/orgs/{org}"):
        r = uncached.call("GET", path, token)
        assert r.status_code == 401
        assert "revoked or the account is disabled" in r.get_json()["error"]["message"]


def test_a_user_signed_out_everywhere_gets_401_with_the_token_issued_before(uncached: Harness, auth_emulator: Any,
                                                                          emails: dict[str, str]) -> None:
    token, org = _signed_in(uncached, emails["admin"])
    claims = _claims(token)
    # What revoking refresh tokens records: sessions from before this second are void. One second after the
    # token was issued, so the check does not depend on the clock ticking during the test.
    _update_account(auth_emulator, {"localId": claims["user_id"], "validSince": str(claims["iat"] + 1)})
    r = uncached.call("GET", f"/v1/orgs/{org}", token)
    assert r.status_code == 401
    assert "revoked or the account is disabled" in r.get_json()["error"]["message"]


def test_another_user_is_not_affected_by_one_users_revocation(uncached: Harness, auth_emulator: Any,
                                                              emails: dict[str, str]) -> None:
    revoked, _ = _signed_in(uncached, emails["member"])
    kept, org = _signed_in(uncached, emails["viewer"])
    _update_account(auth_emulator, {"localId": _claims(revoked)["user_id"], "disableUser": True})
    assert uncached.call("GET", "/v1/me", revoked).status_code == 401
    assert uncached.call("GET", f"/v1/orgs/{org}", kept).status_code == 200
