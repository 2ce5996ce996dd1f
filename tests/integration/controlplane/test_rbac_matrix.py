"""Every route x every role x a member of another organization, with the exact status expected."""

from __future__ import annotations

import json
import secrets
import time

import pytest
import sqlalchemy as sa

from firebackup.api.routes import ROUTES, Route
from firebackup.db.models import AuditLog
from firebackup.services.context import Role

from tests.integration.controlplane.world import SA_KEY, World, build_world

CALLERS = ("owner", "admin", "member", "viewer", "outsider")
EMAILS = {c: f"rbac-{c}-{secrets.token_hex(4)}@example.com" for c in CALLERS}
SUCCESS = {"GET": 200, "DELETE": 204}

# Exceptions to "the route's own success status": the business rule that applies instead.
SPECIAL = {
    ("leave", "owner"): 409,  # the last owner cannot leave
    # The matrix's restore is in overwrite mode: it can overwrite data, which needs admin; a member may
    # dry-run it or restore in skip mode (tests/unit/services/test_jobs.py covers those).
    ("start_restore", "member"): 403,
    ("restore", "member"): 403,  # the point-in-time restore's (POST .../pitr/restore), for the same reason
    # The world's completed backup is a record without objects: a document's history cannot read it.
    **{("document_history", role): 409 for role in ("owner", "admin", "member", "viewer")},
    # The world's project and destination have backups (one in progress): deleting either is refused
    # rather than cascading silently (test_delete_with_backups.py covers ?backups=delete and detach).
    **{(op, role): 409 for op in ("delete_project", "delete_destination") for role in ("owner", "admin")},
}


def _path(route: Route, w: World) -> str:
    values = {
        "org_id": w.org, "user_id": w.users["target"], "project_id": w.project, "destination_id": w.destination,
        "backup_id": w.backup_pending if route.operation_id == "cancel_backup" else w.backup_done,
        "restore_id": w.restore, "schedule_id": w.schedule, "webhook_id": w.webhook, "token_id": w.token,
        "rotation_id": w.rotation,
    }
    path = route.path
    for name in route.params:
        path = path.replace("{" + name + "}", values[name])
    if route.operation_id == "document_history":
        path += "?path=users/u1"
    return "/v1" + path


def _with_pitr(harness, w: World) -> None:
    """The world's project with point-in-time recovery on, as PUT .../pitr turns it on (the pitr routes' subject)."""
    from firebackup.services import pitr
    from firebackup.services.context import Ctx

    with harness.session() as s, s.begin():
        ctx = Ctx(s, harness.app.extensions["firebackup_control_plane"].ports)
        pitr.enable(ctx, w.org, w.project, destination_id=w.destination, retention_days=7, enabled=True,
                    kek=pitr.org_kek(ctx, w.org))


def _body(route: Route, w: World, harness, caller: str):
    tag = secrets.token_hex(3)
    op = route.operation_id
    if "/pitr" in route.path:
        _with_pitr(harness, w)
    if op == "oauth_complete":
        state = harness.sealer.seal(json.dumps({"org": w.org, "actor": w.users.get(caller, "none"),
                                                "exp": int(time.time()) + 600, "nonce": secrets.token_hex(12)}),
                                   "oauth-state")
        return {"state": state, "code": "4/code", "name": "oauth", "gcp_project_id": f"oauth-{tag}"}
    return {
        "create_org": {"name": "New org"},
        "rename_org": {"name": "Renamed"},
        "invite_member": {"email": f"invitee-{tag}@example.com", "role": "viewer"},
        "change_role": {"role": "member"},
        "connect_project": {"name": "p", "gcp_project_id": f"proj-{tag}", "service_account_key": SA_KEY},
        "create_destination": {"name": "d", "kind": "local", "url": f"file://{w.folder}/{tag}"},
        "start_backup": {"project_id": w.project, "destination_id": w.destination},
        "start_restore": {"backup_id": w.backup_done, "target_project_id": w.project},
        "create_schedule": {"name": "s", "project_id": w.project, "destination_id": w.destination,
                            "cron": "0 4 * * *", "timezone": "Europe/Paris", "retention": {"keep_last": 3}},
        "update_schedule": {"enabled": False},
        "create_webhook": {"url": "https://hooks.example.test/y", "events": ["backup.failed"], "secret": "s" * 24},
        "create_token": {"name": "t", "role": "viewer"},
        "set_encryption": {"kms_key_name": "projects/c/locations/global/keyRings/r/cryptoKeys/k"},
        "rotate_encryption": {"kms_key_name": "projects/c/locations/global/keyRings/r/cryptoKeys/k"},
        "configure": {"destination_id": w.destination, "retention_days": 7, "enabled": True},
        "restore": {"at": "2026-06-01T00:00:00Z"},  # after the world's completed backup: its base
    }.get(op)


def expected(route: Route, caller: str) -> int:
    ok = route.status if route.response is not None else 204
    if route.role is None:
        return SPECIAL.get((route.operation_id, caller), ok)
    if caller == "outsider":
        return 404
    if Role[caller] < route.role:
        return 403
    return SPECIAL.get((route.operation_id, caller), ok)


CASES = [pytest.param(r, c, id=f"{r.method} {r.path} as {c}") for r in ROUTES for c in CALLERS]


@pytest.mark.parametrize("route,caller", CASES)
def test_every_route_gives_each_role_exactly_the_expected_status(module_harness, route: Route, caller: str) -> None:
    w = build_world(module_harness, EMAILS)
    body = _body(route, w, module_harness, caller)
    token = module_harness.user_token(EMAILS[caller])
    before = _audit_ids(module_harness, w.users[caller])
    r = module_harness.call(route.method, _path(route, w), token, json=body)
    want = expected(route, caller)
    assert r.status_code == want, f"{route.method} {route.path} as {caller}: {r.status_code} {r.get_data()[:300]!r}"
    if want >= 400:
        assert set(r.get_json()["error"]) == {"code", "message", "details"}
    _check_audit(module_harness, route, caller, w, want, before)


def _audit_ids(harness, actor: str) -> set[str]:
    with harness.session() as s:
        return set(s.scalars(sa.select(AuditLog.id).where(AuditLog.actor_id == actor)))


def _check_audit(harness, route: Route, caller: str, w: World, status: int, before: set[str]) -> None:
    """State changes are audited with the caller as actor; refusals for role or membership are audited as
    denied; reads are not."""
    with harness.session() as s:
        rows = [a for a in s.scalars(sa.select(AuditLog).where(AuditLog.actor_id == w.users[caller]))
                if a.id not in before]
    results = sorted(a.result for a in rows)
    if status == 403 or (caller == "outsider" and status == 404 and "{org_id}" in route.path):
        # Refused for role, or for not being a member: recorded in the organization's own log.
        assert results == ["denied"]
    elif route.method == "GET" or status >= 400:
        assert results == []
    else:
        assert results in (["success"], ["failure"]) and rows[0].action != "", rows


def test_the_matrix_covers_every_route_in_the_table() -> None:
    covered = {(c.values[0].method, c.values[0].path) for c in CASES}
    assert covered == {(r.method, r.path) for r in ROUTES} and len(CASES) == len(ROUTES) * len(CALLERS)


def test_expected_statuses_follow_the_role_order() -> None:
    delete_org = next(r for r in ROUTES if r.operation_id == "delete_org")
    assert [expected(delete_org, c) for c in CALLERS] == [204, 403, 403, 403, 404]
    start = next(r for r in ROUTES if r.operation_id == "start_backup")
    assert [expected(start, c) for c in CALLERS] == [202, 202, 202, 403, 404]
