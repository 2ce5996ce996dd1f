"""Webhook deliveries: one row per (webhook, event), sent by `webhook_deliver` tasks, signed with the webhook's secret.

Retries. A failed attempt (no connection, or an answer other than 2xx) is tried again after an
exponential backoff with full jitter (WEBHOOK_RETRY.delay: up to 30 s, 1 min, 2 min, ... capped at
4 h), at most WEBHOOK_RETRY.attempts times in all; then the delivery is failed for good. The wait
rides on the queue (`enqueue(..., delay_seconds=...)`: a timer locally, schedule_time on Cloud
Tasks), which keeps the first retries seconds apart where an hourly maintenance tick could not.
The row is the truth, though: it records when its next attempt is due, so maintenance's
`redeliver_due` sends again a delivery whose task was lost (a local timer dies with its process).
A task names the attempt it is for; an attempt already made, or one not yet due, sends nothing,
so duplicate and early tasks are harmless.

Signature (Stripe's scheme). Each request carries

    X-FireBackup-Timestamp: <t>                     unix seconds when this attempt was signed
    X-FireBackup-Signature: t=<t>,v1=<hex>          hex = HMAC-SHA256(secret, f"{t}.{raw body}")

A receiver verifies it before trusting the body (`verify_signature` does all of this):
1. take t and every v1 from the signature header (ignore other keys; several v1 may appear);
2. reject the request if |now - t| exceeds a tolerance (300 s is usual): an old, replayed
   request has an old t, and t cannot be changed without breaking the signature;
3. compute HMAC-SHA256 with the webhook's secret over the bytes `t`, `.`, then the raw body
   exactly as received (before any JSON parsing), and compare it with each v1 in constant time;
4. the body's "id" (also sent as X-FireBackup-Delivery) is the same on every attempt of one
   delivery: remember it to drop a delivery already processed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

import sqlalchemy as sa

from firebackup.db.models import Webhook, WebhookDelivery, utcnow
from firebackup.retry import RetryPolicy
from firebackup.services.commands import PageRequest
from firebackup.services.context import Ctx, page
from firebackup.services.errors import Unauthenticated
from firebackup.services.resources import get_webhook, webhook_secret

TASK = "webhook_deliver"

# Ten attempts in all; the nine waits between them are drawn in [0, min(4 h, 30 s * 2**(n-1))],
# so a receiver that is down for an hour or two still gets the event.
WEBHOOK_RETRY = RetryPolicy(attempts=10, base_delay=30.0, max_delay=4 * 3600.0, deadline=None)

# A timer may fire a little before the due time the row records (another clock, another host).
EARLY = timedelta(seconds=5)
# A retry overdue by this much has lost its task; sooner, the queue is still about to run it.
LOST_AFTER = timedelta(minutes=15)

EXCERPT_CHARS = 200  # of the receiver's answer, kept in the delivery log
_READ_BYTES = 1024  # read no more of an answer than that: receivers may answer with anything
SIGNATURE_TOLERANCE = 300.0


# --- signing and verifying ------------------------------------------------------------------------

def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The X-FireBackup-Signature header value for `body` sent at `timestamp` (unix seconds)."""
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def _mac(secret: bytes, timestamp: int | str, body: bytes) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes | str, header: str, body: bytes, now: float,
                     tolerance: float = SIGNATURE_TOLERANCE) -> int:
    """Check an X-FireBackup-Signature header against the raw body; return its timestamp.

    Raises Unauthenticated when the header is malformed, its timestamp is more than `tolerance`
    seconds away from `now` (unix seconds; a replay), or no v1 matches.
    """
    key = secret.encode() if isinstance(secret, str) else secret
    timestamps, macs = [], []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            timestamps.append(value)
        elif name == "v1":
            macs.append(value)
    if len(timestamps) != 1 or not timestamps[0].isdigit() or not macs:
        raise Unauthenticated("X-FireBackup-Signature is not t=<unix seconds>,v1=<hex>; refuse the request")
    t = int(timestamps[0])
    if abs(now - t) > tolerance:
        raise Unauthenticated(f"X-FireBackup-Signature is {now - t:+.0f} s away from now, beyond {tolerance:.0f} s; "
                              "refuse it (a replay, or a clock to set right)")
    expected = _mac(key, t, body)
    if not any(hmac.compare_digest(expected, m) for m in macs):
        raise Unauthenticated("X-FireBackup-Signature does not match the body; refuse it (or check the secret)")
    return t


# --- sending --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reply:
    """A receiver's answer: its status and the first bytes of its body (never more)."""

    status: int
    head: bytes = b""


Poster = Callable[[str, bytes, dict[str, str]], Reply]  # (url, body, headers); OSError when no answer


def http_post(url: str, body: bytes, headers: dict[str, str]) -> Reply:
    """POST without following redirects (a redirect could send the signed payload elsewhere)."""
    import requests

    try:
        with requests.post(url, data=body, headers=headers, timeout=10, allow_redirects=False, stream=True) as r:
            return Reply(r.status_code, next(r.iter_content(_READ_BYTES), b""))
    except requests.RequestException as e:
        raise OSError(type(e).__name__) from None


