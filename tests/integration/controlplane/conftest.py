"""Every database test runs on SQLite and on a real PostgreSQL server (never skipped)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pg8000.native
import pytest
import sqlalchemy as sa

from firebackup.db.session import make_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """URL of an empty database of its own, on each engine in turn."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'firebackup.db'}"
        return
    # A missing PostgreSQL fails the test inside the fixture; it is never skipped.
    server = request.getfixturevalue("postgres_server")
    url = sa.make_url(server.url)
    name = f"t_{secrets.token_hex(6)}"
    admin = pg8000.native.Connection(url.username, host=url.host, port=url.port, password=url.password,
                                     database="postgres")
    try:
        admin.run(f'CREATE DATABASE "{name}"')
    finally:
        admin.close()
    yield url.set(database=name).render_as_string(hide_password=False)
    admin = pg8000.native.Connection(url.username, host=url.host, port=url.port, password=url.password,
                                     database="postgres")
    try:
        admin.run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    """An engine on a database migrated to head."""
    from firebackup.db.migrate import upgrade

    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()
