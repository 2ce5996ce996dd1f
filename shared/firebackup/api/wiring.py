"""Assemble the API from Settings: the only place that picks adapters."""

from __future__ import annotations

from typing import Any

from flask import Flask

from firebackup.crypto.secrets import Sealer
from firebackup.db.session import make_engine, make_session_factory
from firebackup.services.context import Ports
from firebackup.services.ports import FirebaseIdTokenVerifier, FirestoreProber, GoogleOAuthClient, RecordingQueue
from firebackup.services.storage_opener import open_destination_storage
from firebackup.settings import Settings


def default_queue() -> Any:
    """Keeps tasks without running them (FIREBACKUP_QUEUE=recording: a separate worker takes them)."""
    return RecordingQueue()


def build_ports(settings: Settings, **overrides: Any) -> Ports:
    parts: dict[str, Any] = {
        "settings": settings,
        "sealer": overrides.pop("sealer", None) or Sealer.from_settings(settings),
        "queue": overrides.pop("queue", None) or default_queue(),
        "verifier": overrides.pop("verifier", None) or FirebaseIdTokenVerifier(settings.firebase_project_id),
        "oauth": overrides.pop("oauth", None)
        or GoogleOAuthClient(settings.oauth_client_id, settings.oauth_client_secret, settings.oauth_redirect_uri),
        "prober": overrides.pop("prober", None) or FirestoreProber(),
        "open_storage": overrides.pop("open_storage", None) or open_destination_storage,
    }
    if overrides:
        raise TypeError(f"unknown ports: {sorted(overrides)}")
    return Ports(**parts)


def build_app(settings: Settings, *, engine: Any = None, **ports: Any) -> Flask:
    engine = engine if engine is not None else make_engine(settings)
    if engine.dialect.name == "sqlite":
        # The embedded default migrates itself; PostgreSQL is migrated as a deploy step
        # (`python -m firebackup.db.migrate`), never by many function instances at once.
        from firebackup.db.migrate import upgrade

        upgrade(engine)
    factory = make_session_factory(engine)
    local = None
    if ports.get("queue") is None and settings.queue == "local":
        # The embedded default: tasks run in this process on a thread pool, after their commit.
        from firebackup.services.workers import local_queue

        local = ports["queue"] = local_queue(settings.worker_threads)
    built = build_ports(settings, **ports)
    if local is not None:
        from firebackup.services.workers import attach

        attach(local, factory, built, threads=settings.worker_threads)
    app = _create(built, factory)
    app.extensions["firebackup_queue"] = built.queue
    return app


def _create(ports: Ports, factory: Any) -> Flask:
    from firebackup.api.app import create_app

    return create_app(ports, factory)
