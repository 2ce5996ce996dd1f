"""Cloud Function `api`: the /v1 HTTP API. Settings are read once, the app is built on first request."""

from __future__ import annotations

import threading

import functions_framework

from firebackup.api.wiring import build_app
from firebackup.settings import Settings

_app = None
_lock = threading.Lock()


def _get_app():
    global _app
    with _lock:
        if _app is None:
            _app = build_app(Settings.from_env())
        return _app


@functions_framework.http
def api(request):
    """Hand the request to the Flask app (routing, auth, errors all live there)."""
    app = _get_app()
    with app.request_context(request.environ):
        return app.full_dispatch_request()
