"""The metadata database at realistic volume, loaded once per test session (infra/local/db_volume.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from firebackup.db.migrate import upgrade
from firebackup.db.session import make_engine
from infra.local import db_volume
from tests.integration.conftest import postgres_database

VOLUME_NOW = dt.datetime(2026, 11, 15, 12, 0, tzinfo=dt.timezone.utc)  # the newest row's time: fixed, so plans repeat


@pytest.fixture(scope="session")
def volume_engine(postgres_server) -> Iterator[sa.Engine]:
    """An engine on a PostgreSQL database migrated to head and loaded with db_volume's rows (read it, never write)."""
    with postgres_database(postgres_server.url, "vol") as url:
        engine = make_engine(url)
        upgrade(engine)
        db_volume.load(engine, VOLUME_NOW)
        yield engine
        engine.dispose()
