"""FireBackup deployed the cloud way on one machine: the API in this process enqueues through
CloudTasksQueue into the Cloud Tasks emulator, which delivers each task over HTTP to the
backup_worker and restore_worker functions (functions-framework, two processes each) sharing a
PostgreSQL database and the Firestore emulator with the API."""

from __future__ import annotations

import base64
import os
import re
import secrets
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import psutil
import sqlalchemy as sa
from flask import Flask

from firebackup.db.models import AuditLog, Backup, JobTask
from firebackup.engine.repository import Repository
from firebackup.firestore.documents import document_name
from firebackup.runtime.cloud_tasks import CloudTasksQueue
from firebackup.settings import Settings, TaskQueueConfig
from firebackup.storage import Storage
from infra.local import stack
from tests.integration.controlplane.jobs_world import Org

SECRET = "integration-worker-secret-0123456789"
CHUNK_DOCS = 5
LEASE_SECONDS = 3  # a killed instance's tasks are taken over after this
DONE = ("completed", "failed", "cancelled")
# Small backoffs keep redeliveries quick; enough attempts that only the tests' faults end a task.
TEST_QUEUE = dict(max_dispatches_per_second=100.0, max_concurrent_dispatches=8, max_attempts=30, min_backoff=0.1,
                  max_backoff=1.0)


def worker_settings(*, tag: str, database_url: str, master_key: bytes, tasks_host: str, firestore_host: str,
                    folder: Path, backup_url: str, restore_url: str) -> Settings:
    """The settings every process of the platform shares (the workers get them as their environment):
    local destinations under `folder`, S3 on 127.0.0.1 (moto) let through the egress guard."""
    return Settings(
        database_url=database_url, master_key=master_key, allow_local_storage=True, local_storage_root=str(folder),
        allow_private_egress=True, queue="cloudtasks",
        tasks_project=f"tasks-{tag}", tasks_location="local",
        backup_tasks=TaskQueueConfig(f"backup-{tag}", **TEST_QUEUE),  # type: ignore[arg-type]
        restore_tasks=TaskQueueConfig(f"restore-{tag}", **TEST_QUEUE),  # type: ignore[arg-type]
        webhook_tasks=TaskQueueConfig(f"webhooks-{tag}", **TEST_QUEUE),  # type: ignore[arg-type]
        backup_worker_url=backup_url, restore_worker_url=restore_url, worker_secret=SECRET,
        tasks_emulator_host=tasks_host, firestore_emulator_host=firestore_host, chunk_docs=CHUNK_DOCS,
        lease_seconds=float(LEASE_SECONDS))


def worker_environment(s: Settings) -> dict[str, str]:
    """The same settings as FIREBACKUP_* variables (what a deployment sets on each function)."""
    assert s.master_key is not None and s.worker_secret is not None and s.allow_private_egress
    limits = "rate={max_dispatches_per_second},concurrent={max_concurrent_dispatches},attempts={max_attempts}," \
             "min_backoff={min_backoff},max_backoff={max_backoff}"
    env = {
        "FIREBACKUP_DATABASE_URL": s.database_url, "FIREBACKUP_MASTER_KEY": base64.b64encode(s.master_key).decode(),
        "FIREBACKUP_ALLOW_LOCAL_STORAGE": "1", "FIREBACKUP_LOCAL_STORAGE_ROOT": s.local_storage_root or "",
        "FIREBACKUP_ALLOW_PRIVATE_EGRESS": "1", "FIREBACKUP_QUEUE": "cloudtasks",
        "FIREBACKUP_TASKS_PROJECT": s.tasks_project or "", "FIREBACKUP_TASKS_LOCATION": s.tasks_location,
        "FIREBACKUP_BACKUP_WORKER_URL": s.backup_worker_url or "",
        "FIREBACKUP_RESTORE_WORKER_URL": s.restore_worker_url or "",
        "FIREBACKUP_WORKER_SECRET": s.worker_secret, "FIREBACKUP_TASKS_EMULATOR_HOST": s.tasks_emulator_host or "",
        "FIRESTORE_EMULATOR_HOST": s.firestore_emulator_host or "", "FIREBACKUP_CHUNK_DOCS": str(s.chunk_docs),
        "FIREBACKUP_LEASE_SECONDS": str(int(s.lease_seconds)),
    }
    for kind, config in (("BACKUP", s.backup_tasks), ("RESTORE", s.restore_tasks), ("WEBHOOK", s.webhook_tasks)):
        env[f"FIREBACKUP_TASKS_{kind}_QUEUE"] = config.name
        env[f"FIREBACKUP_TASKS_{kind}_LIMITS"] = limits.format(**config.__dict__)
    return env


