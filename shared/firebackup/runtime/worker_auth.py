"""Who may run a task on a worker function: Cloud Tasks with an OIDC token, or the shared secret.

In the cloud each task carries an OIDC token that Cloud Tasks mints for the invoker service
account, addressed to the worker's URL (its audience); the worker accepts exactly those. Where no
token exists (locally, the tasks emulator) the queue sends a shared secret in a header instead.

    auth = AnyOf([SharedSecret(secret), GoogleOidc(url, "tasks@p.iam.gserviceaccount.com")])
    auth.caller(request.headers)    # "shared secret", "service account tasks@...", or None: answer 401

A worker with no check configured refuses every request: AnyOf([]) accepts nobody.
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
import time
from typing import Any, Callable, Mapping, Protocol, Sequence

from google.auth.exceptions import GoogleAuthError
from google.auth.transport import Request, Response

log = logging.getLogger("firebackup.worker_auth")

SECRET_HEADER = "X-FireBackup-Worker-Secret"
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")

TokenCheck = Callable[[str, str], Mapping[str, Any]]
"""(token, audience) -> the token's verified claims; raises ValueError or GoogleAuthError if it is not valid."""


class WorkerAuth(Protocol):
    def caller(self, headers: Mapping[str, str]) -> str | None:
        """Who sent the request, in words for the log; None when it is not authenticated (answer 401)."""


class SharedSecret:
    """Accepts requests whose secret header equals the configured secret (compared in constant time)."""

    def __init__(self, secret: str):
        if not secret:
            raise ValueError("an empty shared secret would accept anyone")
        self._secret = secret.encode()

    def caller(self, headers: Mapping[str, str]) -> str | None:
        given = headers.get(SECRET_HEADER)
        if given is None:
            return None
        return "shared secret" if hmac.compare_digest(given.encode(), self._secret) else None

    def __repr__(self) -> str:
        return "SharedSecret(***)"


class GoogleOidc:
    """Accepts a Google-signed OIDC token for one service account, addressed to this worker's URL."""

    def __init__(self, audience: str, service_account: str, check: TokenCheck | None = None):
        self.audience, self.service_account = audience, service_account
        self._check = check or google_token_check()

    def caller(self, headers: Mapping[str, str]) -> str | None:
        scheme, _, token = headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        try:
            claims = self._check(token.strip(), self.audience)
        except (ValueError, GoogleAuthError) as e:
            # Why, for the log only: the caller learns nothing but 401.
            log.info("refused a task: its OIDC token is not valid (%s)", _first_line(e))
            return None
        if claims.get("iss") not in GOOGLE_ISSUERS:
            log.info("refused a task: its OIDC token was issued by %r", claims.get("iss"))
            return None
        if claims.get("email") != self.service_account or claims.get("email_verified") is not True:
            log.info("refused a task: its OIDC token is for %r, not the invoker service account", claims.get("email"))
            return None
        return f"service account {self.service_account}"


class AnyOf:
    """Accepts a request that one of the checks accepts; with no checks, none."""

    def __init__(self, checks: Sequence[WorkerAuth]):
        self.checks = list(checks)

    def caller(self, headers: Mapping[str, str]) -> str | None:
        for check in self.checks:
            who = check.caller(headers)
            if who is not None:
                return who
        return None


def google_token_check(request: Request | None = None) -> TokenCheck:
    """Verify tokens with Google's public certificates, fetched through `request` (by default over
    HTTPS, each kept while it is fresh)."""
    from google.oauth2 import id_token

    transport = request if request is not None else CachingCertsRequest()

    def check(token: str, audience: str) -> Mapping[str, Any]:
        claims: Mapping[str, Any] = id_token.verify_oauth2_token(  # type: ignore[no-untyped-call]
            token, transport, audience)
        return claims

    return check


class CachingCertsRequest(Request):
    """A transport that keeps each GET response for its Cache-Control max-age (Google's certificates).

    Without it every task would fetch the certificates again: a round trip per task.
    """

    def __init__(self, inner: Request | None = None, clock: Callable[[], float] = time.monotonic):
        if inner is None:
            from google.auth.transport.requests import Request as RequestsRequest

            inner = RequestsRequest()
        self._inner, self._clock = inner, clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Response]] = {}

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Mapping[str, str] | None = None,
                 timeout: float | None = None, **kwargs: Any) -> Response:
        if method != "GET" or body is not None:
            passed: Response = self._inner(url, method=method, body=body, headers=headers, timeout=timeout, **kwargs)
            return passed
        now = self._clock()
        with self._lock:
            kept = self._cache.get(url)
        if kept is not None and kept[0] > now:
            return kept[1]
        response: Response = self._inner(url, method=method, headers=headers, timeout=timeout, **kwargs)
        age = _max_age(response.headers.get("Cache-Control", "") if response.status == 200 else "")
        if age > 0:
            with self._lock:
                self._cache[url] = (now + age, response)
        return response


def _max_age(cache_control: str) -> int:
    found = re.search(r"max-age=(\d+)", cache_control)
    return int(found.group(1)) if found else 0


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


__all__ = ["SECRET_HEADER", "WorkerAuth", "SharedSecret", "GoogleOidc", "AnyOf", "google_token_check",
           "CachingCertsRequest"]
