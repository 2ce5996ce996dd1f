"""A job outcome queues deliveries to subscribed webhooks; a real local HTTP receiver checks the signature."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from firebackup.db.models import Backup, Webhook, WebhookDelivery, new_id, utcnow
from firebackup.services.context import Ctx
from firebackup.services.jobs import record_outcome
from firebackup.services.webhooks import WEBHOOK_RETRY, deliver, verify_signature
from tests.integration.controlplane.test_job_outcomes import _harness_ports
from tests.integration.controlplane.world import build_world

EMAILS = {c: f"hook-{c}@example.com" for c in ("owner", "admin", "member", "viewer", "outsider")}
SECRET = "whsec_receiver_check_0123456789"


@pytest.fixture
def receiver():
    got: list[tuple[dict, bytes]] = []
    status = {"code": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(status["code"])
            self.end_headers()

        def log_message(self, *a):  # keep test output clean
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", got, status
    server.shutdown()
    server.server_close()


def _add_hook(api, org: str, url: str, events: list[str]) -> str:
    wid = new_id("whk")
    with api.session() as s, s.begin():
        s.add(Webhook(id=wid, org_id=org, url=url, events=events,
                      secret_sealed=api.sealer.seal(SECRET, f"webhooks.secret_sealed:{wid}"),
                      secret_fingerprint=api.sealer.fingerprint(SECRET)))
    return wid


def test_a_completed_backup_is_delivered_signed_to_subscribed_webhooks_only(api, receiver) -> None:
    url, got, _ = receiver
    w = build_world(api, EMAILS)
    hook = _add_hook(api, w.org, url, ["backup.completed"])
    _add_hook(api, w.org, url + "/other", ["restore.failed"])
    ports = _harness_ports(api)
    with api.session() as s, s.begin():
        record_outcome(Ctx(s, ports), s.get(Backup, w.backup_pending), "completed")
    name, payload = api.queue.tasks[-1]
    assert name == "webhook_deliver"
    with api.session() as s, s.begin():
        d = deliver(Ctx(s, ports), payload["delivery_id"])
        assert (d.state, d.status_code, d.attempts, d.webhook_id) == ("delivered", 200, 1, hook)
    assert len(got) == 1
    headers, body = got[0]
    t, v1 = (part.split("=", 1)[1] for part in headers["x-firebackup-signature"].split(","))
    assert hmac.compare_digest(v1, hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest())
    assert t == headers["x-firebackup-timestamp"]
    assert verify_signature(SECRET, headers["x-firebackup-signature"], body, now=time.time()) == int(t)
    msg = json.loads(body)
    assert msg["event"] == "backup.completed" and msg["data"]["backup_id"] == w.backup_pending
    assert SECRET.encode() not in body


def test_a_failing_receiver_is_retried_after_each_backoff_then_marked_failed(api, receiver) -> None:
    url, got, status = receiver
    status["code"] = 503
    w = build_world(api, EMAILS)
    _add_hook(api, w.org, url, ["backup.failed"])
    ports = _harness_ports(api)
    with api.session() as s, s.begin():
        record_outcome(Ctx(s, ports), s.get(Backup, w.backup_pending), "failed", "boom")
    delivery_id = api.queue.tasks[-1][1]["delivery_id"]
    for day in range(WEBHOOK_RETRY.attempts):  # each backoff is at most hours: a day later every retry is due
        with api.session() as s, s.begin():
            deliver(Ctx(s, ports), delivery_id, now=utcnow() + timedelta(days=day))
    with api.session() as s:
        d = s.get(WebhookDelivery, delivery_id)
        assert (d.state, d.attempts, d.error) == ("failed", WEBHOOK_RETRY.attempts, "HTTP 503")
    assert len(got) == WEBHOOK_RETRY.attempts
    assert [p["attempt"] for n, p in api.queue.tasks if p.get("delivery_id") == delivery_id] == list(
        range(1, WEBHOOK_RETRY.attempts + 1))
