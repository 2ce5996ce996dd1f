"""Webhook deliveries: one row per (webhook, event), sent by a task, signed with the webhook's sealed secret.

Signature header: `FireBackup-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`,
so receivers can check both origin and freshness (the Stripe scheme, familiar to most).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any, Callable

import sqlalchemy as sa

from firebackup.db.models import Webhook, WebhookDelivery, utcnow
from firebackup.services.context import Ctx
from firebackup.services.resources import webhook_secret

MAX_ATTEMPTS = 5


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The FireBackup-Signature header value for `body` sent at `timestamp`."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def queue_event(ctx: Ctx, org_id: str, event: str, payload: dict[str, Any]) -> list[str]:
    """Create a pending delivery for each enabled webhook subscribed to `event`; enqueue their sending."""
    hooks = ctx.session.scalars(sa.select(Webhook).where(Webhook.org_id == org_id, Webhook.enabled.is_(True))).all()
    ids = []
    for hook in hooks:
        if event not in (hook.events or []):
            continue
        d = WebhookDelivery(webhook_id=hook.id, event=event, payload={"event": event, "data": payload})
        ctx.session.add(d)
        ctx.session.flush()
        ids.append(d.id)
        ctx.ports.queue.enqueue("webhook_deliver", {"delivery_id": d.id})
    return ids


Poster = Callable[[str, bytes, dict[str, str]], int]  # (url, body, headers) -> HTTP status; OSError on failure


def http_post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST without following redirects (a redirect could send the signed payload elsewhere)."""
    import requests

    try:
        return requests.post(url, data=body, headers=headers, timeout=10, allow_redirects=False).status_code
    except requests.RequestException as e:
        raise OSError(type(e).__name__) from None


def deliver(ctx: Ctx, delivery_id: str, post: Poster = http_post) -> WebhookDelivery | None:
    """Send one delivery (a task handler); 2xx marks it delivered, otherwise it is retried up to MAX_ATTEMPTS.

    None when the delivery no longer exists (its webhook was deleted, which deletes its deliveries).
    """
    d = ctx.session.get(WebhookDelivery, delivery_id)
    if d is None or d.state == "delivered":
        return d
    hook = ctx.session.get(Webhook, d.webhook_id)
    if hook is None:
        d.state, d.error = "failed", "the webhook was deleted"
        return d
    body = json.dumps({"id": d.id, **d.payload}, separators=(",", ":"), sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "FireBackup-Webhooks/1",
               "FireBackup-Event": d.event, "FireBackup-Delivery": d.id,
               "FireBackup-Signature": sign(webhook_secret(ctx, hook), body, int(time.time()))}
    d.attempts += 1
    try:
        status = post(hook.url, body, headers)
        d.status_code, d.error = status, None if 200 <= status < 300 else f"HTTP {status}"
    except OSError as e:
        d.status_code, d.error = None, f"connection failed: {e}"[:300]
    if d.error is None:
        d.state, d.delivered_at = "delivered", utcnow()
    elif d.attempts >= MAX_ATTEMPTS:
        d.state = "failed"
    else:
        ctx.ports.queue.enqueue("webhook_deliver", {"delivery_id": d.id})
    return d
