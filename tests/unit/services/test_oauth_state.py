"""An OAuth state completes one connection: replaying it (a leaked callback URL) is refused."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from firebackup.db.models import OAuthStateUse, Project, utcnow
from firebackup.services import resources
from firebackup.services.commands import CompleteOAuth
from firebackup.services.context import Role
from firebackup.services.errors import Conflict, Invalid


def _complete(state: str, gcp: str) -> CompleteOAuth:
    return CompleteOAuth(state=state, code="4/code", name="oauth", gcp_project_id=gcp)


def test_a_completed_state_cannot_complete_a_second_connection(world) -> None:
    org = world.org()
    admin = world.ctx_as(org.users[Role.admin], org.id, Role.admin)
    state = resources.oauth_start(admin, org.id)["state"]
    resources.oauth_complete(admin, org.id, _complete(state, "first-project"))
    with pytest.raises(Conflict, match="^this OAuth state was already used; start the connection again$"):
        resources.oauth_complete(admin, org.id, _complete(state, "second-project"))
    assert world.session.scalars(sa.select(Project.gcp_project_id).where(Project.auth_kind == "oauth")).all() == [
        "first-project"]


def test_two_states_from_two_starts_each_complete_once(world) -> None:
    org = world.org()
    admin = world.ctx_as(org.users[Role.admin], org.id, Role.admin)
    for gcp in ("first-project", "second-project"):
        resources.oauth_complete(admin, org.id, _complete(resources.oauth_start(admin, org.id)["state"], gcp))
    assert world.session.scalar(sa.select(sa.func.count()).select_from(OAuthStateUse)) == 2


def test_a_state_without_a_nonce_is_refused(world) -> None:
    org = world.org()
    admin = world.ctx_as(org.users[Role.admin], org.id, Role.admin)
    old = world.ports.sealer.seal(json.dumps({"org": org.id, "actor": admin.actor_id, "exp": int(time.time()) + 60}),
                                  "oauth-state")
    with pytest.raises(Invalid, match="older version"):
        resources.oauth_complete(admin, org.id, _complete(old, "first-project"))


def test_used_states_past_their_expiry_are_dropped_when_another_is_recorded(world) -> None:
    org = world.org()
    admin = world.ctx_as(org.users[Role.admin], org.id, Role.admin)
    world.session.add(OAuthStateUse(nonce="stale", expires_at=utcnow() - timedelta(minutes=1)))
    world.session.flush()
    resources.oauth_complete(admin, org.id, _complete(resources.oauth_start(admin, org.id)["state"], "first-project"))
    assert "stale" not in world.session.scalars(sa.select(OAuthStateUse.nonce)).all()
