"""Engines and sessions: SQLite (embedded default), PostgreSQL via pg8000 by URL, Cloud SQL via the connector."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from firebackup.errors import UsageError
from firebackup.settings import Settings


def make_engine(settings: Settings | str, **kwargs: Any) -> sa.Engine:
    """Engine for the configured database; Cloud SQL wins when an instance connection name is set."""
    if isinstance(settings, str):
        settings = Settings(database_url=settings)
    if settings.cloudsql_instance:
        return _cloudsql_engine(settings, **kwargs)
    url = sa.make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.get_backend_name() == "postgresql":
        if url.get_driver_name() != "pg8000":
            url = url.set(drivername="postgresql+pg8000")
        return sa.create_engine(url, pool_pre_ping=True, **kwargs)
    raise UsageError(
        f"database URL {url.render_as_string(hide_password=True)!r} is not supported; use sqlite:/// or postgresql+pg8000://"
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # SQLite ignores foreign keys unless asked, per connection.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _cloudsql_engine(settings: Settings, **kwargs: Any) -> sa.Engine:
    """Cloud SQL for PostgreSQL with IAM database authentication.

    The connector is imported and created only here, on first connect, so nothing
    talks to Google at import time. Not exercised by the local tests (needs GCP).
    """
    holder: dict[str, Any] = {}

    def connect() -> Any:
        if "connector" not in holder:
            from google.cloud.sql.connector import Connector

            holder["connector"] = Connector()
        return holder["connector"].connect(
            settings.cloudsql_instance,
            "pg8000",
            user=settings.cloudsql_iam_user,
            db=settings.cloudsql_database,
            enable_iam_auth=True,
        )

    return sa.create_engine("postgresql+pg8000://", creator=connect, pool_pre_ping=True, **kwargs)


def make_session_factory(engine: sa.Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with factory() as session, session.begin():
        yield session
