"""firebackup.dashboard on a bare Flask app: where the browser signs in, the CSP, and the role table it serves."""

from __future__ import annotations

import json

from flask import Flask

from firebackup import dashboard
from firebackup.settings import Settings


def _app(settings: Settings) -> Flask:
    app = Flask("t")
    dashboard.install(app, settings, [("POST", "/orgs/{org_id}/backups", "member"), ("GET", "/me", None)])

    @app.get("/v1/ping")
    def ping() -> str:
        return "pong"

    return app


def test_with_the_auth_emulator_the_browser_signs_in_there_and_only_there() -> None:
    app = _app(Settings(auth_emulator_host="127.0.0.1:9099"))
    config = json.loads(app.test_client().get("/dashboard/config.json").data)
    assert config["auth"]["identitytoolkit"] == "http://127.0.0.1:9099/identitytoolkit.googleapis.com/v1"
    assert config["emulator"] is True and config["googleSignIn"] is False
    assert config["roles"] == {"POST /orgs/{org_id}/backups": "member", "GET /me": None}
    csp = app.test_client().get("/").headers["Content-Security-Policy"]
    assert "connect-src 'self' http://127.0.0.1:9099;" in csp and "googleapis" not in csp


def test_in_the_cloud_google_sign_in_is_offered_only_when_enabled_and_the_csp_names_googles_endpoints() -> None:
    on = _app(Settings(firebase_web_api_key="AIza-test", dashboard_google_sign_in=True)).test_client()
    config = json.loads(on.get("/dashboard/config.json").data)
    assert config["googleSignIn"] is True and config["apiKey"] == "AIza-test"
    assert config["auth"]["securetoken"] == "https://securetoken.googleapis.com/v1"
    assert "https://identitytoolkit.googleapis.com https://securetoken.googleapis.com" in \
        on.get("/").headers["Content-Security-Policy"]
    off = json.loads(_app(Settings()).test_client().get("/dashboard/config.json").data)
    assert off["googleSignIn"] is False


def test_pages_get_a_strict_csp_and_api_responses_are_left_to_the_api() -> None:
    client = _app(Settings(auth_emulator_host="127.0.0.1:9099")).test_client()
    for path in ("/", "/oauth/callback", "/assets/app.css"):
        r = client.get(path)
        assert r.status_code == 200, path
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self';" in csp and "style-src 'self';" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe" not in csp and r.headers["X-Frame-Options"] == "DENY"
    assert "Content-Security-Policy" not in client.get("/v1/ping").headers
    assert client.get("/assets/nope.js").status_code == 404
