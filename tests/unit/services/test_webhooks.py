"""Webhook deliveries: signed so receivers can check origin and freshness, retried a bounded number of times."""

from __future__ import annotations

import hashlib
import hmac
import json

import sqlalchemy as sa

from firebackup.db.models import WebhookDelivery
from firebackup.services import resources, webhooks
from firebackup.services.commands import AddWebhook
from firebackup.services.context import Role

SECRET = "whsec-0123456789abcdef"


class Receiver:
    """Stands in for the receiving server: keeps each request and answers with `status`."""

    def __init__(self, status: int = 204) -> None:
        self.status = status
        self.requests: list[tuple[str, bytes, dict[str, str]]] = []

    def __call__(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        self.requests.append((url, body, headers))
        return self.status


def _delivery(world, org) -> str:
    admin = world.ctx_as(org.users[Role.admin], org.id, Role.admin)
    resources.create_webhook(admin, org.id, AddWebhook("https://hooks.test/in", ("backup.failed",), SECRET))
    [delivery_id] = webhooks.queue_event(world.system(), org.id, "backup.failed", {"backup_id": "bkp_1"})
    return delivery_id


def test_a_delivery_is_signed_over_timestamp_and_body_with_the_webhooks_secret(world) -> None:
    org = world.org()
    receiver = Receiver(204)
    d = webhooks.deliver(world.system(), _delivery(world, org), receiver)
    assert d is not None and d.state == "delivered" and d.status_code == 204
    [(url, body, headers)] = receiver.requests
    t, v1 = (part.split("=", 1)[1] for part in headers["FireBackup-Signature"].split(","))
    assert v1 == hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert json.loads(body) == {"id": d.id, "event": "backup.failed", "data": {"backup_id": "bkp_1"}}
    assert url == "https://hooks.test/in" and headers["FireBackup-Delivery"] == d.id


def test_a_failing_receiver_is_retried_until_the_attempt_limit_then_the_delivery_fails(world, queue) -> None:
    org = world.org()
    delivery_id = _delivery(world, org)
    queue.tasks.clear()

    def refuse(url: str, body: bytes, headers: dict[str, str]) -> int:
        raise OSError("ConnectionError")

    for attempt in range(1, webhooks.MAX_ATTEMPTS + 1):
        last = attempt == webhooks.MAX_ATTEMPTS
        d = webhooks.deliver(world.system(), delivery_id, lambda *a: refuse(*a) if last else 503)
        assert d is not None and d.error == ("connection failed: ConnectionError" if last else "HTTP 503")
        assert d.attempts == attempt and d.state == ("failed" if last else "pending")
    assert queue.tasks == [("webhook_deliver", {"delivery_id": delivery_id})] * (webhooks.MAX_ATTEMPTS - 1)


def test_a_delivered_event_is_not_sent_again_when_its_task_is_redelivered(world) -> None:
    org = world.org()
    delivery_id = _delivery(world, org)
    receiver = Receiver(200)
    for _ in range(2):
        webhooks.deliver(world.system(), delivery_id, receiver)
    assert len(receiver.requests) == 1
    assert world.session.scalar(sa.select(WebhookDelivery.attempts)) == 1
