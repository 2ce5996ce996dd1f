"""Which credentials a connected project's sources use: the emulator's none, or the project's own."""

from __future__ import annotations

import pytest

from firebackup.errors import SourceAccessDenied
from firebackup.services.source_opener import ProjectSources
from firebackup.settings import Settings


def test_the_emulator_takes_no_credentials_unless_settings_say_to_send_them() -> None:
    assert ProjectSources(firestore_emulator_host="127.0.0.1:8080").needs_credentials is False
    assert ProjectSources(firestore_emulator_host="127.0.0.1:8080",
                          firestore_emulator_credentials=True).needs_credentials is True
    assert ProjectSources().needs_credentials is True


def test_an_oauth_project_without_the_oauth_client_is_refused_in_one_line_naming_the_settings() -> None:
    with pytest.raises(SourceAccessDenied) as caught:
        ProjectSources(oauth_client_id="id-only").firestore("acme-prod", "(default)", "oauth", b"1//refresh")
    message = str(caught.value)
    assert "FIREBACKUP_OAUTH_CLIENT_ID and FIREBACKUP_OAUTH_CLIENT_SECRET" in message and "acme-prod" in message
    assert "1//refresh" not in message and "\n" not in message


def test_the_token_endpoint_and_sending_credentials_to_the_emulator_are_read_from_the_environment() -> None:
    s = Settings.from_env({"FIREBACKUP_OAUTH_TOKEN_URI": "http://127.0.0.1:9/token",
                           "FIREBACKUP_FIRESTORE_EMULATOR_CREDENTIALS": "1"})
    assert (s.oauth_token_uri, s.firestore_emulator_credentials) == ("http://127.0.0.1:9/token", True)
    default = Settings.from_env({})
    assert (default.oauth_token_uri, default.firestore_emulator_credentials) == (
        "https://oauth2.googleapis.com/token", False)
