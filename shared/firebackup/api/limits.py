"""Who is calling from where, and how often: the client address behind Google's front end, request rate
limits per address and per token (flask-limiter), and a throttle for writing audit rows about refusals.

Cloud Functions (2nd gen) sit behind Google's front end, which APPENDS the address it saw to
X-Forwarded-For: earlier entries are whatever the client sent, so only the last
`trusted_proxy_hops` entries are believed (werkzeug's ProxyFix; 1 behind the front end alone, 2
with an external HTTPS load balancer in front of it, 0 when nothing is in front, as locally).
Limits are counted in each instance's memory: with N instances a caller may get up to N times the
limit before every instance refuses, which bounds abuse without a shared store (a Redis URL in
FIREBACKUP_RATE_LIMIT_STORAGE makes them exact across instances).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from flask import Flask, Response, request
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from limits import parse_many
from werkzeug.middleware.proxy_fix import ProxyFix

from firebackup.api.errors import error_response
from firebackup.errors import UsageError
from firebackup.settings import Settings


_View = Callable[..., Response]


class TtlSet:
    """Remembers keys for `seconds`; add() says whether the key was new. Bounded: the oldest go first."""

    def __init__(self, *, seconds: float, max_size: int) -> None:
        self.seconds, self.max_size = seconds, max_size
        self._seen: OrderedDict[Hashable, float] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, key: Hashable) -> bool:
        now = time.monotonic()
        with self._lock:
            while self._seen and (len(self._seen) >= self.max_size or next(iter(self._seen.values())) <= now):
                self._seen.popitem(last=False)
            if key in self._seen:
                return False
            self._seen[key] = now + self.seconds
            return True


def _client_address() -> str:
    return request.remote_addr or "unknown"


def _token_key() -> str:
    """The bearer credential, hashed (the limiter's store must not hold tokens); the address without one."""
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer ") and len(auth) > 7:
        return "token:" + hashlib.sha256(auth[7:].strip().encode()).hexdigest()
    return "address:" + _client_address()


def install(app: Flask, settings: Settings) -> Limiter | None:
    """Believe the configured proxies' X-Forwarded-For; limit every request per address (None: no limits)."""
    if settings.trusted_proxy_hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxy_hops)  # type: ignore[method-assign]
    if not (settings.rate_limit_per_address or settings.rate_limit_per_token):
        return None
    for name, value in (("FIREBACKUP_RATE_LIMIT_PER_ADDRESS", settings.rate_limit_per_address),
                        ("FIREBACKUP_RATE_LIMIT_PER_TOKEN", settings.rate_limit_per_token)):
        try:
            if value:
                parse_many(value)
        except ValueError:
            raise UsageError(f"{name}={value!r} is not a rate limit; write e.g. 600/minute or 10/second") from None
    limiter = Limiter(key_func=_client_address, app=app, storage_uri=settings.rate_limit_storage,
                      default_limits=[settings.rate_limit_per_address] if settings.rate_limit_per_address else [],
                      headers_enabled=True)

    @app.errorhandler(RateLimitExceeded)
    def too_many(e: RateLimitExceeded) -> Response:
        return error_response(429, "rate_limited", f"too many requests ({e.description}); slow down, then retry")

    return limiter


def per_token(limiter: Limiter | None, settings: Settings, view: _View) -> _View:
    """The view, also limited per bearer credential (a token shared by many addresses counts once)."""
    if limiter is None or not settings.rate_limit_per_token:
        return view
    limited: _View = limiter.limit(settings.rate_limit_per_token, key_func=_token_key)(view)
    return limited
