"""Organizations, members and API tokens: the rules about owners and about who may grant what."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from firebackup.db.models import ApiToken, UserOrganization
from firebackup.services import orgs
from firebackup.services.commands import ChangeRole, CreateOrg, CreateToken, InviteMember, PageRequest
from firebackup.services.context import Role
from firebackup.services.errors import Conflict, Invalid, NotFound, PermissionDenied
from firebackup.services.identity import hash_token


def _as(world, org, role: Role, minimum: Role = Role.admin):
    return world.ctx_as(org.users[role], org.id, minimum)


def test_whoever_creates_an_organization_is_its_only_owner(world) -> None:
    me = world.user("founder@example.com")
    out = orgs.create_org(world.ctx_as(me), CreateOrg("Founders"))
    assert out["role"] == "owner"
    members = world.session.scalars(sa.select(UserOrganization).where(UserOrganization.org_id == out["id"])).all()
    assert [(m.user_id, m.role) for m in members] == [(me, "owner")]


def test_the_last_owner_cannot_be_demoted_removed_or_leave(world) -> None:
    org = world.org()
    owner, me = _as(world, org, Role.owner), org.users[Role.owner]
    with pytest.raises(Conflict):
        orgs.change_role(owner, org.id, me, ChangeRole(Role.admin))
    with pytest.raises(Conflict):
        orgs.remove_member(owner, org.id, me)
    with pytest.raises(Conflict):
        orgs.leave(_as(world, org, Role.owner, Role.viewer), org.id)
    orgs.change_role(owner, org.id, org.users[Role.admin], ChangeRole(Role.owner))
    orgs.leave(_as(world, org, Role.owner, Role.viewer), org.id)
    world.session.flush()
    assert world.session.get(UserOrganization, (me, org.id)) is None


def test_only_an_owner_grants_or_takes_away_owner(world) -> None:
    org = world.org()
    admin = _as(world, org, Role.admin)
    with pytest.raises(PermissionDenied):
        orgs.invite_member(admin, org.id, InviteMember("new@example.com", Role.owner))
    with pytest.raises(PermissionDenied):
        orgs.change_role(admin, org.id, org.users[Role.member], ChangeRole(Role.owner))
    with pytest.raises(PermissionDenied):
        orgs.change_role(admin, org.id, org.users[Role.owner], ChangeRole(Role.viewer))
    with pytest.raises(PermissionDenied):
        orgs.remove_member(admin, org.id, org.users[Role.owner])
    assert orgs.change_role(admin, org.id, org.users[Role.viewer], ChangeRole(Role.member))["role"] == "member"


def test_inviting_a_member_twice_is_a_conflict_and_addresses_are_compared_lower_cased(world) -> None:
    org = world.org()
    admin = _as(world, org, Role.admin)
    out = orgs.invite_member(admin, org.id, InviteMember("Grace@Example.com", Role.viewer))
    assert (out["email"], out["role"]) == ("grace@example.com", "viewer")
    with pytest.raises(Conflict):
        orgs.invite_member(admin, org.id, InviteMember("grace@example.COM", Role.member))
    with pytest.raises(Invalid):
        orgs.invite_member(admin, org.id, InviteMember("a" * 320 + "@x.io", Role.member))


def test_a_member_of_another_organization_is_not_found_here(world) -> None:
    mine, theirs = world.org("Mine"), world.org("Theirs")
    owner = _as(world, mine, Role.owner)
    with pytest.raises(NotFound):
        orgs.change_role(owner, mine.id, theirs.users[Role.viewer], ChangeRole(Role.member))
    with pytest.raises(NotFound):
        orgs.remove_member(owner, mine.id, theirs.users[Role.viewer])


def test_a_token_cannot_have_more_than_its_creators_role(world) -> None:
    org = world.org()
    admin = _as(world, org, Role.admin)
    with pytest.raises(PermissionDenied):
        orgs.create_token(admin, org.id, CreateToken("ci", Role.owner))
    assert orgs.create_token(admin, org.id, CreateToken("ci", Role.admin))["role"] == "admin"


def test_a_new_token_is_returned_once_and_only_its_hash_is_stored(world) -> None:
    org = world.org()
    out = orgs.create_token(_as(world, org, Role.owner), org.id, CreateToken("ci", Role.member))
    assert out["token"].startswith("fbk_") and "token_hash" not in out
    row = world.session.get(ApiToken, out["id"])
    assert row.token_hash == hash_token(out["token"]) and out["token"] not in (row.prefix, row.token_hash)
    listed, _ = orgs.list_tokens(_as(world, org, Role.owner), org.id, PageRequest())
    assert [t["id"] for t in listed] == [out["id"]] and "token_hash" not in listed[0]


def test_revoking_another_organizations_token_is_not_found(world) -> None:
    mine, theirs = world.org("Mine"), world.org("Theirs")
    tok = orgs.create_token(_as(world, theirs, Role.owner), theirs.id, CreateToken("ci", Role.viewer))
    with pytest.raises(NotFound):
        orgs.revoke_token(_as(world, mine, Role.owner), mine.id, tok["id"])
    assert world.session.get(ApiToken, tok["id"]).revoked_at is None


def test_members_page_by_user_id_without_gaps_or_repeats(world) -> None:
    org = world.org()
    viewer = _as(world, org, Role.viewer, Role.viewer)
    seen, cursor = [], None
    while True:
        items, cursor = orgs.list_members(viewer, org.id, PageRequest(limit=3, cursor=cursor))
        seen += [m["user_id"] for m in items]
        if cursor is None:
            break
    assert seen == sorted(org.users.values())
