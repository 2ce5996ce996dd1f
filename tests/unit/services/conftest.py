"""The services' unit tier: an in-memory SQLite session and fakes that subclass the ports (no server, no HTTP)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from firebackup.crypto.secrets import LocalMasterKey, Sealer
from firebackup.db.models import ApiToken, Base, Organization, User, UserOrganization, new_id
from firebackup.db.session import make_engine
from firebackup.errors import AccessDenied
from firebackup.runtime.queue import TaskQueue
from firebackup.services import resources
from firebackup.services.commands import AddDestination, ConnectProject
from firebackup.services.source_opener import ProjectSources
from firebackup.services.context import Ctx, Ports, Principal, Role
from firebackup.services.errors import Unauthenticated
from firebackup.services.identity import authorize, hash_token, new_api_token
from firebackup.services.ports import IdTokenVerifier, OAuthClient, ProjectProber
from firebackup.settings import Settings
from firebackup.storage.base import ObjectInfo
from firebackup.storage.memory import MemoryStorage

LOCAL_ROOT = "/tmp/firebackup-unit"
SA_KEY = {"type": "service_account", "client_email": "b@p.iam.gserviceaccount.com", "private_key": "k"}


class RecordedQueue(TaskQueue):
    """Keeps every task instead of running it, and the delay it was enqueued with."""

    def __init__(self) -> None:
        self.tasks: list[tuple[str, dict[str, Any]]] = []
        self.delays: list[float] = []

    def enqueue(self, name: str, payload: dict[str, Any], *, delay_seconds: float = 0.0) -> None:
        self.tasks.append((name, dict(payload)))
        self.delays.append(delay_seconds)


class TableVerifier(IdTokenVerifier):
    """ID tokens are keys of a table of claims; anything else is refused like a bad signature."""

    def __init__(self) -> None:
        self.claims: dict[str, dict[str, Any]] = {}

    def verify(self, token: str) -> dict[str, Any]:
        if token not in self.claims:
            raise Unauthenticated("invalid or expired ID token; sign in again")
        return dict(self.claims[token])


class EchoOAuth(OAuthClient):
    def authorization_url(self, state: str) -> str:
        return f"https://accounts.example.test/auth?state={state}"

    def exchange(self, code: str) -> str:
        return f"refresh-for-{code}"


class ReachableProber(ProjectProber):
    def probe(self, gcp_project_id: str, database_id: str, auth_kind: str, credentials: bytes) -> str | None:
        return None


class WrittenStorage(MemoryStorage):
    """A MemoryStorage that remembers every key written to it, deleted or not."""

    def __init__(self, url: str) -> None:
        super().__init__(url=url)
        self.written: list[str] = []

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> ObjectInfo:
        self.written.append(key)
        return super().put(key, data, if_absent=if_absent)


@dataclass
class Stores:
    """The storage opener port: one in-memory storage per URL, kept for the test to look at."""

    by_url: dict[str, WrittenStorage] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)
    failing: dict[str, Exception] = field(default_factory=dict)  # url -> what opening it raises
    bounded: list[bool] = field(default_factory=list)  # each open's `bounded`, in order

    def open(self, kind: str, url: str, options: Mapping[str, Any], credentials: Mapping[str, Any] | None,
             *, bounded: bool = False) -> Any:
        self.bounded.append(bounded)
        if url in self.refused:
            raise AccessDenied(f"access denied on {url}; check the credentials")
        if url in self.failing:
            raise self.failing[url]
        return self.by_url.setdefault(url, WrittenStorage(url))


@pytest.fixture
def session() -> Iterator[Session]:
    """A session on a fresh in-memory SQLite database (foreign keys on, as in production)."""
    engine = make_engine("sqlite://", poolclass=sa.pool.StaticPool)
    Base.metadata.create_all(engine)
    with Session(engine, expire_on_commit=False) as s:
        yield s
    engine.dispose()


@pytest.fixture
def queue() -> RecordedQueue:
    return RecordedQueue()


@pytest.fixture
def verifier() -> TableVerifier:
    return TableVerifier()


@pytest.fixture
def settings() -> Settings:
    return Settings(master_key=b"k" * 32, allow_local_storage=True, local_storage_root=LOCAL_ROOT)


@pytest.fixture
def stores() -> Stores:
    return Stores()


@pytest.fixture
def ports(settings: Settings, queue: RecordedQueue, verifier: TableVerifier, stores: Stores) -> Ports:
    return Ports(settings=settings, sealer=Sealer(LocalMasterKey(b"k" * 32)), queue=queue, verifier=verifier,
                 oauth=EchoOAuth(), prober=ReachableProber(), open_storage=stores.open,
                 sources=ProjectSources())  # never called by these services; it opens nothing when built


@dataclass
class Org:
    """An organization with one user per role, a connected project and a local destination."""

    id: str
    users: dict[Role, str]
    project_id: str
    destination_id: str


@dataclass
class World:
    session: Session
    ports: Ports

    def ctx_as(self, user_id: str | None, org_id: str | None = None, minimum: Role = Role.viewer) -> Ctx:
        """A Ctx for that user (None: the system), authorized in `org_id` like the API would."""
        ctx = Ctx(self.session, self.ports, Principal("user", user_id=user_id) if user_id else None)
        if org_id is not None and user_id is not None:
            authorize(ctx, org_id, minimum)
        return ctx

    def system(self) -> Ctx:
        return Ctx(self.session, self.ports)

    def user(self, email: str | None = None, firebase_uid: str | None = None) -> str:
        u = User(email=email, firebase_uid=firebase_uid)
        self.session.add(u)
        self.session.flush()
        return u.id

    def token(self, org_id: str, role: Role) -> str:
        """A token made by a new member of `role` (a token acts for its creator, within their role)."""
        holder = self.user()
        self.session.add(UserOrganization(user_id=holder, org_id=org_id, role=role.name))
        tok = new_api_token()
        self.session.add(ApiToken(org_id=org_id, name="t", role=role.name, token_hash=hash_token(tok), prefix=tok[:10],
                                  created_by=holder))
        self.session.flush()
        return tok

    def org(self, name: str = "Acme") -> Org:
        org = Organization(id=new_id("org"), name=name)
        self.session.add(org)
        self.session.flush()
        users = {}
        for role in Role:
            users[role] = self.user(f"{role.name}-{org.id}@example.com")
            self.session.add(UserOrganization(user_id=users[role], org_id=org.id, role=role.name))
        self.session.flush()
        admin = self.ctx_as(users[Role.admin], org.id, Role.admin)
        project = resources.connect_project(admin, org.id, ConnectProject(
            name="prod", gcp_project_id=f"p-{org.id[-8:]}", service_account_key=SA_KEY))
        dest = resources.create_destination(admin, org.id, AddDestination(
            name="here", kind="local", url=f"file://{LOCAL_ROOT}/{org.id}"))
        return Org(org.id, users, project.id, dest.id)


@pytest.fixture
def world(session: Session, ports: Ports) -> World:
    return World(session, ports)
