"""Cloud Function `api`: the /v1 HTTP API. Settings are read once, the app is built on first request."""

from __future__ import annotations

import threading
from typing import Any

import functions_framework

from firebackup import bootstrap
from firebackup.settings import Settings

_app: Any = None
_lock = threading.Lock()


def _get_app() -> Any:
    global _app
    with _lock:
        if _app is None:
            _app = bootstrap.api_app(Settings.from_env())
        return _app


@functions_framework.http
def api(request: Any) -> Any:
    """Hand the request to the Flask app (routing, auth, errors all live there)."""
    app = _get_app()
    with app.request_context(request.environ):
        return app.full_dispatch_request()
