"""Open a connected project's Firestore and Auth with its own (unsealed) credentials, in memory only.

Beside storage_opener.py: the control plane never reads a tenant's data with the platform's own
identity. On the emulators (development and tests, chosen by Settings) no credentials are used,
unless Settings say to send them to the Firestore emulator (tests of the credentials path).

A project connected through Google OAuth holds a user's refresh token. Google exchanges it for
access tokens only together with the OAuth client that obtained it (client id and secret, from
Settings) and only for scopes the user consented to (GoogleOAuthClient.SCOPES): Firestore asks
for datastore, Auth for cloud-platform. Credentials are kept per project and token, so tasks in
one process share an access token until it expires.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

from firebackup.engine.sources import FirebaseAuthUsers
from firebackup.errors import AccessDenied, SourceAccessDenied, SourceUnavailable
from firebackup.firestore.grpc import SCOPES, FirestoreConnection, open_firestore
from firebackup.settings import Settings

AUTH_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


class ProjectSources:
    """Firestore connections and Auth adapters for connected projects."""

    def __init__(self, *, firestore_emulator_host: str | None = None, auth_emulator_host: str | None = None,
                 oauth_client_id: str | None = None, oauth_client_secret: str | None = None,
                 oauth_token_uri: str = Settings.oauth_token_uri, firestore_emulator_credentials: bool = False):
        self.firestore_emulator_host = firestore_emulator_host
        self.auth_emulator_host = auth_emulator_host
        self.firestore_emulator_credentials = firestore_emulator_credentials
        self._client = (oauth_client_id, oauth_client_secret)
        self._token_uri = oauth_token_uri
        self._apps: dict[str, Any] = {}
        self._user_credentials: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    @property
    def needs_credentials(self) -> bool:
        """Whether firestore() uses the project's credentials (not on the emulator, unless told to)."""
        return not self.firestore_emulator_host or self.firestore_emulator_credentials

    def firestore(self, gcp_project_id: str, database: str, auth_kind: str, secret: bytes) -> FirestoreConnection:
        if not self.needs_credentials:
            return open_firestore(gcp_project_id, database, emulator_host=self.firestore_emulator_host)
        if auth_kind == "service_account":
            credentials = self._service_account(gcp_project_id, secret)
        else:
            credentials = self._fresh(gcp_project_id, self._user(gcp_project_id, secret, SCOPES))
        return open_firestore(gcp_project_id, database, emulator_host=self.firestore_emulator_host,
                              credentials=credentials)

    def auth(self, gcp_project_id: str, auth_kind: str, secret: bytes) -> FirebaseAuthUsers:
        # firebase_admin sends its own emulator credential to the Auth emulator, never the project's.
        if self.auth_emulator_host:
            return FirebaseAuthUsers(emulator_host=self.auth_emulator_host)
        return FirebaseAuthUsers(self._app(gcp_project_id, auth_kind, secret))

    def _app(self, gcp_project_id: str, auth_kind: str, secret: bytes) -> Any:
        """A firebase_admin app per project and credentials (apps are process-wide and named)."""
        import firebase_admin
        from firebase_admin import credentials

        name = f"firebackup-tenant-{gcp_project_id}-{hashlib.sha256(secret).hexdigest()[:16]}"
        with self._lock:
            app = self._apps.get(name)
        if app is None:
            if auth_kind == "service_account":
                cred: Any = credentials.Certificate(json.loads(secret))
            else:
                # Not firebase_admin's RefreshToken: it always refreshes at Google's endpoint, for
                # firebase_admin's own scopes, which a user's consent does not cover.
                cred = _firebase_credential(self._user(gcp_project_id, secret, AUTH_SCOPES))
            with self._lock:
                if name not in self._apps:
                    self._apps[name] = firebase_admin.initialize_app(cred, {"projectId": gcp_project_id}, name=name)
                app = self._apps[name]
        return app

    def _service_account(self, gcp_project_id: str, secret: bytes) -> Any:
        from google.oauth2 import service_account

        try:
            return service_account.Credentials.from_service_account_info(json.loads(secret), scopes=list(SCOPES))
        except ValueError:  # the message could quote the key: say only what to do
            raise AccessDenied(f"the service-account key of project {gcp_project_id} was rejected; "
                               "reconnect the project with a valid key") from None

    def _user(self, gcp_project_id: str, secret: bytes, scopes: tuple[str, ...]) -> Any:
        """The OAuth user's credentials for `scopes`, shared by every connection of this process."""
        from google.oauth2.credentials import Credentials

        client_id, client_secret = self._client
        if not (client_id and client_secret):
            raise SourceAccessDenied(f"project {gcp_project_id} is connected through Google OAuth, which needs the "
                                     "OAuth client; set FIREBACKUP_OAUTH_CLIENT_ID and FIREBACKUP_OAUTH_CLIENT_SECRET")
        key = (hashlib.sha256(secret).hexdigest(), " ".join(scopes))
        with self._lock:
            if key not in self._user_credentials:
                self._user_credentials[key] = Credentials(
                    None, refresh_token=secret.decode(), token_uri=self._token_uri, scopes=list(scopes),
                    client_id=client_id, client_secret=client_secret)
            return self._user_credentials[key]

    def _fresh(self, gcp_project_id: str, credentials: Any) -> Any:
        """Refresh now if needed, so a refused token fails here in one line, not as a gRPC error later."""
        import google.auth.exceptions
        import google.auth.transport.requests

        if credentials.valid:
            return credentials
        try:
            credentials.refresh(google.auth.transport.requests.Request())
        except google.auth.exceptions.TransportError:
            raise SourceUnavailable(f"cannot reach Google's token endpoint to refresh project {gcp_project_id}'s "
                                    "OAuth token; retry later") from None
        except google.auth.exceptions.RefreshError as e:
            raise SourceAccessDenied(f"Google refused project {gcp_project_id}'s OAuth token ({_reason(e)}); "
                                     "reconnect the project through Google OAuth") from None
        return credentials


def _firebase_credential(credentials: Any) -> Any:
    """A firebase_admin credential over google-auth credentials (its Base refreshes them when asked)."""
    from firebase_admin.credentials import Base

    class UserCredential(Base):
        def get_credential(self) -> Any:
            return credentials

    return UserCredential()


def _reason(e: Exception) -> str:
    """The OAuth error code of a refused refresh (invalid_grant, invalid_client...), never the token."""
    detail = e.args[1] if len(e.args) > 1 and isinstance(e.args[1], dict) else {}
    return str(detail.get("error") or "refused")[:40]
