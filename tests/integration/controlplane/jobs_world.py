"""Helpers for tests that run control-plane jobs: seeded data, an organization driven through the API,
settings, and a drain loop that plays the task queue."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from firebackup.bootstrap import api_app
from firebackup.crypto.secrets import LocalMasterKey, Sealer
from firebackup.db.models import Backup, JobTask, Organization, new_id
from firebackup.db.session import make_session_factory
from firebackup.engine.repository import Repository
from firebackup.firestore.documents import document_name
from firebackup.services.source_opener import ProjectSources
from firebackup.services.storage_opener import DestinationStorageOpener
from firebackup.storage.base import ObjectInfo, ObjectWriter, Storage
from firebackup.services.ports import RecordingQueue
from firebackup.services.workers import Workers
from firebackup.settings import Settings
from tests.integration.controlplane.conftest import FakeFirestoreProber, FakeGoogleOAuth
from tests.integration.controlplane.world import SA_KEY, seed_token


def seed(project: str) -> int:
    """Two root collections and a subcollection, written with the client library (not the code under test)."""
    from google.cloud import firestore

    client = firestore.Client(project=project)
    batch = client.batch()
    n = 0
    for i in range(25):
        batch.set(client.collection("users").document(f"u{i:03d}"), {"n": i, "name": f"user {i}"})
        n += 1
    for i in range(10):
        batch.set(client.collection("orders").document(f"o{i:03d}"), {"total": i * 1.5})
        batch.set(client.collection("orders").document(f"o{i:03d}").collection("lines").document("l1"), {"q": i})
        n += 2
    batch.commit()
    client.close()
    return n


class Org:
    def __init__(self, app, factory, token: str, org_id: str, tmp: Path):
        self.app, self.factory, self.token, self.id, self.tmp = app, factory, token, org_id, tmp
        self.queue = app.extensions["firebackup_queue"]

    def call(self, method: str, path: str, body=None):
        return self.app.test_client().open(f"/v1/orgs/{self.id}{path}", method=method, json=body,
                                           headers={"Authorization": f"Bearer {self.token}"})

    def ok(self, method: str, path: str, body=None, status: int = 200) -> dict:
        r = self.call(method, path, body)
        assert r.status_code == status, r.get_data(as_text=True)
        return r.get_json() if r.status_code != 204 else {}

    def project(self, gcp_project_id: str) -> str:
        return self.ok("POST", "/projects", {"name": gcp_project_id, "gcp_project_id": gcp_project_id,
                                             "service_account_key": SA_KEY}, 201)["id"]

    def destination(self, folder: Path) -> str:
        return self.ok("POST", "/destinations", {"name": folder.name, "kind": "local", "url": folder.as_uri()}, 201)["id"]

    def run(self) -> None:
        """Wait for every task the API enqueued (and their follow-ups) to finish."""
        self.queue.join()


def make_org(app, factory, tmp: Path) -> Org:
    with factory() as s, s.begin():
        org = Organization(id=new_id("org"), name="Acme")
        s.add(org)
        s.flush()
        tok = seed_token(s, org.id)
    return Org(app, factory, tok, org.id, tmp)


def settings_for(engine: sa.Engine, key: bytes, **kw) -> Settings:
    """The test's settings; the Firestore emulator is the one the fixture started (None: real Firestore)."""
    kw.setdefault("firestore_emulator_host", os.environ.get("FIRESTORE_EMULATOR_HOST"))
    return Settings(database_url=str(engine.url), master_key=key, allow_local_storage=True,
                    local_storage_root=tempfile.gettempdir(), **kw)


def drain(queue: RecordingQueue, workers: Workers) -> list[str]:
    """Run every recorded task and its follow-ups, as a worker fed by the queue would; return their names."""
    handlers, ran = workers.handlers(), []
    while queue.tasks:
        name, payload = queue.tasks.pop(0)
        handlers[name](payload)
        ran.append(name)
    return ran


LEASE = 600.0


class Killed(BaseException):
    """The function instance died (killed at its timeout, out of memory): no handler code runs after this."""


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


class _Writer:
    """An object writer that lets the test stop or kill the upload before it commits."""

    def __init__(self, inner: ObjectWriter, on_close: Any) -> None:
        self._inner, self._on_close = inner, on_close

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def write(self, data: bytes) -> int:
        return self._inner.write(data)

    def close(self) -> ObjectInfo:
        self._on_close()
        return self._inner.close()

    def abort(self) -> None:
        self._inner.abort()