@dataclass(frozen=True)
class Dispatch:
    """One attempt the tasks emulator made: task id, attempt number, the worker's HTTP status."""

    task: str
    attempt: int
    status: int


@dataclass
class Platform:
    settings: Settings
    app: Flask
    org: Org
    tasks: stack.Service
    backup_worker: stack.Service
    restore_worker: stack.Service
    postgres_port: int

    @property
    def queue(self) -> CloudTasksQueue:
        """The API's CloudTasksQueue (inside its after-commit wrapper)."""
        inner = self.app.extensions["firebackup_queue"].inner
        assert isinstance(inner, CloudTasksQueue)
        return inner

    def wait(self, what: str, job_id: str, timeout: float = 120) -> dict[str, Any]:
        """The job once it has ended (`what`: backups or restores)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.org.ok("GET", f"/{what}/{job_id}")
            if got["state"] in DONE:
                return got
            assert time.monotonic() < deadline, (f"{what} {job_id} still {got['state']}; tasks "
                                                 f"{self.task_attempts(job_id)}; sent {self.dispatches(job_id)}")
            time.sleep(0.2)

    def wait_idle(self, timeout: float = 60) -> None:
        """Until no queue holds a task (one being sent counts: a task ends only with a 2xx or its last attempt)."""
        client, deadline = self.queue.client(), time.monotonic() + timeout
        while any(list(client.list_tasks(parent=self.queue.target.queue_path(k))) for k in self.queue.target.queues):
            assert time.monotonic() < deadline, "the task queues did not drain"
            time.sleep(0.2)

    def dispatches(self, job_id: str | None = None, task: str | None = None) -> list[Dispatch]:
        """Every attempt the emulator logged, for one job's tasks (and one task name) if given."""
        assert self.tasks.workdir is not None
        text = Path(self.tasks.workdir, "tasks-emulator.log").read_text(errors="replace")
        found = [Dispatch(m[1], int(m[2]), int(m[3]))
                 for m in re.finditer(r"^dispatched (\S+) attempt=(\d+) status=(\d+)$", text, re.M)]
        if task is not None:
            found = [d for d in found if f"-{task.replace('.', '-')}-" in d.task]
        return [d for d in found if job_id is None or d.task.endswith(f"-{job_id}")]

    def worker_pids(self, worker: stack.Service) -> list[int]:
        """The function's worker processes (gunicorn's children: one instance each)."""
        assert worker.process is not None
        return [p.pid for p in psutil.Process(worker.process.pid).children()]

    def pids_that_used_the_database(self, worker: stack.Service) -> set[int]:
        """Worker processes holding a connection to PostgreSQL: those that ran at least one task."""
        used = set()
        for pid in self.worker_pids(worker):
            conns = psutil.Process(pid).net_connections(kind="tcp")
            if any(c.raddr and c.raddr.port == self.postgres_port for c in conns):
                used.add(pid)
        return used

    def backed_up_names(self, backup_id: str, storage: Storage) -> list[str]:
        """Every document name in a completed backup, read back and decrypted with the org's key."""
        with self.org.factory() as s:
            row = s.get(Backup, backup_id)
            assert row is not None and row.repo_backup_id is not None
        kek = self.app.extensions["firebackup_control_plane"].workers.kek(row.org_id)
        repo = Repository(storage)
        manifest, data_key = repo.read_manifest(row.repo_backup_id, kek)
        return [document_name(rec) for e in manifest.chunks for rec in repo.iter_records(row.repo_backup_id, e,
                                                                                         data_key)]

    def audits(self, resource_id: str, action: str) -> int:
        with self.org.factory() as s:
            return s.scalar(sa.select(sa.func.count()).select_from(AuditLog).where(
                AuditLog.resource_id == resource_id, AuditLog.action == action)) or 0

    def task_attempts(self, job_id: str) -> dict[str, int]:
        with self.org.factory() as s:
            return dict(s.execute(sa.select(JobTask.task_key, JobTask.attempts)
                                  .where(JobTask.job_id == job_id)).tuples().all())


