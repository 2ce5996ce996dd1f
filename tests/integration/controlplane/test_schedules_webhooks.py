from __future__ import annotations

from datetime import datetime

from firebackup.db.models import Webhook
from tests.integration.controlplane.world import build_world, seed_token

EMAILS = {c: f"sch-{c}@example.com" for c in ("owner", "admin", "member", "viewer", "outsider")}


def _admin(api, org: str) -> str:
    with api.session() as s, s.begin():
        return seed_token(s, org, "admin")


def test_a_schedule_validates_cron_and_time_zone_and_reports_its_next_run(api) -> None:
    w = build_world(api, EMAILS)
    tok = _admin(api, w.org)
    base = f"/v1/orgs/{w.org}/schedules"
    body = {"name": "nightly", "project_id": w.project, "destination_id": w.destination, "cron": "30 2 * * mon-fri",
            "timezone": "America/New_York", "retention": {"keep_last": 14, "keep_weekly": 8, "keep_within": "30d"}}
    r = api.call("POST", base, tok, json=body)
    assert r.status_code == 201, r.get_json()
    sch = r.get_json()
    assert {k: v for k, v in sch["retention"].items() if v is not None} == {"keep_last": 14, "keep_weekly": 8,
                                                                           "keep_within": "30d"}
    nxt = datetime.fromisoformat(sch["next_run_at"])
    assert nxt.utcoffset().total_seconds() == 0 and nxt.minute == 30 and nxt.hour in (6, 7)  # 02:30 EST/EDT
    for bad in ({"cron": "* * *"}, {"cron": "0 25 * * *"}, {"timezone": "Mars/Olympus"}, {"retention": {"keep_last": 0}},
                {"retention": {"keep_forever": True}}, {"retention": {"keep_within": "30 days"}},
                {"retention": {"keep_days": 30}}):
        assert api.call("POST", base, tok, json={**body, **bad}).status_code == 422, bad
    r = api.call("PATCH", f"{base}/{sch['id']}", tok, json={"enabled": False, "cron": "@daily"})
    assert r.status_code == 200 and r.get_json()["enabled"] is False and r.get_json()["next_run_at"] is None
    assert api.call("PATCH", f"{base}/{sch['id']}", tok, json={"timezone": "Nowhere/Land"}).status_code == 422
    assert api.call("GET", f"{base}/{sch['id']}", tok).get_json()["cron"] == "@daily"
    assert api.call("DELETE", f"{base}/{sch['id']}", tok).status_code == 204
    assert api.call("GET", f"{base}/{sch['id']}", tok).status_code == 404


def test_a_webhook_secret_is_sealed_and_only_its_fingerprint_is_returned(api) -> None:
    w = build_world(api, EMAILS)
    tok = _admin(api, w.org)
    secret = "whsec_0123456789abcdef_unique"
    r = api.call("POST", f"/v1/orgs/{w.org}/webhooks", tok, json={
        "url": "https://hooks.example.test/fb", "events": ["backup.completed", "backup.completed", "restore.failed"],
        "secret": secret})
    assert r.status_code == 201
    out = r.get_json()
    assert out["events"] == ["backup.completed", "restore.failed"] and "secret" not in out
    assert out["secret_fingerprint"].startswith("hmac:") and secret not in r.get_data(as_text=True)
    with api.session() as s:
        row = s.get(Webhook, out["id"])
        assert row.secret_sealed.startswith("fbs1.") and secret not in row.secret_sealed
        assert api.sealer.open(row.secret_sealed, f"webhooks.secret_sealed:{row.id}").decode() == secret
    assert api.call("POST", f"/v1/orgs/{w.org}/webhooks", tok, json={
        "url": "https://hooks.example.test/fb", "events": ["backup.completed"], "secret": "short"}).status_code == 422


def test_webhooks_must_use_https_outside_development(api) -> None:
    w = build_world(api, EMAILS)
    tok = _admin(api, w.org)
    r = api.call("POST", f"/v1/orgs/{w.org}/webhooks", tok, json={
        "url": "http://hooks.example.test/fb", "events": ["backup.completed"], "secret": "s" * 20})
    assert r.status_code == 422 and "https" in r.get_json()["error"]["message"]
