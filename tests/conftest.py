"""Shared fixtures: real local servers from infra/local/stack.py, started on first use, stopped at session end.

Each server fixture returns an infra.local.stack.Service (name, host, port, url, env, process).
A server that cannot start FAILS the test with one line; it never skips.
Use `svc.apply(monkeypatch)` (or monkeypatch.setenv over svc.env) to point clients at it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from infra.local import stack


def _serve(starter) -> Iterator[stack.Service]:
    error = None
    try:
        svc = starter()
    except stack.StackError as e:
        error = str(e)
    if error is not None:  # outside the except block, so the failure is one line, not a chained traceback
        pytest.fail(f"local server could not start: {error}", pytrace=False)
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[stack.Service]:
    """Cloud Firestore emulator; env FIRESTORE_EMULATOR_HOST. Shared: isolate tests with `project_id`."""
    yield from _serve(stack.start_firestore_emulator)


@pytest.fixture(scope="session")
def auth_emulator() -> Iterator[stack.Service]:
    """Firebase Auth emulator; env FIREBASE_AUTH_EMULATOR_HOST. Serves any project id."""
    yield from _serve(stack.start_auth_emulator)


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[stack.Service]:
    """Cloud Pub/Sub emulator; env PUBSUB_EMULATOR_HOST."""
    yield from _serve(stack.start_pubsub_emulator)


@pytest.fixture(scope="session")
def tasks_emulator() -> Iterator[stack.Service]:
    """Cloud Tasks emulator (infra/local/tasks_emulator.py); env FIREBACKUP_TASKS_EMULATOR_HOST."""
    yield from _serve(stack.start_tasks_emulator)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[stack.Service]:
    """moto S3 server; env AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION."""
    yield from _serve(stack.start_moto_server)


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[stack.Service]:
    """fake-gcs-server (in memory, http); env STORAGE_EMULATOR_HOST."""
    yield from _serve(stack.start_fake_gcs_server)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[stack.Service]:
    """Throwaway PostgreSQL; .url is a SQLAlchemy URL postgresql+pg8000://...; env DATABASE_URL."""
    yield from _serve(stack.start_postgres)


@pytest.fixture
def project_id() -> str:
    """A project id unique to this test, so tests can share one emulator without seeing each other's data."""
    return f"test-{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def pgbouncer_server(postgres_server: stack.Service) -> Iterator[stack.Service]:
    """PgBouncer in transaction mode in front of postgres_server (any database name there); env DATABASE_URL."""
    yield from _serve(lambda: stack.start_pgbouncer(postgres_server))
