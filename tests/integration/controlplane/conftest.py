"""The control plane's tests: the API over a real database (db_url and engine: tests/integration/conftest.py)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from firebackup.db.session import make_engine
from tests.integration.conftest import postgres_database


# --- the API over a real database, the Auth emulator for ID tokens ------------------------------------

import json as _json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

import requests

from firebackup.bootstrap import api_app as build_app
from firebackup.crypto.secrets import LocalMasterKey, Sealer
from firebackup.db.session import make_session_factory
from firebackup.services.ports import RecordingQueue
from firebackup.settings import Settings

AUTH_PROJECT = "demo-firebackup"
ROLES = ("owner", "admin", "member", "viewer")


class FakeGoogleOAuth:
    """Stands in for Google's OAuth endpoints (unreachable here); subclasses nothing but honours the port."""

    def __init__(self, refresh_token: str = "1//fake-refresh-token-for-tests-0123456789"):
        self.refresh_token = refresh_token
        self.codes: list[str] = []

    def authorization_url(self, state: str) -> str:
        return f"https://accounts.example.test/o/oauth2/auth?state={state}"

    def exchange(self, code: str) -> str:
        self.codes.append(code)
        return self.refresh_token


class FakeFirestoreProber:
    """Stands in for a real Firestore project (GCP is unreachable here); records what it was given."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, bytes]] = []

    def probe(self, gcp_project_id: str, database_id: str, auth_kind: str, credentials: bytes) -> str | None:
        self.seen.append((gcp_project_id, database_id, auth_kind, credentials))
        return None


@pytest.fixture(scope="session")
def firebase_users(auth_emulator) -> Iterator[Any]:
    """signUp / signIn against the Auth emulator; returns get(email) -> real ID token."""
    host = auth_emulator.env["FIREBASE_AUTH_EMULATOR_HOST"]
    mp = pytest.MonkeyPatch()
    mp.setenv("FIREBASE_AUTH_EMULATOR_HOST", host)
    cache: dict[str, str] = {}
    base = f"http://{host}/identitytoolkit.googleapis.com/v1/accounts"

    def get(email: str) -> str:
        if email not in cache:
            body = {"email": email, "password": "pw-" + email, "returnSecureToken": True}
            r = requests.post(f"{base}:signUp?key=fake-api-key", json=body, timeout=30)
            if r.status_code != 200:
                r = requests.post(f"{base}:signInWithPassword?key=fake-api-key", json=body, timeout=30)
            r.raise_for_status()
            cache[email] = r.json()["idToken"]
        return cache[email]

    yield get
    mp.undo()


@dataclass
class Harness:
    app: Any
    factory: Any
    sealer: Sealer
    queue: RecordingQueue
    oauth: FakeGoogleOAuth
    prober: FakeFirestoreProber
    tokens: Any
    master_key: bytes = field(default=b"", repr=False)
    responses: list = field(default_factory=list)

    def call(self, method: str, path: str, token: str | None = None, *, json: Any = None, **kw: Any) -> Any:
        headers = dict(kw.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        client = self.app.test_client()
        resp = client.open(path, method=method, json=json, headers=headers, **kw)
        self.responses.append(resp.get_data())
        return resp

    def user_token(self, email: str) -> str:
        return self.tokens(email)

    def session(self):
        return self.factory()


def make_harness(engine: sa.Engine, firebase_users: Any, tmp: Any, *, trust_emulator_tokens: bool = True,
                 **settings_: Any) -> Harness:
    key = os.urandom(32)
    # The Auth emulator verifies no e-mail address; invitations by e-mail work here only because these
    # settings say to trust its addresses (as a developer's local stack would). Likewise local folders
    # (under the temp folder the worlds' destinations are made in) and moto on 127.0.0.1 over http.
    settings = Settings(database_url=str(engine.url), master_key=key, firebase_project_id=AUTH_PROJECT,
                        allow_local_storage=True, local_storage_root=tempfile.gettempdir(),
                        allow_private_egress=True, trust_emulator_tokens=trust_emulator_tokens, **settings_)
    sealer = Sealer(LocalMasterKey(key))
    queue, oauth, prober = RecordingQueue(), FakeGoogleOAuth(), FakeFirestoreProber()
    app = build_app(settings, engine=engine, sealer=sealer, queue=queue, oauth=oauth, prober=prober)
    return Harness(app, make_session_factory(engine), sealer, queue, oauth, prober, firebase_users, key)


@pytest.fixture
def api(engine: sa.Engine, tmp_path) -> Harness:
    """The API on a fresh database; API tokens only (no Auth emulator)."""
    return make_harness(engine, None, tmp_path)


@pytest.fixture
def harness(api: Harness, firebase_users: Any) -> Harness:
    """The API on a fresh database, with real Firebase ID tokens from the Auth emulator."""
    api.tokens = firebase_users
    return api


@pytest.fixture
def untrusting_harness(engine: sa.Engine, firebase_users: Any, tmp_path) -> Harness:
    """As `harness`, with the settings' default: the Auth emulator's unverified addresses are not trusted."""
    return make_harness(engine, firebase_users, tmp_path, trust_emulator_tokens=False)


def _unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}@example.com"


@pytest.fixture
def emails() -> dict[str, str]:
    """Fresh email per role, so tests sharing the emulator never share users."""
    return {r: _unique(r) for r in (*ROLES, "outsider")}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_engine(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[sa.Engine]:
    """One migrated database per engine for a whole module (the matrix and fuzz tests share it)."""
    from firebackup.db.migrate import upgrade

    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path_factory.mktemp('db') / 'firebackup.db'}")
        upgrade(eng)
        yield eng
        eng.dispose()
        return
    with postgres_database(request.getfixturevalue("postgres_server").url, "m") as url:
        eng = make_engine(url)
        upgrade(eng)
        yield eng
        eng.dispose()


@pytest.fixture(scope="module")
def module_api(module_engine: sa.Engine, tmp_path_factory) -> Harness:
    """The API on the module's database, for callers that use API tokens only (no Auth emulator)."""
    return make_harness(module_engine, None, tmp_path_factory.mktemp("h"))


@pytest.fixture(scope="module")
def module_harness(module_api: Harness, firebase_users: Any) -> Harness:
    module_api.tokens = firebase_users
    return module_api
