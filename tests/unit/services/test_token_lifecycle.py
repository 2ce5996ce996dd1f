"""API tokens act for the member who made them: capped at that member's role now, gone with their
membership, expiring, and minting tokens only when a signed-in member allowed it."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa

from firebackup.db.models import ApiToken, AuditLog, utcnow
from firebackup.services import orgs
from firebackup.services.commands import ChangeRole, CreateToken
from firebackup.services.context import Ctx, Role
from firebackup.services.errors import Invalid, PermissionDenied, Unauthenticated
from firebackup.services.identity import authenticate, authorize


def _as_token(world, org_id: str, token: str, minimum: Role = Role.viewer) -> Ctx:
    ctx = Ctx(world.session, world.ports, authenticate(world.system(), f"Bearer {token}"))
    authorize(ctx, org_id, minimum)
    return ctx


def _token_of(world, org, role: Role, **kw) -> dict:
    """A token made through the service by the org's member of `role`."""
    ctx = world.ctx_as(org.users[role], org.id, Role.admin if role >= Role.admin else Role.viewer)
    return orgs.create_token(ctx, org.id, CreateToken("ci", kw.pop("token_role", role), **kw))


def test_a_token_names_its_creator_and_expires_after_the_default_lifetime(world) -> None:
    org = world.org()
    out = _token_of(world, org, Role.admin)
    assert out["created_by"] == org.users[Role.admin] and out["created_by_email"].startswith("admin-")
    lifetime = out["expires_at"] - utcnow()
    assert timedelta(days=89) < lifetime <= timedelta(days=world.ports.settings.api_token_days)
    assert out["can_create_tokens"] is False and out["parent_id"] is None


def test_a_demoted_admins_token_acts_as_their_new_role_on_the_next_request(world) -> None:
    org = world.org()
    tok = _token_of(world, org, Role.admin)["token"]
    assert _as_token(world, org.id, tok).role is Role.admin
    orgs.change_role(world.ctx_as(org.users[Role.owner], org.id, Role.admin), org.id, org.users[Role.admin],
                     ChangeRole(Role.viewer))
    ctx = _as_token(world, org.id, tok)
    assert ctx.role is Role.viewer
    with pytest.raises(PermissionDenied):
        authorize(ctx, org.id, Role.admin)


def test_a_removed_members_tokens_are_revoked_and_refused(world) -> None:
    org = world.org()
    tok = _token_of(world, org, Role.admin)
    orgs.remove_member(world.ctx_as(org.users[Role.owner], org.id, Role.admin), org.id, org.users[Role.admin])
    assert world.session.get(ApiToken, tok["id"]).revoked_at is not None
    audited = world.session.scalars(sa.select(AuditLog).where(AuditLog.action == "token.revoke")).all()
    assert [(a.resource_id, a.details["reason"]) for a in audited] == [
        (tok["id"], "its creator was removed from the organization")]
    with pytest.raises(Unauthenticated, match="revoked"):
        authenticate(world.system(), f"Bearer {tok['token']}")


def test_a_token_whose_creator_is_gone_is_refused_even_when_not_revoked(world) -> None:
    org = world.org()
    tok = _token_of(world, org, Role.admin)
    orgs.remove_member(world.ctx_as(org.users[Role.owner], org.id, Role.admin), org.id, org.users[Role.admin])
    world.session.get(ApiToken, tok["id"]).revoked_at = None  # as a row revoked by nothing (an older version)
    with pytest.raises(Unauthenticated, match="no longer a member"):
        authenticate(world.system(), f"Bearer {tok['token']}")


def test_a_member_who_leaves_takes_their_tokens_with_them(world) -> None:
    org = world.org()
    tok = _token_of(world, org, Role.member, token_role=Role.member)
    orgs.leave(world.ctx_as(org.users[Role.member], org.id), org.id)
    with pytest.raises(Unauthenticated, match="revoked"):
        authenticate(world.system(), f"Bearer {tok['token']}")


def test_an_expired_token_is_refused_with_one_line_saying_when(world) -> None:
    org = world.org()
    tok = _token_of(world, org, Role.admin, expires_in_days=1)
    world.session.get(ApiToken, tok["id"]).expires_at = utcnow() - timedelta(seconds=1)
    with pytest.raises(Unauthenticated, match=r"^API token expired at .* UTC; create a new one$"):
        authenticate(world.system(), f"Bearer {tok['token']}")


@pytest.mark.parametrize("days", [0, 366])
def test_a_lifetime_outside_the_settings_range_is_invalid(world, days: int) -> None:
    org = world.org()
    with pytest.raises(Invalid, match="between 1 and 365"):
        _token_of(world, org, Role.admin, expires_in_days=days)


def test_a_token_cannot_mint_tokens_by_default(world) -> None:
    org = world.org()
    ctx = _as_token(world, org.id, _token_of(world, org, Role.admin)["token"], Role.admin)
    with pytest.raises(PermissionDenied, match="cannot create tokens"):
        orgs.create_token(ctx, org.id, CreateToken("child", Role.viewer))


def test_a_token_allowed_to_mint_cannot_pass_the_permission_on(world) -> None:
    org = world.org()
    parent = _token_of(world, org, Role.admin, can_create_tokens=True)
    ctx = _as_token(world, org.id, parent["token"], Role.admin)
    with pytest.raises(PermissionDenied, match="signed-in member"):
        orgs.create_token(ctx, org.id, CreateToken("child", Role.viewer, can_create_tokens=True))


def test_a_child_token_acts_for_the_same_member_expires_with_its_parent_and_dies_with_it(world) -> None:
    org = world.org()
    parent = _token_of(world, org, Role.admin, can_create_tokens=True, expires_in_days=2)
    child = orgs.create_token(_as_token(world, org.id, parent["token"], Role.admin), org.id,
                              CreateToken("child", Role.member, expires_in_days=30))
    assert (child["parent_id"], child["created_by"]) == (parent["id"], org.users[Role.admin])
    assert child["expires_at"] == parent["expires_at"]
    assert _as_token(world, org.id, child["token"]).role is Role.member
    orgs.revoke_token(world.ctx_as(org.users[Role.owner], org.id, Role.admin), org.id, parent["id"])
    assert world.session.get(ApiToken, child["id"]).revoked_at is not None
    with pytest.raises(Unauthenticated, match="revoked"):
        authenticate(world.system(), f"Bearer {child['token']}")


def test_a_child_of_a_revoked_parent_is_refused_even_when_its_own_row_is_not_revoked(world) -> None:
    org = world.org()
    parent = _token_of(world, org, Role.admin, can_create_tokens=True)
    child = orgs.create_token(_as_token(world, org.id, parent["token"], Role.admin), org.id,
                              CreateToken("child", Role.member))
    world.session.get(ApiToken, parent["id"]).revoked_at = utcnow()  # revoked by an older version: no cascade
    with pytest.raises(Unauthenticated, match="the API token that created this one was revoked"):
        authenticate(world.system(), f"Bearer {child['token']}")


def test_a_token_never_has_more_than_its_creators_current_role_whatever_its_row_says(world) -> None:
    org = world.org()
    tok = _token_of(world, org, Role.admin)
    world.session.get(ApiToken, tok["id"]).role = "owner"  # a row edited by hand, or granted by older rules
    assert _as_token(world, org.id, tok["token"]).role is Role.admin


def test_default_lifetime_comes_from_the_settings(world) -> None:
    org = world.org()
    world.ports.settings = replace(world.ports.settings, api_token_days=7)
    lifetime = _token_of(world, org, Role.admin)["expires_at"] - utcnow()
    assert timedelta(days=6) < lifetime <= timedelta(days=7)
