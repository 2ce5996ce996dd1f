"""Open a connected project's Firestore and Auth with its own (unsealed) credentials, in memory only.

Beside storage_opener.py: the control plane never reads a tenant's data with the platform's own
identity. On the emulators (development and tests, chosen by Settings) no credentials are used.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from firebackup.engine.sources import FirebaseAuthUsers
from firebackup.errors import AccessDenied
from firebackup.firestore.grpc import SCOPES, FirestoreConnection, open_firestore

_OAUTH_TOKEN_URI = "https://oauth2.googleapis.com/token"


class ProjectSources:
    """Firestore connections and Auth adapters for connected projects."""

    def __init__(self, *, firestore_emulator_host: str | None = None, auth_emulator_host: str | None = None,
                 oauth_client_id: str | None = None, oauth_client_secret: str | None = None):
        self.firestore_emulator_host = firestore_emulator_host
        self.auth_emulator_host = auth_emulator_host
        # google-auth refreshes a user's token only with the OAuth client that obtained it.
        self._client = (oauth_client_id, oauth_client_secret)
        self._apps: dict[str, Any] = {}
        self._lock = threading.Lock()

    def firestore(self, gcp_project_id: str, database: str, auth_kind: str, secret: bytes) -> FirestoreConnection:
        if self.firestore_emulator_host:
            return open_firestore(gcp_project_id, database, emulator_host=self.firestore_emulator_host)
        return open_firestore(gcp_project_id, database, credentials=self._credentials(gcp_project_id, auth_kind,
                                                                                      secret))

    def auth(self, gcp_project_id: str, auth_kind: str, secret: bytes) -> FirebaseAuthUsers:
        if self.auth_emulator_host:
            return FirebaseAuthUsers(emulator_host=self.auth_emulator_host)
        return FirebaseAuthUsers(self._app(gcp_project_id, auth_kind, secret))

    def _app(self, gcp_project_id: str, auth_kind: str, secret: bytes) -> Any:
        """A firebase_admin app per project and credentials (apps are process-wide and named)."""
        import hashlib

        import firebase_admin
        from firebase_admin import credentials

        name = f"firebackup-tenant-{gcp_project_id}-{hashlib.sha256(secret).hexdigest()[:16]}"
        with self._lock:
            if name not in self._apps:
                info = json.loads(secret) if auth_kind == "service_account" else None
                cred = (credentials.Certificate(info) if info is not None else credentials.RefreshToken(
                    {"type": "authorized_user", "refresh_token": secret.decode(), "client_id": self._client[0],
                     "client_secret": self._client[1]}))
                self._apps[name] = firebase_admin.initialize_app(cred, {"projectId": gcp_project_id}, name=name)
            return self._apps[name]

    def _credentials(self, gcp_project_id: str, auth_kind: str, secret: bytes) -> Any:
        if auth_kind == "service_account":
            from google.oauth2 import service_account

            try:
                return service_account.Credentials.from_service_account_info(json.loads(secret), scopes=list(SCOPES))
            except ValueError:  # the message could quote the key: say only what to do
                raise AccessDenied(f"the service-account key of project {gcp_project_id} was rejected; "
                                   "reconnect the project with a valid key") from None
        from google.oauth2.credentials import Credentials

        client_id, client_secret = self._client
        return Credentials(None, refresh_token=secret.decode(), token_uri=_OAUTH_TOKEN_URI, scopes=list(SCOPES),
                           client_id=client_id, client_secret=client_secret)
