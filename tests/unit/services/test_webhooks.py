"""Webhook deliveries: signed over a timestamp, retried after a backoff a bounded number of times, logged."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from firebackup.db.models import WebhookDelivery
from firebackup.retry import RetryPolicy
from firebackup.services import resources, webhooks
from firebackup.services.commands import AddWebhook, PageRequest
from firebackup.services.context import Role
from firebackup.services.errors import NotFound, Unauthenticated
from firebackup.services.webhooks import Reply, sign, verify_signature
from tests.unit.services.conftest import Org, RecordedQueue, World

SECRET = "whsec-0123456789abcdef"
# The test's clock starts just after the wall clock, which stamps a new delivery due at once.
# After any moment these tests run (deliveries are queued at the real now), and fixed: no race with a slow run.
T0 = datetime(2100, 1, 1, 12, 0, tzinfo=timezone.utc)
# Full jitter drawing its maximum every time: the waits are exactly 10, 20, 40 s, then capped at 60 s.
RETRY = RetryPolicy(attempts=5, base_delay=10.0, max_delay=60.0, deadline=None, rng=lambda: 1.0)


class Receiver:
    """Stands in for the receiving server: keeps each request and answers with `status`."""

    def __init__(self, status: int = 204, head: bytes = b"") -> None:
        self.status, self.head = status, head
        self.requests: list[tuple[str, bytes, dict[str, str]]] = []

    def __call__(self, url: str, body: bytes, headers: dict[str, str]) -> Reply:
        self.requests.append((url, body, headers))
        return Reply(self.status, self.head)


def _delivery(world: World, org: Org, url: str = "https://hooks.test/in") -> str:
    admin = world.ctx_as(org.users[Role.admin], org.id, Role.admin)
    resources.create_webhook(admin, org.id, AddWebhook(url, ("backup.failed",), SECRET))
    [delivery_id] = webhooks.queue_event(world.system(), org.id, "backup.failed", {"backup_id": "bkp_1"})
    return delivery_id


def test_a_delivery_is_signed_over_timestamp_and_body_with_the_webhooks_secret(world: World) -> None:
    org = world.org()
    receiver = Receiver(204)
    d = webhooks.deliver(world.system(), _delivery(world, org), receiver, attempt=1, now=T0)
    assert d is not None and d.state == "delivered" and d.status_code == 204 and d.next_attempt_at is None
    [(url, body, headers)] = receiver.requests
    t = headers["X-FireBackup-Timestamp"]
    assert t == str(int(T0.timestamp()))
    assert headers["X-FireBackup-Signature"] == f"t={t},v1=" + hmac.new(
        SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert verify_signature(SECRET, headers["X-FireBackup-Signature"], body, now=T0.timestamp() + 60) == int(t)
    assert json.loads(body) == {"id": d.id, "event": "backup.failed", "data": {"backup_id": "bkp_1"}}
    assert url == "https://hooks.test/in" and headers["X-FireBackup-Delivery"] == d.id


def test_an_event_enqueues_the_first_attempt_due_at_once(world: World, queue: RecordedQueue) -> None:
    delivery_id = _delivery(world, world.org())
    assert queue.tasks[-1] == ("webhook_deliver", {"delivery_id": delivery_id, "attempt": 1})
    assert queue.delays[-1] == 0.0


def test_a_failed_attempt_is_retried_after_an_exponential_backoff_not_at_once(world: World, queue: RecordedQueue) -> None:
    delivery_id = _delivery(world, world.org())
    queue.tasks.clear()
    queue.delays.clear()
    now = T0
    for attempt, wait in zip(range(1, 5), (10.0, 20.0, 40.0, 60.0)):
        d = webhooks.deliver(world.system(), delivery_id, Receiver(503), attempt=attempt, now=now, retry=RETRY)
        assert d is not None and (d.state, d.attempts, d.error) == ("pending", attempt, "HTTP 503")
        assert d.next_attempt_at == now + timedelta(seconds=wait) and d.last_attempt_at == now
        assert queue.tasks[-1] == ("webhook_deliver", {"delivery_id": delivery_id, "attempt": attempt + 1})
        assert queue.delays[-1] == wait
        now = d.next_attempt_at
    assert queue.delays == [10.0, 20.0, 40.0, 60.0]


def test_the_backoff_draws_each_wait_between_zero_and_its_cap() -> None:
    draws = iter([0.0, 0.5, 0.25])
    policy = RetryPolicy(attempts=5, base_delay=10.0, max_delay=60.0, deadline=None, rng=lambda: next(draws))
    assert [policy.delay(n) for n in (1, 2, 3)] == [0.0, 10.0, 10.0]


def test_after_the_last_attempt_the_delivery_fails_for_good_and_nothing_more_is_enqueued(world: World, queue: RecordedQueue) -> None:
    delivery_id = _delivery(world, world.org())
    queue.tasks.clear()

    def refuse(url: str, body: bytes, headers: dict[str, str]) -> Reply:
        raise OSError("ConnectionError")

    now = T0
    for attempt in range(1, RETRY.attempts + 1):
        d = webhooks.deliver(world.system(), delivery_id, refuse, attempt=attempt, now=now, retry=RETRY)
        assert d is not None
        now = d.next_attempt_at or now
    assert d is not None and (d.state, d.attempts, d.error, d.next_attempt_at) == (
        "failed", RETRY.attempts, "connection failed: ConnectionError", None)
    assert len(queue.tasks) == RETRY.attempts - 1
    later = webhooks.deliver(world.system(), delivery_id, refuse, now=now + timedelta(days=1), retry=RETRY)
    assert later is not None and later.attempts == RETRY.attempts


def test_a_retry_that_arrives_before_it_is_due_sends_nothing(world: World) -> None:
    delivery_id = _delivery(world, world.org())
    webhooks.deliver(world.system(), delivery_id, Receiver(500), attempt=1, now=T0, retry=RETRY)
    early = Receiver(200)
    d = webhooks.deliver(world.system(), delivery_id, early, attempt=2, now=T0 + timedelta(seconds=3), retry=RETRY)
    assert early.requests == [] and d is not None and (d.state, d.attempts) == ("pending", 1)
    d = webhooks.deliver(world.system(), delivery_id, early, attempt=2, now=T0 + timedelta(seconds=10), retry=RETRY)
    assert len(early.requests) == 1 and d is not None and (d.state, d.attempts) == ("delivered", 2)


def test_a_duplicate_task_for_an_attempt_already_made_sends_nothing(world: World) -> None:
    delivery_id = _delivery(world, world.org())
    webhooks.deliver(world.system(), delivery_id, Receiver(500), attempt=1, now=T0, retry=RETRY)
    again = Receiver(200)
    d = webhooks.deliver(world.system(), delivery_id, again, attempt=1, now=T0 + timedelta(hours=1), retry=RETRY)
    assert again.requests == [] and d is not None and d.attempts == 1


def test_a_delivered_event_is_not_sent_again_when_its_task_is_redelivered(world: World) -> None:
    delivery_id = _delivery(world, world.org())
    receiver = Receiver(200)
    for _ in range(2):
        webhooks.deliver(world.system(), delivery_id, receiver, now=T0)
    assert len(receiver.requests) == 1
    assert world.session.scalar(sa.select(WebhookDelivery.attempts)) == 1


def test_redelivery_enqueues_only_retries_overdue_past_the_grace_with_their_next_attempt(world: World, queue: RecordedQueue) -> None:
    org = world.org()
    lost, fresh = _delivery(world, org), webhooks.queue_event(
        world.system(), org.id, "backup.failed", {"backup_id": "bkp_2"})[0]
    webhooks.deliver(world.system(), lost, Receiver(502), attempt=1, now=T0, retry=RETRY)
    webhooks.deliver(world.system(), fresh, Receiver(502), attempt=1, now=T0 + timedelta(minutes=30), retry=RETRY)
    queue.tasks.clear()
    # lost was due at T0+10 s, fresh at T0+30 min 10 s: only lost is overdue by the 15-minute grace.
    assert webhooks.redeliver_due(world.system(), T0 + timedelta(minutes=40)) == [lost]
    assert queue.tasks == [("webhook_deliver", {"delivery_id": lost, "attempt": 2})]


def test_the_log_keeps_a_short_printable_excerpt_of_the_answer_with_the_secret_masked(world: World) -> None:
    delivery_id = _delivery(world, world.org())
    answer = b"\x1b[31mbad\r\n\tsignature for " + SECRET.encode() + b" \x00" + b"x" * 5000
    d = webhooks.deliver(world.system(), delivery_id, Receiver(400, answer), now=T0)
    assert d is not None and d.response_excerpt is not None and d.duration_ms is not None
    assert d.response_excerpt.startswith("[31mbad signature for [secret] xxx")
    assert len(d.response_excerpt) == webhooks.EXCERPT_CHARS and SECRET not in d.response_excerpt


def test_the_delivery_log_lists_newest_first_page_by_page_within_the_organization(world: World) -> None:
    org = world.org()
    first = _delivery(world, org)
    row = world.session.get(WebhookDelivery, first)
    assert row is not None
    hook = row.webhook_id
    more = [webhooks.queue_event(world.system(), org.id, "backup.failed", {"n": n})[0] for n in range(2)]
    viewer = world.ctx_as(org.users[Role.viewer], org.id)
    page1, cursor = webhooks.list_webhook_deliveries(viewer, org.id, hook, PageRequest(limit=2))
    page2, end = webhooks.list_webhook_deliveries(viewer, org.id, hook, PageRequest(limit=2, cursor=cursor))
    assert [d.id for d in page1 + page2] == sorted([first, *more], reverse=True) and end is None
    other = world.org("Other")
    with pytest.raises(NotFound):
        webhooks.list_webhook_deliveries(world.ctx_as(other.users[Role.viewer], other.id), other.id, hook,
                                         PageRequest())


# --- verify_signature: what a receiver runs ---------------------------------------------------------

BODY = b'{"event":"backup.completed","id":"whd_1"}'
NOW = 1_780_000_000


def test_verify_accepts_a_fresh_signature_and_returns_its_timestamp() -> None:
    assert verify_signature(SECRET, sign(SECRET.encode(), BODY, NOW), BODY, now=NOW + 299) == NOW


@pytest.mark.parametrize("skew", [301, -301])
def test_verify_rejects_a_timestamp_beyond_the_tolerance_either_way(skew: int) -> None:
    with pytest.raises(Unauthenticated, match="beyond 300 s"):
        verify_signature(SECRET, sign(SECRET.encode(), BODY, NOW), BODY, now=NOW + skew)


def test_verify_rejects_a_flipped_byte_in_the_body() -> None:
    header = sign(SECRET.encode(), BODY, NOW)
    with pytest.raises(Unauthenticated, match="does not match"):
        verify_signature(SECRET, header, BODY.replace(b"completed", b"completeD"), now=NOW)


def test_verify_rejects_a_replay_with_a_new_timestamp_but_the_old_signature() -> None:
    old = sign(SECRET.encode(), BODY, NOW).split(",")[1]
    with pytest.raises(Unauthenticated, match="does not match"):
        verify_signature(SECRET, f"t={NOW + 3600},{old}", BODY, now=NOW + 3600)


def test_verify_rejects_another_secret() -> None:
    with pytest.raises(Unauthenticated, match="does not match"):
        verify_signature("whsec-another-secret-000", sign(SECRET.encode(), BODY, NOW), BODY, now=NOW)


@pytest.mark.parametrize("header", ["", "v1=abc", f"t={NOW}", f"t=soon,v1=abc", f"t={NOW},t={NOW},v1=abc"])
def test_verify_rejects_a_malformed_header(header: str) -> None:
    with pytest.raises(Unauthenticated, match="is not t="):
        verify_signature(SECRET, header, BODY, now=NOW)


def test_verify_accepts_any_matching_v1_among_several() -> None:
    good = sign(SECRET.encode(), BODY, NOW).split(",")[1]
    assert verify_signature(SECRET, f"t={NOW},v1={'0' * 64},{good}", BODY, now=NOW) == NOW