class Watched:
    """A Storage that counts chunk uploads and runs the test's hook before one commits."""

    def __init__(self, inner: Storage, world: "World") -> None:
        self._inner, self._world = inner, world

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def open_write(self, key: str, *, if_absent: bool = False) -> ObjectWriter:
        writer = self._inner.open_write(key, if_absent=if_absent)
        name = key.rsplit("/", 1)[-1]
        with self._world.lock:
            self._world.uploads[name] = self._world.uploads.get(name, 0) + 1
        return _Writer(writer, lambda: self._world.before_commit(name))  # type: ignore[return-value]


class World:
    """One organization's API and workers with a hookable destination, a test-driven queue and clock."""

    def __init__(self, engine: sa.Engine, tmp: Path, *, sources: ProjectSources | None = None,
                 chunk_docs: int = 5, chunks_per_task: int = 1) -> None:
        key = os.urandom(32)
        self.clock, self.queue, self.lock = Clock(), RecordingQueue(), threading.Lock()
        self.uploads: dict[str, int] = {}
        self.hooks: dict[str, Any] = {}
        settings = settings_for(engine, key, queue="recording", chunk_docs=chunk_docs, chunks_per_task=chunks_per_task,
                                lease_seconds=LEASE)
        self.opener = opener = DestinationStorageOpener.from_settings(settings)
        ports: dict[str, Any] = dict(sealer=Sealer(LocalMasterKey(key)), queue=self.queue, oauth=FakeGoogleOAuth(),
                                     prober=FakeFirestoreProber(),
                                     open_storage=lambda *a, **kw: Watched(opener(*a, **kw), self))
        if sources is not None:
            ports["sources"] = sources
        app = api_app(settings, engine=engine, **ports)
        plane = app.extensions["firebackup_control_plane"]
        self.org: Org = make_org(app, make_session_factory(engine), tmp)
        self.workers = Workers(plane.factory, plane.ports, clock=self.clock)
        self.handlers = self.workers.handlers()
        self.lost: list[tuple[str, dict]] = []

    def before_commit(self, chunk_object: str) -> None:
        hook = self.hooks.pop(chunk_object, None)
        if hook is not None:
            hook()

    def start(self, project_id: str) -> str:
        pid, did = self.org.project(project_id), self.org.destination(self.org.tmp / "loc")
        return self.org.ok("POST", "/backups", {"project_id": pid, "destination_id": did}, 202)["id"]

    def drain(self) -> list[str]:
        """Deliver every queued task; a killed one is lost (not acknowledged) until the test redelivers it."""
        ran = []
        while self.queue.tasks:
            name, payload = self.queue.tasks.pop(0)
            try:
                self.handlers[name](payload)
            except Killed:
                self.lost.append((name, payload))
            ran.append(name)
        return ran

    def task(self, name: str, chunk_id: str) -> dict:
        """The queued payload of the chunk task whose first chunk is chunk_id (running the queue up to it)."""
        while True:
            for i, (n, payload) in enumerate(self.queue.tasks):
                if n == name and payload.get("task", {}) and _first_chunk(payload) == chunk_id:
                    return self.queue.tasks.pop(i)[1]
            queued, payload = self.queue.tasks.pop(0)
            self.handlers[queued](payload)

    def row(self, backup_id: str) -> Backup:
        with self.org.factory() as s:
            return s.get(Backup, backup_id)

    def attempts(self, backup_id: str, task_key: str) -> int:
        with self.org.factory() as s:
            return s.scalar(sa.select(JobTask.attempts).where(JobTask.job_id == backup_id,
                                                              JobTask.task_key == task_key))

    def backed_up_names(self, backup_id: str) -> list[str]:
        """Every document name in the completed backup, read back and decrypted with the org's key."""
        row = self.row(backup_id)
        repo = Repository(self.opener("local", (self.org.tmp / "loc").as_uri(), {}, None))
        manifest, data_key = repo.read_manifest(row.repo_backup_id, self.workers.kek(row.org_id))
        return [document_name(rec) for e in manifest.chunks for rec in repo.iter_records(row.repo_backup_id, e,
                                                                                         data_key)]

    def objects(self, backup_id: str) -> list[str]:
        base = self.org.tmp / "loc" / "backups" / (self.row(backup_id).repo_backup_id or "none")
        return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()) if base.exists() else []


def _first_chunk(payload: dict) -> str:
    t = payload["task"]
    return f"d{t['partition']:05d}-{t['seq']:05d}"
