"""A body over FIREBACKUP_MAX_REQUEST_BYTES is refused with 413 however it is sent, including chunked
(no Content-Length), by the api function served by functions-framework from its built folder."""

from __future__ import annotations

import base64
import http.client
import json
import os
from pathlib import Path
from typing import Iterator

import pytest

from firebackup.db.migrate import upgrade
from firebackup.db.models import Organization, new_id
from firebackup.db.session import make_engine, make_session_factory
from infra.build_functions import build
from infra.local.function_server import FunctionServer, start_built

LIMIT = 2048
from tests.integration.controlplane.world import seed_token


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[tuple[FunctionServer, str, str]]:
    tmp = tmp_path_factory.mktemp("request-size")
    url = f"sqlite:///{tmp / 'api.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with make_session_factory(engine).begin() as s:
        org = Organization(id=new_id("org"), name="Acme")
        s.add(org)
        s.flush()
        token = seed_token(s, org.id)
        org_id = org.id
    engine.dispose()
    out = tmp / "build"
    build(out)
    env = {"FIREBACKUP_DATABASE_URL": url, "FIREBACKUP_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
           "FIREBACKUP_QUEUE": "recording", "FIREBACKUP_MAX_REQUEST_BYTES": str(LIMIT)}
    server = start_built(out, "api", env)
    try:
        yield server, org_id, token
    finally:
        server.stop()


def _post(server: FunctionServer, path: str, token: str, body: bytes, *, chunked: bool) -> tuple[int, dict]:
    host, port = server.url.split("//", 1)[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        if chunked:
            conn.putrequest("PATCH", path)
            for k, v in {**headers, "Transfer-Encoding": "chunked"}.items():
                conn.putheader(k, v)
            conn.endheaders()
            for i in range(0, len(body), 500):
                piece = body[i:i + 500]
                conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            conn.send(b"0\r\n\r\n")
        else:
            conn.request("PATCH", path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_gets_413_and_changes_nothing(api, chunked) -> None:
    server, org_id, token = api
    # Valid JSON whose first LIMIT bytes are valid JSON too: a silent cut would be accepted as a rename.
    body = json.dumps({"name": "renamed"}).encode() + b" " * (LIMIT * 3)
    status, out = _post(server, f"/v1/orgs/{org_id}", token, body, chunked=chunked)
    assert status == 413, out
    assert out["error"]["code"] == "request_too_large"
    status, org = _get(server, f"/v1/orgs/{org_id}", token)
    assert status == 200 and org["name"] == "Acme"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_under_the_limit_is_applied_either_way(api, chunked) -> None:
    server, org_id, token = api
    name = f"Acme {'chunked' if chunked else 'plain'}"
    status, out = _post(server, f"/v1/orgs/{org_id}", token, json.dumps({"name": name}).encode(), chunked=chunked)
    assert status == 200 and out["name"] == name, out


def _get(server: FunctionServer, path: str, token: str) -> tuple[int, dict]:
    r = server.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    return r.status, json.loads(r.body)
