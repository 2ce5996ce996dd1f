"""Who is calling and what they may do: bearer tokens, first sign-in, and the one authorization check."""

from __future__ import annotations

from dataclasses import replace

import pytest
import sqlalchemy as sa

from firebackup.db.models import ApiToken, AuditLog, User, utcnow
from firebackup.services.context import Ctx, Principal, Role
from firebackup.services.errors import NotFound, PermissionDenied, Unauthenticated
from firebackup.services.identity import authenticate, authorize, require_user
from firebackup.settings import Settings


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "Bearer  ", "Bearer " + "x" * 9000])
def test_a_missing_or_malformed_bearer_header_is_unauthenticated(world, header) -> None:
    with pytest.raises(Unauthenticated):
        authenticate(world.system(), header)


def test_an_unknown_or_revoked_api_token_is_unauthenticated(world) -> None:
    org = world.org()
    tok = world.token(org.id, Role.admin)
    assert authenticate(world.system(), f"Bearer {tok}").token_role is Role.admin
    world.session.scalar(sa.select(ApiToken)).revoked_at = utcnow()
    for bearer in (tok, tok[:-1] + "A"):
        with pytest.raises(Unauthenticated):
            authenticate(world.system(), f"Bearer {bearer}")


def test_an_id_token_the_verifier_refuses_is_unauthenticated(world) -> None:
    with pytest.raises(Unauthenticated):
        authenticate(world.system(), "Bearer eyJ.not-one-we-know.sig")


def test_a_non_member_gets_not_found_so_organization_ids_do_not_leak(world) -> None:
    org = world.org()
    stranger = world.user("stranger@example.com")
    ctx = world.ctx_as(stranger)
    with pytest.raises(NotFound):
        authorize(ctx, org.id, Role.viewer)


@pytest.mark.parametrize("have", list(Role))
@pytest.mark.parametrize("need", list(Role))
def test_a_member_below_the_minimum_role_gets_permission_denied(world, have: Role, need: Role) -> None:
    org = world.org()
    ctx = world.ctx_as(org.users[have])
    if have >= need:
        assert authorize(ctx, org.id, need) is have
        assert (ctx.org_id, ctx.role) == (org.id, have)
    else:
        with pytest.raises(PermissionDenied):
            authorize(ctx, org.id, need)


def test_an_api_token_acts_only_in_its_own_organization_with_its_own_role(world) -> None:
    mine, theirs = world.org("Mine"), world.org("Theirs")
    p = authenticate(world.system(), f"Bearer {world.token(mine.id, Role.member)}")
    ctx = Ctx(world.session, world.ports, p)
    assert authorize(ctx, mine.id, Role.member) is Role.member
    with pytest.raises(PermissionDenied):
        authorize(ctx, mine.id, Role.admin)
    with pytest.raises(NotFound):
        authorize(ctx, theirs.id, Role.viewer)
    with pytest.raises(PermissionDenied):
        require_user(ctx)  # tokens cannot do what only a person may (create an org, leave one)


def _invite(world, email: str) -> str:
    """A pending invitation: a user row with the address and no Firebase uid yet."""
    return world.user(email)


def test_a_verified_address_links_the_first_sign_in_to_its_invitation(world, verifier) -> None:
    invited = _invite(world, "ada@example.com")
    verifier.claims["t"] = {"uid": "fb-ada", "email": "Ada@Example.com", "email_verified": True}
    p = authenticate(world.system(), "Bearer t")
    assert p.user_id == invited
    assert world.session.get(User, invited).firebase_uid == "fb-ada"


def test_an_unverified_address_is_not_linked_to_an_invitation_by_default(world, verifier) -> None:
    invited = _invite(world, "ada@example.com")
    verifier.claims["t"] = {"uid": "fb-mallory", "email": "ada@example.com", "email_verified": False}
    p = authenticate(world.system(), "Bearer t")
    assert p.user_id != invited
    assert world.session.get(User, p.user_id).email is None
    assert world.session.get(User, invited).firebase_uid is None


def test_an_unverified_emulator_address_is_trusted_only_when_the_settings_say_so(world, verifier) -> None:
    invited = _invite(world, "ada@example.com")
    world.ports = replace(world.ports, settings=replace(world.ports.settings, trust_emulator_tokens=True))
    verifier.claims["t"] = {"uid": "fb-ada", "email": "ada@example.com", "email_verified": False}
    assert authenticate(world.system(), "Bearer t").user_id == invited


def test_a_second_sign_in_finds_the_same_user(world, verifier) -> None:
    verifier.claims["t"] = {"sub": "fb-1", "email": "one@example.com", "email_verified": True, "name": "One"}
    first = authenticate(world.system(), "Bearer t").user_id
    assert authenticate(world.system(), "Bearer t").user_id == first
    assert world.session.scalar(sa.select(sa.func.count()).select_from(User).where(User.firebase_uid == "fb-1")) == 1


def test_a_second_account_with_an_address_another_account_holds_gets_a_user_of_its_own(world, verifier) -> None:
    verifier.claims["first"] = {"uid": "fb-1", "email": "ada@example.com", "email_verified": True}
    verifier.claims["second"] = {"uid": "fb-2", "email": "Ada@example.com", "email_verified": True}
    first = authenticate(world.system(), "Bearer first").user_id
    second = authenticate(world.system(), "Bearer second").user_id
    assert second != first
    assert authenticate(world.system(), "Bearer second").user_id == second  # and every later call works too
    assert world.session.get(User, first).email == "ada@example.com"
    assert world.session.get(User, second).email is None  # the address and its invitations stay with the first


def test_claims_without_a_subject_are_unauthenticated(world, verifier) -> None:
    verifier.claims["t"] = {"email": "one@example.com", "email_verified": True}
    with pytest.raises(Unauthenticated):
        authenticate(world.system(), "Bearer t")


def test_the_system_caller_audits_as_system_and_a_user_as_themselves(world) -> None:
    org = world.org()
    world.system().audit("x.system", org_id=org.id)
    Ctx(world.session, world.ports, Principal("user", user_id=org.users[Role.viewer])).audit("x.user", org_id=org.id)
    world.session.flush()
    rows = {a.action: (a.actor_type, a.actor_id) for a in world.session.scalars(sa.select(AuditLog))}
    assert rows["x.system"] == ("system", None)
    assert rows["x.user"] == ("user", org.users[Role.viewer])


@pytest.mark.parametrize("env,trusted", [
    ({}, False),
    ({"FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099"}, False),
    ({"FIREBACKUP_TRUST_EMULATOR_TOKENS": "0"}, False),
    ({"FIREBACKUP_TRUST_EMULATOR_TOKENS": "1"}, True),
    ({"FIREBACKUP_TRUST_EMULATOR_TOKENS": "Yes"}, True),
])
def test_trusting_emulator_addresses_is_read_from_its_own_setting_not_from_the_emulators_variable(
        env: dict[str, str], trusted: bool) -> None:
    assert Settings.from_env(env).trust_emulator_tokens is trusted
