"""Auth errors: vendor errors become one classified line; transient ones are retried, others not."""

from __future__ import annotations

import google.auth.exceptions
import pytest
import requests
from firebase_admin import exceptions as fx

from firebackup.errors import (
    PermanentSourceError,
    SourceAccessDenied,
    SourceNotFound,
    SourceUnavailable,
    TransientSourceError,
    is_transient,
)
from firebackup.firestore import auth as fa
from firebackup.retry import RetryPolicy


@pytest.mark.parametrize("error,kind", [
    (fx.UnavailableError("backend unavailable"), SourceUnavailable),
    (requests.exceptions.ConnectionError("connection refused"), SourceUnavailable),
    (google.auth.exceptions.TransportError("token endpoint unreachable"), SourceUnavailable),
    (fx.DeadlineExceededError("timed out"), TransientSourceError),
    (requests.exceptions.ReadTimeout("read timed out"), TransientSourceError),
    (fx.ResourceExhaustedError("quota"), TransientSourceError),
    (fx.InternalError("oops"), TransientSourceError),
    (fx.PermissionDeniedError("caller lacks firebaseauth.users.get"), SourceAccessDenied),
    (fx.UnauthenticatedError("bad token"), SourceAccessDenied),
    (google.auth.exceptions.DefaultCredentialsError("no ADC"), SourceAccessDenied),
    (fx.NotFoundError("no such project"), SourceNotFound),
    (fx.InvalidArgumentError("bad page token"), PermanentSourceError),
])
def test_vendor_errors_become_one_classified_line_naming_project_and_host(error, kind):
    err = fa._translate(error, "listing users", "p1", "127.0.0.1:9099")
    assert type(err) is kind
    assert "\n" not in str(err) and "p1" in str(err) and "127.0.0.1:9099" in str(err)
    assert is_transient(err) == issubclass(kind, TransientSourceError)


def test_without_an_emulator_the_message_names_the_real_endpoint():
    err = fa._translate(fx.UnavailableError("x"), "listing users", "p1", None)
    assert fa.AUTH_HOST in str(err)


def test_a_transient_failure_is_retried_and_a_permanent_one_is_not():
    sleeps: list[float] = []
    target = fa._Target("p1", None, RetryPolicy(attempts=3, sleep=sleeps.append))
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise fx.UnavailableError("try again")
        return "ok"

    assert target.call(flaky, "listing users") == "ok" and len(calls) == 3 and len(sleeps) == 2

    def denied() -> str:
        calls.append(1)
        raise fx.PermissionDeniedError("no")

    calls.clear()
    with pytest.raises(SourceAccessDenied):
        target.call(denied, "listing users")
    assert len(calls) == 1


def test_the_emulator_is_named_by_argument_and_handed_to_firebase_admin_as_its_environment():
    assert fa.client_environment("http://127.0.0.1:9099") == {"FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099"}
    assert fa.client_environment(None) == {}
    assert fa.get_hash_config("p1", emulator_host="127.0.0.1:9099") == {"algorithm": fa.EMULATOR_HASH}
