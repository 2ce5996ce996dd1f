"""The last owner cannot be lost to a race: two owners demoting (or removing) each other at the same
instant, each in its own transaction, on SQLite and on PostgreSQL, leave exactly one owner."""

from __future__ import annotations

import threading
from typing import Any, Callable

import pytest
import sqlalchemy as sa

from firebackup.db.models import Organization, User, UserOrganization, new_id
from firebackup.db.session import make_session_factory
from firebackup.services import orgs
from firebackup.services.commands import ChangeRole
from firebackup.services.context import Ctx, Principal, Role
from firebackup.services.errors import Conflict
from firebackup.settings import Settings
from firebackup.bootstrap import ports

ROUNDS = 6


def _org_with_two_owners(factory: Any) -> tuple[str, str, str]:
    with factory.begin() as s:
        org, a, b = Organization(id=new_id("org"), name="Acme"), User(id=new_id("usr")), User(id=new_id("usr"))
        s.add_all([org, a, b])
        s.flush()
        s.add_all([UserOrganization(user_id=a.id, org_id=org.id, role="owner"),
                   UserOrganization(user_id=b.id, org_id=org.id, role="owner")])
        return org.id, a.id, b.id


def _as(factory: Any, user_id: str, org_id: str, act: Callable[[Ctx], Any]) -> Any:
    with factory() as session, session.begin():
        ctx = Ctx(session, ports(Settings(master_key=b"k" * 32)), principal=Principal("user", user_id))
        ctx.org_id, ctx.role = org_id, Role.owner
        return act(ctx)


def _race(factory: Any, org_id: str, acts: list[tuple[str, Callable[[Ctx], Any]]]) -> list[str]:
    """Run each act in its own thread and transaction, released together; 'ok' or 'conflict' each."""
    start, outcomes = threading.Barrier(len(acts)), [""] * len(acts)

    def run(i: int, user_id: str, act: Callable[[Ctx], Any]) -> None:
        start.wait()
        try:
            _as(factory, user_id, org_id, act)
            outcomes[i] = "ok"
        except Conflict:
            outcomes[i] = "conflict"

    threads = [threading.Thread(target=run, args=(i, u, a)) for i, (u, a) in enumerate(acts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def _owners(factory: Any, org_id: str) -> int:
    with factory() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(UserOrganization).where(
            UserOrganization.org_id == org_id, UserOrganization.role == "owner")) or 0


@pytest.mark.parametrize("how", ["demote", "remove"])
def test_two_owners_demoting_or_removing_each_other_at_once_leave_exactly_one_owner(engine, how) -> None:
    factory = make_session_factory(engine)
    for _ in range(ROUNDS):
        org_id, a, b = _org_with_two_owners(factory)

        def against(target: str) -> Callable[[Ctx], Any]:
            if how == "demote":
                return lambda ctx: orgs.change_role(ctx, org_id, target, ChangeRole(Role.admin))
            return lambda ctx: orgs.remove_member(ctx, org_id, target)

        outcomes = _race(factory, org_id, [(a, against(b)), (b, against(a))])
        assert sorted(outcomes) == ["conflict", "ok"], outcomes
        assert _owners(factory, org_id) == 1


def test_the_last_two_owners_leaving_at_once_leave_one_owner(engine) -> None:
    factory = make_session_factory(engine)
    for _ in range(ROUNDS):
        org_id, a, b = _org_with_two_owners(factory)
        outcomes = _race(factory, org_id, [(a, lambda ctx: orgs.leave(ctx, org_id)),
                                           (b, lambda ctx: orgs.leave(ctx, org_id))])
        assert sorted(outcomes) == ["conflict", "ok"], outcomes
        assert _owners(factory, org_id) == 1
