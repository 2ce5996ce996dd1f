"""The composition root: every adapter is built here, from Settings, for every entry point.

    settings = Settings.from_env()               # the edge reads the environment, once
    cli = bootstrap.cli(settings)                # firebackup ...: sources, repositories, Auth
    plane = bootstrap.control_plane(settings)    # the API and every worker: DB, ports, queue, handlers, metrics
    app = bootstrap.api_app(settings)            # functions/api: the Flask app over the control plane
    endpoint = bootstrap.task_endpoint(settings, "backup_worker")   # a worker function: one task per request

Below this module nothing reads the environment or picks an adapter; everything is passed down.
An unknown setting is an error at start-up (Settings.from_env), never a silent fallback.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from firebackup.settings import Settings

if TYPE_CHECKING:
    from flask import Flask
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from firebackup.engine.repository import Repository
    from firebackup.engine.sources import FirebaseAuthUsers, FirestoreSource
    from firebackup.firestore.grpc import FirestoreConnection
    from firebackup.runtime.cloud_tasks import CloudTasksQueue
    from firebackup.runtime.metrics import Metrics, QueueDepth
    from firebackup.runtime.worker import TaskEndpoint
    from firebackup.crypto.keys import KmsClient, KmsKey
    from firebackup.runtime.worker_auth import WorkerAuth
    from firebackup.services.context import Ports
    from firebackup.services.pitr import GroupCommit
    from firebackup.services.local_ticks import LocalTicker
    from firebackup.services.workers import Workers

def prepare_process(settings: Settings) -> None:
    """Put in the environment what client libraries read only from there (their one switch).

    google-cloud-storage: no background bucket-metadata lookups (storage/gcs.py says why);
    firebase_admin: the Auth emulator's host, when Settings names one.
    """
    from firebackup.firestore.auth import client_environment
    from firebackup.storage.gcs import GCS_CLIENT_ENVIRONMENT

    for name, value in GCS_CLIENT_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    os.environ.update(client_environment(settings.auth_emulator_host))


def kms_client(settings: Settings) -> KmsClient:
    """Cloud KMS (its client made on first use), or the test-only folder of keys settings.fake_kms_folder names."""
    from firebackup.crypto.keys import CloudKmsClient

    if settings.fake_kms_folder:
        from firebackup.crypto.fake_kms import LocalFolderKms

        return LocalFolderKms(settings.fake_kms_folder)
    return CloudKmsClient()


# --- the CLI ---------------------------------------------------------------------------------------


@dataclass
class Cli:
    """What `firebackup` commands are built from."""

    settings: Settings

    def repository(self, url: str) -> Repository:
        from firebackup.engine.repository import Repository
        from firebackup.storage import open_storage

        return Repository(open_storage(url))

    def source(self, project: str, database: str) -> FirestoreSource:
        from firebackup.engine.sources import FirestoreSource

        return FirestoreSource(self.firestore(project, database))

    def firestore(self, project: str, database: str) -> FirestoreConnection:
        """A Firestore connection: the emulator when set, else Application Default Credentials."""
        from firebackup.firestore.grpc import open_firestore

        return open_firestore(project, database, emulator_host=self.settings.firestore_emulator_host)

    def auth(self) -> FirebaseAuthUsers:
        from firebackup.engine.sources import FirebaseAuthUsers

        return FirebaseAuthUsers(emulator_host=self.settings.auth_emulator_host)

    def kms_key(self, name: str) -> KmsKey:
        """A Cloud KMS key (--kms-key) as a KEK; BadKey, in one line, for a malformed name."""
        from firebackup.crypto.keys import KmsKey

        return KmsKey(name, kms_client(self.settings))


def cli(settings: Settings) -> Cli:
    prepare_process(settings)
    return Cli(settings)


# --- the control plane ------------------------------------------------------------------------------


@dataclass
class ControlPlane:
    """The API's and the workers' world: the database, the ports, the queue and its handlers."""

    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    ports: Ports
    workers: Workers
    # Sessions for reporting reads (metrics, the dashboard's overview): a read replica's when
    # settings.reporting_database_url names one, else `factory`.
    reporting: sessionmaker[Session]


def ports(settings: Settings, **overrides: Any) -> Ports:
    """The control plane's ports; tests replace any of them by name (a fake that subclasses the port)."""
    from firebackup.crypto.secrets import Sealer
    from firebackup.runtime.metrics import NullMetrics
    from firebackup.services.context import Ports
    from firebackup.services.ports import FirebaseIdTokenVerifier, FirestoreProber, GoogleOAuthClient, RecordingQueue
    from firebackup.services.source_opener import ProjectSources
    from firebackup.services.storage_opener import DestinationStorageOpener

    def pick(name: str, build: Any) -> Any:
        given = overrides.pop(name, None)
        return given if given is not None else build()

    sources = pick("sources", lambda: ProjectSources(
        firestore_emulator_host=settings.firestore_emulator_host,
        auth_emulator_host=settings.auth_emulator_host,
        oauth_client_id=settings.oauth_client_id, oauth_client_secret=settings.oauth_client_secret,
        oauth_token_uri=settings.oauth_token_uri,
        firestore_emulator_credentials=settings.firestore_emulator_credentials))
    parts = {
        "settings": settings,
        "sealer": pick("sealer", lambda: Sealer.from_settings(
            settings, kms_client(settings) if settings.fake_kms_folder else None)),
        "queue": pick("queue", RecordingQueue),
        "verifier": pick("verifier", lambda: FirebaseIdTokenVerifier(
            settings.firebase_project_id, emulator_host=settings.auth_emulator_host,
            cache_seconds=settings.id_token_cache_seconds)),
        "oauth": pick("oauth", lambda: GoogleOAuthClient(settings.oauth_client_id, settings.oauth_client_secret,
                                                         settings.oauth_redirect_uri, settings.oauth_token_uri)),
        "prober": pick("prober", lambda: FirestoreProber(sources)),
        "open_storage": pick("open_storage", lambda: DestinationStorageOpener.from_settings(settings)),
        "sources": sources,
        # control_plane() passes the configured adapter: its queue gauges need the database.
        "metrics": pick("metrics", NullMetrics),
        # Cloud KMS (its client made when an organization's own key is first used), or the test-only fake.
        "kms_client": pick("kms_client", lambda: kms_client(settings)),
    }
    if overrides:
        raise TypeError(f"unknown ports: {sorted(overrides)}")
    return Ports(**parts)


