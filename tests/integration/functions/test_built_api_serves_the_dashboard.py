"""The vendored `api` function carries the dashboard: its pages and modules are served from the built folder."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

import pytest

from infra import build_functions
from infra.local.function_server import start_built

pytestmark = pytest.mark.integration


def test_the_built_api_function_serves_the_dashboard_shell_and_its_modules(tmp_path: Path) -> None:
    build_functions.build(tmp_path / "out")
    assert (tmp_path / "out" / "api" / "firebackup" / "dashboard" / "static" / "js" / "app.js").is_file()
    env = {"FIREBACKUP_DATABASE_URL": f"sqlite:///{tmp_path / 'firebackup.db'}",
           "FIREBACKUP_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
           "FIREBACKUP_QUEUE": "recording", "FIREBACKUP_WORKER_SECRET": secrets.token_urlsafe(24)}
    with start_built(tmp_path / "out", "api", env) as server:
        shell = server.request("GET", "/")
        assert shell.status == 200 and shell.content_type.startswith("text/html")
        assert b'src="/assets/js/app.js"' in shell.body
        module = server.request("GET", "/assets/js/app.js")
        assert module.status == 200 and "javascript" in module.content_type and b"import" in module.body
        config = server.request("GET", "/dashboard/config.json")
        assert config.status == 200 and b'"POST /orgs/{org_id}/backups":"member"' in config.body
        assert server.request("GET", "/assets/../settings.py").status == 404