def queue_event(ctx: Ctx, org_id: str, event: str, payload: dict[str, Any]) -> list[str]:
    """Create a pending delivery for each enabled webhook subscribed to `event`; enqueue their first attempt."""
    hooks = ctx.session.scalars(sa.select(Webhook).where(Webhook.org_id == org_id, Webhook.enabled.is_(True))).all()
    ids = []
    now = utcnow()
    for hook in hooks:
        if event not in (hook.events or []):
            continue
        d = WebhookDelivery(webhook_id=hook.id, event=event, payload={"event": event, "data": payload},
                            next_attempt_at=now)
        ctx.session.add(d)
        ctx.session.flush()
        ids.append(d.id)
        ctx.ports.queue.enqueue(TASK, {"delivery_id": d.id, "attempt": 1})
    return ids


def deliver(ctx: Ctx, delivery_id: str, post: Poster = http_post, *, attempt: int | None = None,
            now: datetime | None = None, retry: RetryPolicy = WEBHOOK_RETRY) -> WebhookDelivery | None:
    """Make attempt number `attempt` of a delivery (the webhook_deliver task); None: whichever is next.

    2xx marks it delivered; anything else schedules the next attempt after a backoff, or fails it
    for good after retry.attempts. An attempt already made, or not yet due, sends nothing. Returns
    the row (None when it no longer exists: deleting a webhook deletes its deliveries).
    """
    now = now or utcnow()
    d = ctx.session.get(WebhookDelivery, delivery_id)
    if d is None or d.state != "pending":
        return d
    made = d.attempts
    if (attempt is not None and attempt != made + 1) or (d.next_attempt_at is not None
                                                        and d.next_attempt_at > now + EARLY):
        return d
    hook = ctx.session.get(Webhook, d.webhook_id)
    if hook is None:
        d.state, d.error, d.next_attempt_at = "failed", "the webhook was deleted", None
        return d
    secret = webhook_secret(ctx, hook)
    body = json.dumps({"id": d.id, **d.payload}, separators=(",", ":"), sort_keys=True).encode()
    timestamp = int(now.timestamp())
    headers = {"Content-Type": "application/json", "User-Agent": "FireBackup-Webhooks/1",
               "X-FireBackup-Event": d.event, "X-FireBackup-Delivery": d.id,
               "X-FireBackup-Timestamp": str(timestamp), "X-FireBackup-Signature": sign(secret, body, timestamp)}
    started = time.monotonic()
    status: int | None
    try:
        reply = post(hook.url, body, headers)
        status, head = reply.status, reply.head
        error = None if 200 <= status < 300 else f"HTTP {status}"
    except OSError as e:
        status, head, error = None, b"", f"connection failed: {e}"[:300]
    outcome: dict[str, Any] = {
        "attempts": made + 1, "last_attempt_at": now, "status_code": status, "error": error,
        "duration_ms": round((time.monotonic() - started) * 1000), "response_excerpt": excerpt(head, secret)}
    delay: float | None = None
    if error is None:
        outcome.update(state="delivered", delivered_at=now, next_attempt_at=None)
    elif made + 1 >= retry.attempts:
        outcome.update(state="failed", next_attempt_at=None)
    else:
        delay = retry.delay(made + 1)
        outcome.update(next_attempt_at=now + timedelta(seconds=delay))
    # Recorded only if no other task recorded this attempt meanwhile (the POST ran outside any lock).
    recorded = ctx.session.connection().execute(
        sa.update(WebhookDelivery)
        .where(WebhookDelivery.id == d.id, WebhookDelivery.state == "pending", WebhookDelivery.attempts == made)
        .values(outcome)).rowcount
    ctx.session.refresh(d)
    if recorded and delay is not None:
        ctx.ports.queue.enqueue(TASK, {"delivery_id": d.id, "attempt": made + 2}, delay_seconds=delay)
    return d


def redeliver_due(ctx: Ctx, now: datetime, *, lost_after: timedelta = LOST_AFTER, limit: int = 1000) -> list[str]:
    """Enqueue again the pending deliveries whose next attempt is overdue by `lost_after` (maintenance).

    Their tasks were lost; a delivery due more recently still has its task on the way. Returns the ids.
    """
    rows = ctx.session.execute(
        sa.select(WebhookDelivery.id, WebhookDelivery.attempts)
        .where(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now - lost_after)
        .order_by(WebhookDelivery.next_attempt_at).limit(limit)).all()
    for delivery_id, attempts in rows:
        ctx.ports.queue.enqueue(TASK, {"delivery_id": delivery_id, "attempt": attempts + 1})
    return [delivery_id for delivery_id, _ in rows]


def excerpt(head: bytes, secret: bytes) -> str | None:
    """The start of an answer as one printable line, the webhook's secret masked; None if empty."""
    text = head[:_READ_BYTES].decode("utf-8", "replace")
    if secret:
        text = text.replace(secret.decode("utf-8", "replace"), "[secret]")
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return text[:EXCERPT_CHARS] or None


# --- the delivery log -----------------------------------------------------------------------------

def list_webhook_deliveries(ctx: Ctx, org_id: str, webhook_id: str,
                            q: PageRequest) -> tuple[list[WebhookDelivery], str | None]:
    """A webhook's deliveries, newest first."""
    hook = get_webhook(ctx, org_id, webhook_id)
    return page(ctx.session, sa.select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id),
                WebhookDelivery.id, limit=q.limit, cursor=q.cursor, descending=True)
