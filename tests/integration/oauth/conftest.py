"""A fake Google token endpoint on 127.0.0.1: it checks the OAuth client, the refresh token and the scopes
as Google does, and issues access tokens of Google's shape (ya29.), which the Firestore emulator accepts."""

from __future__ import annotations

import json
import secrets
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from firebackup.services.ports import GoogleOAuthClient
from tests.integration.local_http import QuietHandler, serving

CLIENT_ID = "1234567890-firebackup.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-fake-client-secret-0123456789"
REDIRECT_URI = "https://firebackup.example.test/oauth/callback"
CODE = "4/0Afake-authorization-code"
REFRESH_TOKEN = "1//0fake-refresh-token-0123456789"
CONSENTED = set(GoogleOAuthClient.SCOPES.split())


@dataclass
class TokenEndpoint:
    url: str = ""
    requests: list[dict[str, str]] = field(default_factory=list)  # each form, as sent
    revoked: set[str] = field(default_factory=set)
    token_prefix: str = "ya29."  # Google's access tokens; the Firestore emulator refuses a token it cannot parse

    def refreshes(self) -> list[dict[str, str]]:
        return [r for r in self.requests if r.get("grant_type") == "refresh_token"]

    def answer(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """What Google's token endpoint answers to `form`."""
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            return 401, {"error": "invalid_client", "error_description": "The OAuth client was not found."}
        grant = form.get("grant_type")
        if grant == "authorization_code":
            if form.get("code") != CODE or form.get("redirect_uri") != REDIRECT_URI:
                return 400, {"error": "invalid_grant", "error_description": "Malformed auth code."}
            return 200, {"access_token": self.token_prefix + secrets.token_urlsafe(24), "expires_in": 3599,
                         "token_type": "Bearer", "refresh_token": REFRESH_TOKEN, "scope": " ".join(sorted(CONSENTED))}
        if grant == "refresh_token":
            if form.get("refresh_token") != REFRESH_TOKEN or REFRESH_TOKEN in self.revoked:
                return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
            asked = set(form.get("scope", "").split()) or CONSENTED
            if not asked <= CONSENTED:
                return 400, {"error": "invalid_scope", "error_description": "Bad Request"}
            return 200, {"access_token": self.token_prefix + secrets.token_urlsafe(24), "expires_in": 3599,
                         "token_type": "Bearer", "scope": " ".join(sorted(asked))}
        return 400, {"error": "unsupported_grant_type"}


@pytest.fixture
def token_endpoint() -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint()

    class Handler(QuietHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            form = {k: v[0] for k, v in urllib.parse.parse_qs(self.body().decode()).items()}
            endpoint.requests.append(form)
            status, answer = endpoint.answer(form)
            self.answer(status, json.dumps(answer).encode(), "application/json")

    with serving(Handler) as base:
        endpoint.url = base + "/token"
        yield endpoint
