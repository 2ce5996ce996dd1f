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
    """H4's runtime queue when present, else an in-process recording queue."""
    try:
        from firebackup.runtime.queue import LocalQueue  # type: ignore[attr-defined]
    except ImportError:
        return RecordingQueue()
    try:
        return LocalQueue()
    except TypeError:  # its constructor wants handlers we do not have here
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
    return _create(build_ports(settings, **ports), make_session_factory(engine))


def _create(ports: Ports, factory: Any) -> Flask:
    from firebackup.api.app import create_app

    return create_app(ports, factory)
