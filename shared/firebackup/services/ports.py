"""Ports the control plane talks through; real adapters are built lazily, fakes subclass these in tests."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Protocol

from firebackup.services.errors import Invalid, Unauthenticated
from firebackup.settings import Settings

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

    def verify(self, token: str) -> dict: ...


class FirebaseIdTokenVerifier:
    """firebase-admin verification; honours FIREBASE_AUTH_EMULATOR_HOST (the emulator's unsigned tokens)."""

    def __init__(self, project_id: str):
        self.project_id = project_id
        self._app: Any = None
        self._lock = threading.Lock()

    def _get_app(self) -> Any:
        with self._lock:
            if self._app is None:
                import firebase_admin

                name = f"firebackup-api-{self.project_id}"
                try:
                    self._app = firebase_admin.get_app(name)
                except ValueError:
                    # Verifying ID tokens needs only Google's public certificates, not a service account.
                    self._app = firebase_admin.initialize_app(_anonymous_credential(), {"projectId": self.project_id},
                                                              name=name)
            return self._app

    def verify(self, token: str) -> dict:
        from firebase_admin import auth

        try:
            claims = auth.verify_id_token(token, app=self._get_app())
        except (ValueError, auth.InvalidIdTokenError, auth.ExpiredIdTokenError, auth.RevokedIdTokenError,
                auth.CertificateFetchError, auth.UserDisabledError) as e:
            raise Unauthenticated("invalid or expired ID token; sign in again") from e
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
