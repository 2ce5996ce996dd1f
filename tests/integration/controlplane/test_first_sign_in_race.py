"""Two first requests of one new Firebase account at the same instant, on SQLite and PostgreSQL: one user row,
both requests authenticated as it (a unique-key failure here would answer 500 to one of them)."""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa

from firebackup.bootstrap import ports
from firebackup.db.models import User
from firebackup.db.session import make_session_factory
from firebackup.services.context import Ctx
from firebackup.services.identity import authenticate
from firebackup.services.ports import IdTokenVerifier
from firebackup.settings import Settings

ROUNDS = 8


class SlowVerifier(IdTokenVerifier):
    """Every token is valid for one uid; both callers are held until both have verified, to overlap them."""

    def __init__(self, uid: str, barrier: threading.Barrier) -> None:
        self.uid, self.barrier = uid, barrier

    def verify(self, token: str) -> dict[str, Any]:
        self.barrier.wait(30)
        return {"uid": self.uid, "email": f"{self.uid}@example.com", "email_verified": True}


def test_two_first_requests_of_one_new_account_make_one_user_and_both_succeed(engine) -> None:
    factory = make_session_factory(engine)
    for n in range(ROUNDS):
        uid, barrier, got = f"fb-race-{n}", threading.Barrier(2), []
        built = ports(Settings(master_key=b"k" * 32), verifier=SlowVerifier(uid, barrier))

        def sign_in() -> None:
            with factory() as session, session.begin():
                got.append(authenticate(Ctx(session, built), "Bearer any").user_id)

        threads = [threading.Thread(target=sign_in) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(got) == 2 and got[0] == got[1], got
        with factory() as s:
            assert s.scalar(sa.select(sa.func.count()).select_from(User).where(User.firebase_uid == uid)) == 1