def metrics(settings: Settings, factory: sessionmaker[Session]) -> Metrics:
    """The Metrics adapter settings.metrics names; its queue gauges count job rows through `factory` (reporting)."""
    from firebackup.runtime.metrics import LogMetrics, PrometheusMetrics
    from firebackup.services.job_store import queue_depth

    def read() -> list[QueueDepth]:
        return queue_depth(factory)

    return LogMetrics(read) if settings.metrics == "log" else PrometheusMetrics(read)


def control_plane(settings: Settings, *, engine: Engine | None = None, **overrides: Any) -> ControlPlane:
    """The database (SQLite migrates itself), the ports and the task handlers.

    With settings.queue "local" (and no queue given) tasks run in this process on a thread pool,
    after the transaction that enqueued them commits; with "cloudtasks" they go to Cloud Tasks
    after that commit, which delivers them to the worker functions; with "recording" they are
    only kept, for a separate worker (or a test) to take.
    """
    from firebackup.db.session import make_engine, make_session_factory
    from firebackup.services.workers import AfterCommitQueue, Workers, attach, local_queue

    prepare_process(settings)
    engine = engine if engine is not None else make_engine(settings)
    if engine.dialect.name == "sqlite":
        # The embedded default migrates itself; PostgreSQL is migrated as a deploy step
        # (`python -m firebackup.db.migrate`), never by many function instances at once.
        from firebackup.db.migrate import upgrade

        upgrade(engine)
    factory = make_session_factory(engine)
    reporting = (make_session_factory(make_engine(settings, url=settings.reporting_database_url))
                 if settings.reporting_database_url else factory)
    if overrides.get("metrics") is None:
        overrides["metrics"] = metrics(settings, reporting)
    chosen = overrides.get("queue") is None
    in_process = chosen and settings.queue == "local"
    if in_process:
        overrides["queue"] = local_queue(settings.worker_threads)
    elif chosen and settings.queue == "cloudtasks":
        # After commit, as in-process: a worker could otherwise take the task before its row is visible.
        cloud = AfterCommitQueue(cloud_tasks_queue(settings))
        cloud.bind(factory)
        overrides["queue"] = cloud
    built = ports(settings, **overrides)
    if in_process:
        workers = attach(built.queue, factory, built, threads=settings.worker_threads)
    else:
        workers = Workers(factory, built, threads=settings.worker_threads)
    return ControlPlane(settings, engine, factory, built, workers, reporting)


def pitr_capture(settings: Settings, plane: ControlPlane | None = None) -> GroupCommit:
    """What the `pitr_capture` function records events with: the control plane's database and keys."""
    from firebackup.services.context import system_transactions
    from firebackup.services.pitr import Capture, GroupCommit, firestore_reader

    plane = plane if plane is not None else control_plane(settings)
    tx = system_transactions(plane.factory, plane.ports)
    return GroupCommit(Capture(tx, cache_seconds=settings.pitr_config_cache_seconds,
                               read_document=firestore_reader(tx, plane.workers)))


T = TypeVar("T")


def once(build: Callable[[], T]) -> Callable[[], T]:
    """`build()` on the first call, the same object on every later one (thread-safe).

    A function instance builds its control plane on its first event, not at import time, and
    then keeps it for every later event it serves.
    """
    lock = threading.Lock()
    built: list[T] = []

    def get() -> T:
        with lock:
            if not built:
                built.append(build())
            return built[0]

    return get


