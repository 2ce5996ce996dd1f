"""Ports the control plane talks through; real adapters are built lazily, fakes subclass these in tests."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from google.auth.exceptions import GoogleAuthError

from firebackup.services.errors import Invalid, Unauthenticated
from firebackup.settings import Settings

log = logging.getLogger("firebackup.identity")

if TYPE_CHECKING:
    from firebackup.services.source_opener import ProjectSources


try:
    from firebackup.runtime.queue import TaskQueue  # the team's port (H4)
except ImportError:  # pragma: no cover - only while runtime/ is absent

    class TaskQueue(Protocol):  # type: ignore[no-redef]
        """Enqueue one named task with a JSON-able payload (Cloud Tasks in production)."""

        def enqueue(self, name: str, payload: dict, *, delay_seconds: float = 0.0) -> None: ...


class RecordingQueue:
    """In-process queue that keeps tasks for a worker (or a test) to take.

    A delay is not kept: the taker runs tasks when it likes, and a delayed task (a webhook
    retry) checks for itself whether it is due.
    """

    def __init__(self) -> None:
        self.tasks: list[tuple[str, dict]] = []
        self._lock = threading.Lock()

    def enqueue(self, name: str, payload: dict, *, delay_seconds: float = 0.0) -> None:
        with self._lock:
            self.tasks.append((name, dict(payload)))


class IdTokenVerifier(Protocol):
    """Verify a Firebase ID token; return its claims (uid, email). Raises Unauthenticated."""

    def verify(self, token: str) -> dict[str, Any]: ...


class FirebaseIdTokenVerifier:
    """firebase-admin verification with check_revoked: a disabled user, or one whose sessions were revoked
    (signed out everywhere), loses access within `cache_seconds`.

    check_revoked costs a user lookup at Google per call, so a verified token's claims are kept for
    `cache_seconds` (0: never kept), keyed by the token's SHA-256 (a leaked cache shows no token),
    never past the token's own expiry, at most `cache_size` entries (least recently used go first).
    With `emulator_host` the Auth emulator's unsigned tokens are accepted and its users looked up;
    otherwise the lookup runs as the platform's own identity (Application Default Credentials).
    """

    def __init__(self, project_id: str, *, emulator_host: str | None = None, cache_seconds: float = 60.0,
                 cache_size: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.project_id, self.emulator_host = project_id, emulator_host
        self.cache_seconds, self.cache_size, self.clock = cache_seconds, max(1, cache_size), clock
        self._app: Any = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    def _get_app(self) -> Any:
        with self._lock:
            if self._app is None:
                import firebase_admin

                # firebase_admin reads the emulator's host once per app (from the environment, when its
                # auth service is made) and apps live as long as the process: one app per host, or a
                # process that meets a second emulator keeps calling the first.
                name = f"firebackup-api-{self.project_id}-{self.emulator_host or 'google'}"
                try:
                    self._app = firebase_admin.get_app(name)
                except ValueError:
                    self._app = firebase_admin.initialize_app(self._credential(), {"projectId": self.project_id},
                                                              name=name)
            return self._app

    def _credential(self) -> Any:
        from firebase_admin import credentials

        if self.emulator_host:
            # firebase-admin talks to the emulator with its own fake admin credential; none of ours is needed.
            return _anonymous_credential()
        # The revocation check reads the user record: the platform's identity needs firebaseauth.users.get.
        return credentials.ApplicationDefault()

    def verify(self, token: str) -> dict[str, Any]:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self.clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                self._cache.move_to_end(key)
                return dict(hit[1])
            self._cache.pop(key, None)
        claims = self.check(token)
        if self.cache_seconds > 0:
            until = now + self.cache_seconds
            exp = claims.get("exp")
            if isinstance(exp, (int, float)):
                until = min(until, now + (exp - time.time()))
            with self._lock:
                self._cache[key] = (until, dict(claims))
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return claims

    def check(self, token: str) -> dict[str, Any]:
        """Ask Firebase: signature, expiry, and whether the user is disabled or their tokens revoked."""
        from firebase_admin import auth, exceptions

        try:
            claims: dict[str, Any] = auth.verify_id_token(token, app=self._get_app(), check_revoked=True)
        except (auth.RevokedIdTokenError, auth.UserDisabledError, auth.UserNotFoundError) as e:
            raise Unauthenticated("this sign-in was revoked or the account is disabled; sign in again") from e
        except (ValueError, auth.InvalidIdTokenError, auth.ExpiredIdTokenError, auth.CertificateFetchError,
                exceptions.FirebaseError) as e:
            # A lookup Google cannot answer fails closed: the caller is not let in unchecked.
            raise Unauthenticated("invalid or expired ID token; sign in again") from e
        except GoogleAuthError as e:
            log.error("ID tokens cannot be checked for revocation: the platform's identity is missing: %s",
                      str(e).splitlines()[0] if str(e) else type(e).__name__)
            raise Unauthenticated("sign-in cannot be checked right now; try again later") from e
        return claims


def _anonymous_credential() -> Any:
    from firebase_admin import credentials
    from google.auth.credentials import AnonymousCredentials

    class Anonymous(credentials.Base):
        def get_credential(self) -> Any:
            return AnonymousCredentials()

    return Anonymous()


class OAuthClient(Protocol):
    """Google OAuth authorization-code flow: build the consent URL, exchange a code for a refresh token."""

    def authorization_url(self, state: str) -> str: ...

    def exchange(self, code: str) -> str: ...


class GoogleOAuthClient:
    """Real adapter over Google's endpoints (not exercised by local tests: needs Google)."""

    AUTH = "https://accounts.google.com/o/oauth2/v2/auth"
    TOKEN = Settings.oauth_token_uri
    SCOPES = "https://www.googleapis.com/auth/datastore https://www.googleapis.com/auth/cloud-platform"

    def __init__(self, client_id: str | None, client_secret: str | None, redirect_uri: str | None,
                 token_uri: str = TOKEN):
        self.client_id, self._secret, self.redirect_uri = client_id, client_secret, redirect_uri
        self.token_uri = token_uri

    def _require(self) -> None:
        if not (self.client_id and self._secret and self.redirect_uri):
            raise Invalid("Google OAuth is not configured; set FIREBACKUP_OAUTH_CLIENT_ID, _SECRET and _REDIRECT_URI")

    def authorization_url(self, state: str) -> str:
        from urllib.parse import urlencode

        self._require()
        q = {"client_id": self.client_id, "redirect_uri": self.redirect_uri, "response_type": "code",
             "scope": self.SCOPES, "access_type": "offline", "prompt": "consent", "state": state}
        return f"{self.AUTH}?{urlencode(q)}"

    def exchange(self, code: str) -> str:
        import requests

        self._require()
        resp = requests.post(self.token_uri, data={"code": code, "client_id": self.client_id, "client_secret": self._secret,
                                               "redirect_uri": self.redirect_uri, "grant_type": "authorization_code"},
                             timeout=30)
        if resp.status_code != 200 or "refresh_token" not in resp.json():
            raise Invalid("Google rejected the authorization code; start the connection again")
        return resp.json()["refresh_token"]


class ProjectProber(Protocol):
    """Check that credentials can read the project's Firestore; return None or a one-line problem."""

    def probe(self, gcp_project_id: str, database_id: str, auth_kind: str, credentials: bytes) -> str | None: ...


class FirestoreProber:
    """Lists one root collection id with the project's own credentials, opened as a backup opens them."""

    def __init__(self, sources: ProjectSources):
        self.sources = sources

    def probe(self, gcp_project_id: str, database_id: str, auth_kind: str, credentials: bytes) -> str | None:
        from firebackup.errors import FireBackupError
        from firebackup.firestore import protos

        try:
            conn = self.sources.firestore(gcp_project_id, database_id, auth_kind, credentials)
            try:
                request = protos.ListCollectionIdsRequest(parent=conn.documents_path, page_size=1)
                conn.list_collection_ids(request, timeout=30)
            finally:
                conn.close()
        except FireBackupError as e:  # our errors are one line and never quote a credential
            return str(e)
        return None
