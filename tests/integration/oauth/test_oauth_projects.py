"""A project connected through Google OAuth backs up with its own credentials: the refresh token, the OAuth
client's id and secret go to the token endpoint, and the access token it issues goes to Firestore."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from firebackup.bootstrap import ControlPlane, api_app
from firebackup.services.source_opener import AUTH_SCOPES, ProjectSources
from firebackup.settings import Settings
from tests.integration.controlplane.jobs_world import Org, make_org, seed
from tests.integration.oauth.conftest import (CLIENT_ID, CLIENT_SECRET, CODE, CONSENTED, REDIRECT_URI, REFRESH_TOKEN,
                                              TokenEndpoint)


def _platform(tmp_path: Path, emulator_host: str, token_uri: str) -> tuple[Flask, Org]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'firebackup.db'}", master_key=os.urandom(32),
                        allow_local_storage=True, firestore_emulator_host=emulator_host,
                        firestore_emulator_credentials=True, oauth_client_id=CLIENT_ID,
                        oauth_client_secret=CLIENT_SECRET, oauth_redirect_uri=REDIRECT_URI,
                        oauth_token_uri=token_uri)
    app = api_app(settings)
    plane: ControlPlane = app.extensions["firebackup_control_plane"]
    return app, make_org(app, plane.factory, tmp_path)


def _connect(org: Org, gcp_project_id: str) -> str:
    start = org.ok("POST", "/projects/oauth/start")
    project: dict[str, Any] = org.ok("POST", "/projects/oauth/complete", {
        "state": start["state"], "code": CODE, "name": "oauth-prod", "gcp_project_id": gcp_project_id}, 201)
    assert project["auth_kind"] == "oauth"
    return str(project["id"])


def _backup(org: Org, project: str) -> dict[str, Any]:
    dest = org.destination(org.tmp / "backups")
    backup = org.ok("POST", "/backups", {"project_id": project, "destination_id": dest}, 202)
    org.run()
    done: dict[str, Any] = org.ok("GET", f"/backups/{backup['id']}")
    return done


def test_an_oauth_connected_project_backs_up_with_a_token_refreshed_by_its_oauth_client(
        tmp_path: Path, firestore_emulator: Any, monkeypatch: pytest.MonkeyPatch, project_id: str,
        token_endpoint: TokenEndpoint) -> None:
    firestore_emulator.apply(monkeypatch)  # for seed(), the client library's way in
    documents = seed(project_id)
    _, org = _platform(tmp_path, firestore_emulator.env["FIRESTORE_EMULATOR_HOST"], token_endpoint.url)
    project = _connect(org, project_id)
    [exchange] = token_endpoint.requests
    assert (exchange["grant_type"], exchange["client_id"], exchange["client_secret"]) == (
        "authorization_code", CLIENT_ID, CLIENT_SECRET)

    assert org.ok("POST", f"/projects/{project}/test")["ok"] is True
    done = _backup(org, project)

    assert (done["state"], done["documents"], done["error"]) == ("completed", documents, None)
    refreshes = token_endpoint.refreshes()
    assert refreshes, "the backup never refreshed the project's token: it did not use its credentials"
    for form in refreshes:
        assert (form["client_id"], form["client_secret"], form["refresh_token"]) == (
            CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)
        assert set(form["scope"].split()) <= CONSENTED
    # One access token serves every task of this process until it expires.
    assert len(refreshes) == 1


def test_a_revoked_refresh_token_fails_the_backup_once_with_one_line_saying_to_reconnect(
        tmp_path: Path, firestore_emulator: Any, monkeypatch: pytest.MonkeyPatch, project_id: str,
        token_endpoint: TokenEndpoint) -> None:
    firestore_emulator.apply(monkeypatch)
    seed(project_id)
    _, org = _platform(tmp_path, firestore_emulator.env["FIRESTORE_EMULATOR_HOST"], token_endpoint.url)
    project = _connect(org, project_id)
    token_endpoint.revoked.add(REFRESH_TOKEN)

    done = _backup(org, project)

    assert done["state"] == "failed"
    assert done["error"] == (f"Google refused project {project_id}'s OAuth token (invalid_grant); "
                             "reconnect the project through Google OAuth")
    assert REFRESH_TOKEN not in done["error"] and len(token_endpoint.refreshes()) == 1  # not retried


def test_the_auth_path_refreshes_the_users_token_with_the_oauth_client_for_a_consented_scope(
        token_endpoint: TokenEndpoint, project_id: str) -> None:
    sources = ProjectSources(oauth_client_id=CLIENT_ID, oauth_client_secret=CLIENT_SECRET,
                             oauth_token_uri=token_endpoint.url)
    users = sources.auth(project_id, "oauth", REFRESH_TOKEN.encode())
    token = users.app.credential.get_access_token()
    assert token.access_token.startswith("ya29.")
    [form] = token_endpoint.refreshes()
    assert (form["client_id"], form["client_secret"], form["refresh_token"]) == (
        CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)
    assert form["scope"].split() == list(AUTH_SCOPES) and set(AUTH_SCOPES) <= CONSENTED
    assert users.app.project_id == project_id


def test_the_emulator_receives_the_issued_access_token_not_an_owner_token(
        firestore_emulator: Any, project_id: str, token_endpoint: TokenEndpoint) -> None:
    from firebackup.errors import PermanentSourceError
    from firebackup.firestore import protos

    sources = ProjectSources(firestore_emulator_host=firestore_emulator.env["FIRESTORE_EMULATOR_HOST"],
                             firestore_emulator_credentials=True, oauth_client_id=CLIENT_ID,
                             oauth_client_secret=CLIENT_SECRET, oauth_token_uri=token_endpoint.url)
    token_endpoint.token_prefix = "unparsable-"  # no dot: the emulator cannot read it as a token
    conn = sources.firestore(project_id, "(default)", "oauth", REFRESH_TOKEN.encode())
    try:
        with pytest.raises(PermanentSourceError, match="invalid jwt"):
            conn.list_collection_ids(protos.ListCollectionIdsRequest(parent=conn.documents_path))
    finally:
        conn.close()
    assert len(token_endpoint.refreshes()) == 1
