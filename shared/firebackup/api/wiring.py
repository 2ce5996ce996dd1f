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
    """Keeps tasks without running them. The deployment passes the real queue (Cloud Tasks, or
    firebackup.runtime.queue.LocalQueue with the engine's handlers registered) as build_app(queue=...);
    a LocalQueue without handlers would refuse every task."""
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
    return _create(build_ports(settings, **ports), make_session_factory(engine))


def _create(ports: Ports, factory: Any) -> Flask:
    from firebackup.api.app import create_app

    return create_app(ports, factory)
