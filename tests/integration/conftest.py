"""Integration fixtures shared by several areas: every database test runs on SQLite and on a real PostgreSQL server.

PostgreSQL is never skipped: a missing server fails the test inside the fixture.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import pg8000.native
import pytest
import sqlalchemy as sa

from firebackup.db.session import make_engine


def _admin_run(url: sa.URL, sql: str) -> None:
    admin = pg8000.native.Connection(url.username, host=url.host, port=url.port, password=url.password,
                                     database="postgres")
    try:
        admin.run(sql)
    finally:
        admin.close()


@contextlib.contextmanager
def postgres_database(server_url: str, prefix: str) -> Iterator[str]:
    """A fresh, empty database on the test PostgreSQL server (its URL), dropped afterwards."""
    url = sa.make_url(server_url)
    name = f"{prefix}_{secrets.token_hex(6)}"
    _admin_run(url, f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        _admin_run(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """URL of an empty database of its own, on each engine in turn."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'firebackup.db'}"
        return
    # A missing PostgreSQL fails the test inside the fixture; it is never skipped.
    with postgres_database(request.getfixturevalue("postgres_server").url, "t") as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    """An engine on a database migrated to head."""
    from firebackup.db.migrate import upgrade

    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()
