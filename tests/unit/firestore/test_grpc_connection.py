"""open_firestore picks the emulator or real Firestore from its arguments (never the environment)
and never connects eagerly."""

from __future__ import annotations

import pytest
from google.auth.credentials import AnonymousCredentials

from firebackup.errors import SourceAccessDenied, UsageError
from firebackup.firestore.grpc import FIRESTORE_HOST, open_firestore


def test_an_emulator_host_gives_an_insecure_owner_connection():
    conn = open_firestore("p", "db2", emulator_host="http://127.0.0.1:8080")
    try:
        assert (conn.emulator, conn.host) == (True, "127.0.0.1:8080")
        assert conn.documents_path == "projects/p/databases/db2/documents"
        assert ("authorization", "Bearer owner") in conn._base_metadata
    finally:
        conn.close()


def test_the_environment_does_not_choose_the_emulator(monkeypatch):
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:8080")
    conn = open_firestore("p", credentials=AnonymousCredentials())
    try:
        assert (conn.emulator, conn.host) == (False, FIRESTORE_HOST)
    finally:
        conn.close()


def test_without_an_emulator_it_opens_a_tls_channel_to_firestore_with_the_given_credentials():
    conn = open_firestore("p", credentials=AnonymousCredentials())
    try:
        assert (conn.emulator, conn.host, conn.database) == (False, FIRESTORE_HOST, "(default)")
        assert all(k != "authorization" for k, _ in conn._base_metadata)
    finally:
        conn.close()


def test_missing_application_default_credentials_are_one_line_access_denied(monkeypatch, tmp_path):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    with pytest.raises(SourceAccessDenied) as info:
        open_firestore("p")
    assert "\n" not in str(info.value) and "application-default" in str(info.value)
    assert info.value.exit_code == 2


def test_no_project_is_a_usage_error():
    with pytest.raises(UsageError, match="--project"):
        open_firestore("", emulator_host="127.0.0.1:8080")
