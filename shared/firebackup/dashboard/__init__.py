"""The web dashboard: static pages and ES modules served by the API's own Flask app at `/`.

Why this shape: no build step and no server-side state. The pages are one static shell whose modules
call /v1 with the Firebase ID token in the Authorization header, exactly as any API client does; there
is no cookie, so no ambient credential a cross-site request could ride on (nothing for CSRF to use).
Every response carries a strict Content-Security-Policy: scripts and styles from this origin only,
never inline, and no framing. Which role each action needs comes from the API's own route table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flask import Flask, Response, request, send_from_directory

from firebackup.settings import Settings

STATIC = Path(__file__).parent / "static"
# The shell answers every page path: the modules route on location.hash; /oauth/callback is where
# Google sends the browser back after a project is connected with OAuth.
PAGES = ("/", "/oauth/callback")
GOOGLE_AUTH_ORIGINS = ("https://identitytoolkit.googleapis.com", "https://securetoken.googleapis.com")


def auth_endpoints(settings: Settings) -> dict[str, str]:
    """Where the browser signs in: the Auth emulator's Identity Toolkit REST API locally, Google's in the cloud."""
    if settings.auth_emulator_host:
        base = f"http://{settings.auth_emulator_host}"
        return {"identitytoolkit": f"{base}/identitytoolkit.googleapis.com/v1",
                "securetoken": f"{base}/securetoken.googleapis.com/v1"}
    return {"identitytoolkit": f"{GOOGLE_AUTH_ORIGINS[0]}/v1", "securetoken": f"{GOOGLE_AUTH_ORIGINS[1]}/v1"}


def content_security_policy(settings: Settings) -> str:
    auth = f"http://{settings.auth_emulator_host}" if settings.auth_emulator_host else " ".join(GOOGLE_AUTH_ORIGINS)
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self' {auth}; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")


def install(app: Flask, settings: Settings, roles: Sequence[tuple[str, str, str | None]]) -> None:
    """Serve the dashboard at `/`; roles: (method, path, minimum role name or None) of every /v1 route."""
    config: dict[str, Any] = {
        "apiKey": settings.firebase_web_api_key or "emulator",
        "auth": auth_endpoints(settings),
        "emulator": settings.auth_emulator_host is not None,
        "googleSignIn": settings.dashboard_google_sign_in and settings.auth_emulator_host is None,
        "roles": {f"{method} {path}": role for method, path, role in roles},
    }
    csp = content_security_policy(settings)
    config_body = json.dumps(config, separators=(",", ":"))

    def shell() -> Response:
        return send_from_directory(STATIC, "index.html", max_age=0)

    for path in PAGES:
        app.add_url_rule(path, endpoint=f"dashboard {path}", view_func=shell, methods=["GET"])

    @app.get("/dashboard/config.json")
    def dashboard_config() -> Response:
        return Response(config_body, mimetype="application/json")

    @app.get("/assets/<path:name>")
    def dashboard_static(name: str) -> Response:
        return send_from_directory(STATIC, name, max_age=0)

    @app.after_request
    def protect(response: Response) -> Response:
        if not request.path.startswith("/v1/"):
            response.headers["Content-Security-Policy"] = csp
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Referrer-Policy"] = "no-referrer"
            response.headers["X-Frame-Options"] = "DENY"
        return response
