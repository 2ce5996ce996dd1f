"""Whether the Auth emulator's unverified e-mail addresses are trusted is a setting, never the environment."""

from __future__ import annotations

import os
from typing import Any


def _invite_then_sign_in(h: Any, emails: dict[str, str]) -> tuple[str, dict[str, Any], list[str], str]:
    """The owner invites an address; its holder signs in through the emulator (email_verified false)."""
    assert os.environ.get("FIREBASE_AUTH_EMULATOR_HOST")  # the emulator's variable is set either way
    owner = h.user_token(emails["owner"])
    org = h.call("POST", "/v1/orgs", owner, json={"name": "Team"}).get_json()["id"]
    r = h.call("POST", f"/v1/orgs/{org}/members", owner, json={"email": emails["admin"], "role": "admin"})
    assert r.status_code == 201
    invitee = h.user_token(emails["admin"])
    me = h.call("GET", "/v1/me", invitee).get_json()
    orgs = [o["id"] for o in h.call("GET", "/v1/orgs", invitee).get_json()["items"]]
    return org, me, orgs, invitee


def test_with_the_setting_off_an_unverified_emulator_address_does_not_get_the_invitation(
        untrusting_harness: Any, emails: dict[str, str]) -> None:
    org, me, orgs, invitee = _invite_then_sign_in(untrusting_harness, emails)
    assert me["email"] is None and orgs == []
    assert untrusting_harness.call("GET", f"/v1/orgs/{org}", invitee).status_code == 404


def test_with_the_setting_on_an_unverified_emulator_address_gets_the_invitation(
        harness: Any, emails: dict[str, str]) -> None:
    org, me, orgs, _ = _invite_then_sign_in(harness, emails)
    assert me["email"] == emails["admin"] and orgs == [org]
