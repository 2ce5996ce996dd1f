"""Webhook deliveries to a real HTTP receiver: retried after a backoff, signed over a fresh timestamp, logged."""

from __future__ import annotations

import json

from firebackup.services.context import Ctx
from firebackup.services.webhooks import LOST_AFTER, WEBHOOK_RETRY, queue_event, redeliver_due, verify_signature
from tests.integration.webhooks.conftest import Plane, Receiver

SECRET = "whsec_integration_0123456789"


def _hook(p: Plane, url: str) -> str:
    hook: str = p.org.ok("POST", "/webhooks", {"url": url, "events": ["backup.completed"], "secret": SECRET}, 201)["id"]
    return hook


def _event(p: Plane) -> str:
    with p.plane.factory.begin() as s:
        [delivery_id] = queue_event(Ctx(s, p.plane.ports), p.org.id, "backup.completed", {"backup_id": "bkp_x"})
    return delivery_id


def _play(p: Plane) -> list[float]:
    """Run each queued task once its delay has passed on the test's clock; return the delays."""
    delays = []
    while p.queue.tasks:
        name, payload, delay = p.queue.tasks.pop(0)
        assert name == "webhook_deliver"
        p.clock.advance(delay)
        p.workers.webhook_deliver(payload)
        delays.append(delay)
    return delays


def test_a_receiver_failing_twice_gets_three_attempts_spaced_by_the_backoff_each_signed(
        plane: Plane, receiver: Receiver) -> None:
    receiver.answers = [(503, b"<html>busy</html>"), (500, b"oops"), (200, b"thanks")]
    hook = _hook(plane, receiver.url)
    delivery_id = _event(plane)
    delays = _play(plane)

    assert len(receiver.got) == 3 and len(delays) == 3 and delays[0] == 0.0
    stamps = [int(headers["x-firebackup-timestamp"]) for headers, _ in receiver.got]
    for n, (wait, before, after) in enumerate(zip(delays[1:], stamps, stamps[1:]), start=1):
        assert 0.0 <= wait <= min(WEBHOOK_RETRY.max_delay, WEBHOOK_RETRY.base_delay * 2 ** (n - 1))
        assert abs(after - before - wait) < 1  # the signed timestamps are whole seconds
    for (headers, body), stamp in zip(receiver.got, stamps):
        assert verify_signature(SECRET, headers["x-firebackup-signature"], body, now=stamp + 1) == stamp
        assert json.loads(body)["id"] == delivery_id == headers["x-firebackup-delivery"]

    log = plane.org.ok("GET", f"/webhooks/{hook}/deliveries")
    [entry] = log["items"]
    assert (entry["id"], entry["state"], entry["attempts"], entry["status_code"], entry["error"]) == (
        delivery_id, "delivered", 3, 200, None)
    assert entry["response_excerpt"] == "thanks" and entry["next_attempt_at"] is None
    assert entry["duration_ms"] >= 0 and entry["delivered_at"] == entry["last_attempt_at"]
    assert SECRET not in json.dumps(log)


def test_a_receiver_that_never_succeeds_is_given_up_after_the_attempt_limit(plane: Plane, receiver: Receiver) -> None:
    receiver.answers = [(502, b"\x00\x1bbad gateway " + b"!" * 4000)]
    hook = _hook(plane, receiver.url)
    _event(plane)
    _play(plane)
    assert len(receiver.got) == WEBHOOK_RETRY.attempts
    [entry] = plane.org.ok("GET", f"/webhooks/{hook}/deliveries")["items"]
    assert (entry["state"], entry["attempts"], entry["error"], entry["next_attempt_at"]) == (
        "failed", WEBHOOK_RETRY.attempts, "HTTP 502", None)
    assert entry["response_excerpt"].startswith("bad gateway !!!") and len(entry["response_excerpt"]) == 200


def test_maintenance_sends_again_a_delivery_whose_retry_task_was_lost(plane: Plane, receiver: Receiver) -> None:
    receiver.answers = [(503, b""), (204, b"")]
    hook = _hook(plane, receiver.url)
    _event(plane)
    name, first, _ = plane.queue.tasks.pop(0)
    plane.workers.webhook_deliver(first)
    plane.queue.tasks.clear()  # the retry's timer died with its process
    with plane.plane.factory.begin() as s:
        assert redeliver_due(Ctx(s, plane.plane.ports), plane.clock.now) == []  # not due yet
    plane.clock.advance(WEBHOOK_RETRY.base_delay + LOST_AFTER.total_seconds())
    with plane.plane.factory.begin() as s:
        [again] = redeliver_due(Ctx(s, plane.plane.ports), plane.clock.now)
    _play(plane)
    assert len(receiver.got) == 2
    [entry] = plane.org.ok("GET", f"/webhooks/{hook}/deliveries")["items"]
    assert (entry["id"], entry["state"], entry["attempts"]) == (again, "delivered", 2)


def test_the_delivery_log_pages_newest_first_and_is_hidden_from_other_organizations(
        plane: Plane, receiver: Receiver) -> None:
    hook = _hook(plane, receiver.url)
    ids = [_event(plane) for _ in range(3)]
    first = plane.org.ok("GET", f"/webhooks/{hook}/deliveries?limit=2")
    rest = plane.org.ok("GET", f"/webhooks/{hook}/deliveries?limit=2&cursor={first['next_cursor']}")
    assert [d["id"] for d in first["items"] + rest["items"]] == ids[::-1] and rest["next_cursor"] is None
    assert {d["state"] for d in first["items"]} == {"pending"}

    from tests.integration.controlplane.jobs_world import make_org

    other = make_org(plane.org.app, plane.plane.factory, plane.org.tmp)
    assert other.call("GET", f"/webhooks/{hook}/deliveries").status_code == 404
