"""Who calls, from where, how often: request limits per address and per token, the client address behind
a trusted proxy (never a spoofed X-Forwarded-For entry), and refused attempts on an organization recorded,
throttled, in that organization's own audit log. The API over a real SQLite database."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from firebackup.bootstrap import api_app
from firebackup.db.models import AuditLog, Organization, new_id
from firebackup.db.session import make_engine
from firebackup.errors import UsageError
from firebackup.settings import Settings
from tests.integration.controlplane.world import seed_token


class Api:
    def __init__(self, tmp: Path, **settings: Any) -> None:
        self.engine = make_engine(f"sqlite:///{tmp / 'api.db'}")
        defaults: dict[str, Any] = dict(queue="recording", rate_limit_per_address="", rate_limit_per_token="")
        self.app = api_app(Settings(master_key=os.urandom(32), **{**defaults, **settings}), engine=self.engine)
        self.client = self.app.test_client()

    def org(self, name: str = "Acme") -> tuple[str, str]:
        with sa.orm.Session(self.engine) as s, s.begin():
            org = Organization(id=new_id("org"), name=name)
            s.add(org)
            s.flush()
            token = seed_token(s, org.id)
            return org.id, token

    def get(self, path: str, token: str | None = None, *, address: str = "198.51.100.7",
            forwarded: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if forwarded:
            headers["X-Forwarded-For"] = forwarded
        return self.client.get(path, headers=headers, environ_base={"REMOTE_ADDR": address})

    def denied(self, org_id: str) -> list[AuditLog]:
        with sa.orm.Session(self.engine) as s:
            return list(s.scalars(sa.select(AuditLog).where(AuditLog.org_id == org_id,
                                                            AuditLog.action == "access.denied")))


def test_an_address_over_its_limit_gets_429_with_a_json_error_and_others_are_not_affected(tmp_path) -> None:
    api = Api(tmp_path, rate_limit_per_address="3/minute")
    org, token = api.org()
    assert [api.get(f"/v1/orgs/{org}", token).status_code for _ in range(3)] == [200, 200, 200]
    r = api.get(f"/v1/orgs/{org}", token)
    assert r.status_code == 429 and r.get_json()["error"]["code"] == "rate_limited" and r.headers.get("Retry-After")
    assert api.get(f"/v1/orgs/{org}", token, address="198.51.100.8").status_code == 200


def test_a_token_over_its_limit_gets_429_from_every_address(tmp_path) -> None:
    api = Api(tmp_path, rate_limit_per_token="2/minute")
    org, token = api.org()
    other_org, other = api.org("Other")
    assert api.get(f"/v1/orgs/{org}", token, address="198.51.100.1").status_code == 200
    assert api.get(f"/v1/orgs/{org}", token, address="198.51.100.2").status_code == 200
    assert api.get(f"/v1/orgs/{org}", token, address="198.51.100.3").status_code == 429
    assert api.get(f"/v1/orgs/{other_org}", other, address="198.51.100.3").status_code == 200


def test_a_malformed_limit_is_refused_at_start_up_in_one_line(tmp_path) -> None:
    with pytest.raises(UsageError, match="FIREBACKUP_RATE_LIMIT_PER_TOKEN='lots' is not a rate limit"):
        Api(tmp_path, rate_limit_per_token="lots")


@pytest.mark.parametrize("hops,expected", [(1, "203.0.113.9"), (0, "198.51.100.7")])
def test_the_audit_address_is_what_the_trusted_proxy_saw_never_an_entry_the_client_wrote(tmp_path, hops,
                                                                                        expected) -> None:
    api = Api(tmp_path, trusted_proxy_hops=hops)
    org, _ = api.org()
    # The client claims 6.6.6.6; the front end appended the address it really saw, 203.0.113.9.
    assert api.get(f"/v1/orgs/{org}", forwarded="6.6.6.6, 203.0.113.9").status_code == 401
    assert [row.ip for row in api.denied(org)] == [expected]


def test_unauthenticated_and_cross_tenant_attempts_are_audited_in_the_target_org_once_a_minute(tmp_path) -> None:
    api = Api(tmp_path)
    victim, _ = api.org("Victim")
    intruder_org, intruder = api.org("Intruder")
    for _ in range(20):  # a flood of attempts writes one row per caller, address and reason
        assert api.get(f"/v1/orgs/{victim}/backups").status_code == 401
        assert api.get(f"/v1/orgs/{victim}/backups", intruder).status_code == 404
    rows = sorted(api.denied(victim), key=lambda r: r.details["reason"])
    assert [(r.details["reason"], r.actor_type, r.result) for r in rows] == [
        ("not a member", "token", "denied"), ("unauthenticated", "anonymous", "denied")]
    assert rows[0].actor_id is not None and rows[0].details["route"] == "/orgs/{org_id}/backups"
    assert api.denied(intruder_org) == []
    # An organization that does not exist gets no rows (nobody to tell), and no error either.
    assert api.get("/v1/orgs/org_0000000000000000000000/backups").status_code == 401
