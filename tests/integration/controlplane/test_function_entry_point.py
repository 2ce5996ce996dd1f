"""functions/api/main.py served by functions-framework: settings from the environment, the /v1 app behind it."""

from __future__ import annotations

import base64
import os

import functions_framework
import pytest


@pytest.fixture
def function_client(db_url, monkeypatch):
    if db_url.startswith("postgresql"):
        # PostgreSQL is migrated as a deploy step; SQLite (the embedded default) migrates itself.
        from firebackup.db.migrate import upgrade
        from firebackup.db.session import make_engine

        engine = make_engine(db_url)
        upgrade(engine)
        engine.dispose()
    monkeypatch.setenv("FIREBACKUP_DATABASE_URL", db_url)
    monkeypatch.setenv("FIREBACKUP_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    app = functions_framework.create_app(target="api", source=os.path.join(root, "functions", "api", "main.py"))
    return app.test_client()


def test_the_api_function_serves_the_openapi_document_and_the_error_body(function_client) -> None:
    doc = function_client.get("/v1/openapi.json")
    assert doc.status_code == 200 and doc.get_json()["openapi"] == "3.1.0"
    r = function_client.get("/v1/orgs")
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthenticated"
    r = function_client.post("/v1/orgs", json={"name": "x"}, headers={"Authorization": "Bearer fbk_nope"})
    assert r.status_code == 401
    r = function_client.get("/v1/nowhere")
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