# --- Cloud Tasks and the worker functions ------------------------------------------------------------

# Which kinds of task each worker function runs (runtime/cloud_tasks.py sends each kind to one).
WORKER_KINDS = {"backup_worker": ("backup", "webhooks"), "restore_worker": ("restore",)}


def cloud_tasks_queue(settings: Settings) -> CloudTasksQueue:
    """The Cloud Tasks queue the settings describe (the emulator when FIREBACKUP_TASKS_EMULATOR_HOST is set)."""
    from firebackup.runtime.cloud_tasks import CloudTasksQueue, CloudTasksTarget

    return CloudTasksQueue(CloudTasksTarget.from_settings(settings))


def ensure_task_queues(settings: Settings) -> list[str]:
    """Create the Cloud Tasks queues, or update their rate limits and retries to the settings (a deploy step)."""
    queue = cloud_tasks_queue(settings)
    try:
        return queue.ensure_queues()
    finally:
        queue.close()


def log_to_stderr() -> None:
    """Send the package's log records (INFO and up) to stderr, where the function's platform collects
    them; the package alone only has a NullHandler, as a library should."""
    import logging
    import sys

    logger = logging.getLogger("firebackup")
    if any(not isinstance(h, logging.NullHandler) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def worker_auth(settings: Settings, worker: str) -> WorkerAuth:
    """Who the worker function accepts tasks from: OIDC tokens of the invoker service account for its
    URL, the shared secret, either, or (neither configured) nobody."""
    import logging

    from firebackup.errors import UsageError
    from firebackup.runtime.worker_auth import AnyOf, GoogleOidc, SharedSecret

    checks: list[WorkerAuth] = []
    if settings.worker_secret:
        checks.append(SharedSecret(settings.worker_secret))
    if settings.tasks_service_account:
        variable, url = {"backup_worker": ("FIREBACKUP_BACKUP_WORKER_URL", settings.backup_worker_url),
                         "restore_worker": ("FIREBACKUP_RESTORE_WORKER_URL", settings.restore_worker_url)}[worker]
        if not url:
            raise UsageError(f"{worker} checks OIDC tokens addressed to its URL; set {variable}")
        checks.append(GoogleOidc(url, settings.tasks_service_account))
    if not checks:
        logging.getLogger("firebackup.worker").warning(
            "%s refuses every task: set FIREBACKUP_TASKS_SERVICE_ACCOUNT (OIDC) or FIREBACKUP_WORKER_SECRET", worker)
    return AnyOf(checks)


def task_endpoint(settings: Settings, worker: str, *, engine: Engine | None = None,
                  **overrides: Any) -> TaskEndpoint:
    """A worker function's request handler: one task of its kinds per request, over a control plane.

    The tasks a task enqueues go to the queue the settings name (Cloud Tasks in the cloud), never
    run here: "local" is refused, since it would run them in this instance after it answered.
    """
    from firebackup.errors import UsageError
    from firebackup.runtime.cloud_tasks import kind_of, queue_configs
    from firebackup.runtime.worker import TaskEndpoint

    if worker not in WORKER_KINDS:
        raise UsageError(f"unknown worker {worker!r}; choose one of {', '.join(WORKER_KINDS)}")
    if settings.queue == "local" and overrides.get("queue") is None:
        raise UsageError(f"FIREBACKUP_QUEUE=local runs tasks in the process that enqueues them; {worker} "
                         "needs FIREBACKUP_QUEUE=cloudtasks")
    auth = worker_auth(settings, worker)
    plane = control_plane(settings, engine=engine, **overrides)
    kinds = WORKER_KINDS[worker]
    handlers = {name: handler for name, handler in plane.workers.handlers().items() if kind_of(name) in kinds}
    queues = queue_configs(settings)
    return TaskEndpoint(handlers, auth, max_attempts=lambda task: queues[kind_of(task)].max_attempts,
                        on_give_up=plane.workers.dead_letter)


def api_app(settings: Settings, *, engine: Engine | None = None, **overrides: Any) -> Flask:
    """The HTTP API (functions/api) over a control plane built from the same settings."""
    from firebackup.api.app import create_app

    plane = control_plane(settings, engine=engine, **overrides)
    app = create_app(plane.ports, plane.factory)
    app.extensions["firebackup_queue"] = plane.ports.queue
    app.extensions["firebackup_control_plane"] = plane
    return app


def local_ticker(plane: ControlPlane) -> LocalTicker:
    """The embedded platform's scheduler and maintenance ticks, in this process (not started)."""
    import datetime as dt

    from firebackup.services.context import system_transactions
    from firebackup.services.local_ticks import LocalTicker

    s = plane.settings
    return LocalTicker(system_transactions(plane.factory, plane.ports), plane.ports, every=s.local_tick_seconds,
                       maintenance_every=s.local_maintenance_seconds,
                       reap_after=dt.timedelta(seconds=s.reap_after_seconds))
