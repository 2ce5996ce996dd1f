"""Worker authentication: the shared secret, and OIDC tokens verified by google-auth against keys the
test signs with (served by a fake certificate endpoint: the transport is the port being faked)."""

from __future__ import annotations

import json
import time
from typing import Any, Mapping

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt
from google.auth.transport import Request, Response

from firebackup.runtime.worker_auth import (
    SECRET_HEADER, AnyOf, CachingCertsRequest, GoogleOidc, SharedSecret, google_token_check)

URL = "https://backup-worker-abc.a.run.app/"
SA = "tasks-invoker@proj.iam.gserviceaccount.com"
SECRET = "a-long-shared-secret-0123456789"


def _key() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


GOOGLE_PRIVATE, GOOGLE_PUBLIC = _key()
OTHER_PRIVATE, _ = _key()


class _Answer(Response):
    def __init__(self, status: int, data: bytes, headers: Mapping[str, str]) -> None:
        self._status, self._data, self._headers = status, data, dict(headers)

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    def data(self) -> bytes:
        return self._data


class FakeCertsEndpoint(Request):
    """Google's certificate endpoint: one signing key, cacheable for an hour; counts its requests."""

    def __init__(self) -> None:
        self.fetches: list[str] = []

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None, timeout: Any = None,
                 **kwargs: Any) -> Response:
        self.fetches.append(url)
        return _Answer(200, json.dumps({"key-1": GOOGLE_PUBLIC}).encode(),
                       {"Cache-Control": "public, max-age=3600, must-revalidate"})


def token(private: str = GOOGLE_PRIVATE, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": "https://accounts.google.com", "aud": URL, "email": SA, "email_verified": True,
            "sub": "1234", "iat": now, "exp": now + 3600, **claims}
    signer = crypt.RSASigner.from_string(private, "key-1")  # type: ignore[no-untyped-call]
    signed: bytes = jwt.encode(signer, body)  # type: ignore[no-untyped-call]
    return signed.decode()


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture
def endpoint() -> FakeCertsEndpoint:
    return FakeCertsEndpoint()


@pytest.fixture
def oidc(endpoint: FakeCertsEndpoint) -> GoogleOidc:
    return GoogleOidc(URL, SA, google_token_check(endpoint))


def test_a_token_google_signed_for_the_invoker_and_this_worker_is_accepted(oidc: GoogleOidc) -> None:
    assert oidc.caller(bearer(token())) == f"service account {SA}"


@pytest.mark.parametrize("claims", [
    {"aud": "https://restore-worker-abc.a.run.app/"},        # addressed to another worker
    {"email": "someone-else@proj.iam.gserviceaccount.com"},  # another service account
    {"email_verified": False},
    {"iss": "https://evil.example.test"},
    {"exp": int(time.time()) - 600, "iat": int(time.time()) - 4200},  # expired
], ids=["other-audience", "other-account", "unverified-email", "other-issuer", "expired"])
def test_a_token_not_meant_for_this_worker_is_refused(oidc: GoogleOidc, claims: dict[str, Any]) -> None:
    assert oidc.caller(bearer(token(**claims))) is None


def test_a_token_signed_by_another_key_or_garbage_or_no_bearer_is_refused(oidc: GoogleOidc) -> None:
    assert oidc.caller(bearer(token(OTHER_PRIVATE))) is None
    assert oidc.caller(bearer("not.a.jwt")) is None
    assert oidc.caller({"Authorization": f"Basic {token()}"}) is None
    assert oidc.caller({}) is None


def test_googles_certificates_are_fetched_once_while_their_max_age_lasts(endpoint: FakeCertsEndpoint) -> None:
    now = [1000.0]
    check = GoogleOidc(URL, SA, google_token_check(CachingCertsRequest(endpoint, clock=lambda: now[0])))
    for _ in range(3):
        assert check.caller(bearer(token())) is not None
    assert len(endpoint.fetches) == 1
    now[0] += 3601
    assert check.caller(bearer(token())) is not None
    assert len(endpoint.fetches) == 2


def test_the_shared_secret_must_match_exactly() -> None:
    auth = SharedSecret(SECRET)
    assert auth.caller({SECRET_HEADER: SECRET}) == "shared secret"
    for wrong in ("", SECRET[:-1], SECRET + "x", SECRET.upper(), SECRET[:-1] + "!"):
        assert auth.caller({SECRET_HEADER: wrong}) is None
    assert auth.caller({}) is None
    assert SECRET not in repr(auth)
    with pytest.raises(ValueError):
        SharedSecret("")


def test_either_configured_check_admits_and_with_none_configured_nobody_is_admitted(oidc: GoogleOidc) -> None:
    both = AnyOf([SharedSecret(SECRET), oidc])
    assert both.caller({SECRET_HEADER: SECRET}) == "shared secret"
    assert both.caller(bearer(token())) == f"service account {SA}"
    assert both.caller({SECRET_HEADER: "nope"}) is None
    nobody = AnyOf([])
    assert nobody.caller({SECRET_HEADER: SECRET, **bearer(token())}) is None