def start_workers(settings_for: Callable[[str, str], Settings]) -> tuple[Settings, stack.Service, stack.Service]:
    """Both worker functions, two processes each, on ports chosen first: each must know the other's URL."""
    backup_port, restore_port = stack.free_port(), stack.free_port()
    settings = settings_for(f"http://{stack.HOST}:{backup_port}/", f"http://{stack.HOST}:{restore_port}/")
    env = worker_environment(settings)
    backup = stack.start_function("backup_worker", env, processes=2, port=backup_port)
    try:
        restore = stack.start_function("restore_worker", env, processes=2, port=restore_port)
    except BaseException:
        backup.stop()
        raise
    return settings, backup, restore


def new_tag() -> str:
    return secrets.token_hex(4)


def seed_collections(project: str) -> dict[str, dict[str, Any]]:
    """Three root collections (one with a subcollection), written with the client library; returns
    {document path: data} as the emulator holds it."""
    from google.cloud import firestore

    client = firestore.Client(project=project)
    try:
        batch = client.batch()
        for i in range(17):
            batch.set(client.collection("users").document(f"u{i:03d}"), {"n": i, "name": f"user {i}"})
        for i in range(11):
            order = client.collection("orders").document(f"o{i:03d}")
            batch.set(order, {"total": i * 1.5})
            batch.set(order.collection("lines").document("l1"), {"q": i})
        for i in range(9):
            batch.set(client.collection("events").document(f"e{i:03d}"), {"kind": "tick", "at": i})
        batch.commit()
    finally:
        client.close()  # type: ignore[no-untyped-call]
    return documents(project)


def documents(project: str) -> dict[str, dict[str, Any]]:
    """Every document of the project in the Firestore emulator, subcollections at every depth."""
    from google.cloud import firestore

    client = firestore.Client(project=project)
    found: dict[str, dict[str, Any]] = {}

    def walk(collections: Any) -> None:
        for collection in collections:
            for snap in collection.stream():
                found[snap.reference.path] = snap.to_dict()
                walk(snap.reference.collections())

    try:
        walk(client.collections())
    finally:
        client.close()  # type: ignore[no-untyped-call]
    return found


class KillingProxy:
    """A TCP proxy to an S3 server that, when the first PUT of `trigger` passes through it, kills
    `victims()` with SIGKILL and hangs up: the instance uploading that object dies mid-upload."""

    def __init__(self, upstream: tuple[str, int], trigger: bytes, victims: Callable[[], list[int]]) -> None:
        self.upstream, self.trigger, self.victims = upstream, trigger, victims
        self.killed: list[int] = []
        self._lock = threading.Lock()
        self._server = socket.create_server((stack.HOST, 0))
        self.url = f"http://{stack.HOST}:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, watch: bool) -> None:
        tail = b""
        try:
            while data := src.recv(65536):
                if watch and self._fire(tail + data):
                    break
                tail = data[-200:]
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def _fire(self, seen: bytes) -> bool:
        with self._lock:
            if self.killed or self.trigger not in seen or b"PUT " not in seen:
                return False
            for pid in self.victims():
                os.kill(pid, signal.SIGKILL)
                self.killed.append(pid)
            return True

    def close(self) -> None:
        self._server.close()
