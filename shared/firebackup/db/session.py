"""Engines and sessions: SQLite (embedded default), PostgreSQL via pg8000 by URL, Cloud SQL via the connector."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from firebackup.errors import DatabaseUnavailable, UsageError
from firebackup.settings import Settings


def make_engine(settings: Settings | str, *, url: str | None = None, **kwargs: Any) -> sa.Engine:
    """Engine for the configured database (or `url`); Cloud SQL wins when an instance connection name is set.

    PostgreSQL engines keep to the connection budget (settings.db_pool_*) and raise DatabaseUnavailable
    (transient) when the server refuses or drops a connection or the pool has none free in time.
    """
    if isinstance(settings, str):
        settings = Settings(database_url=settings)
    if settings.cloudsql_instance and url is None:
        return _postgres(_cloudsql_engine(settings, **_pool_options(settings, kwargs)))
    url_ = sa.make_url(url or settings.database_url)
    return _engine_for_url(settings, url_, kwargs)


def _engine_for_url(settings: Settings, url: sa.URL, kwargs: dict[str, Any]) -> sa.Engine:
    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.get_backend_name() == "postgresql":
        if url.get_driver_name() != "pg8000":
            url = url.set(drivername="postgresql+pg8000")
        return _postgres(sa.create_engine(url, **_pool_options(settings, kwargs)))
    raise UsageError(
        f"database URL {url.render_as_string(hide_password=True)!r} is not supported; use sqlite:/// or postgresql+pg8000://"
    )


def _postgres(engine: sa.Engine) -> sa.Engine:
    """A PostgreSQL engine as every one is set up: connections that send at once, errors as the retry policy reads them.

    TCP_NODELAY: pg8000 writes a message through an 8 KiB buffered file, so a statement with more than
    8 KiB of parameters (a multi-row INSERT) goes out as several segments; Nagle's algorithm then holds
    the last one until the server's delayed ACK of the first, about 40 ms per statement.
    """
    sa.event.listen(engine, "connect", _set_no_delay)
    return _unavailable_is_transient(engine)


def _set_no_delay(dbapi_conn: Any, _record: Any) -> None:
    sock = getattr(dbapi_conn, "_usock", None)
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


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

    return sa.create_engine("postgresql+pg8000://", creator=connect, **kwargs)


class BudgetPool(sa.pool.QueuePool):
    """QueuePool whose "none free in time" is DatabaseUnavailable, so every layer treats it as transient."""

    def _do_get(self) -> Any:
        try:
            return super()._do_get()
        except sa.exc.TimeoutError as e:
            raise DatabaseUnavailable(
                f"no database connection came free within {self._timeout:g} s (pool of {self.size()} + "
                f"{self._max_overflow} overflow); retry later") from e


def _pool_options(settings: Settings, given: dict[str, Any]) -> dict[str, Any]:
    """The per-process connection budget from settings; explicit keyword arguments win (tests, a NullPool)."""
    if "poolclass" in given and given["poolclass"] is not BudgetPool:
        return {"pool_pre_ping": True, **given}
    return {"poolclass": BudgetPool, "pool_size": settings.db_pool_size, "max_overflow": settings.db_max_overflow,
            "pool_timeout": settings.db_pool_timeout, "pool_recycle": settings.db_pool_recycle,
            "pool_pre_ping": True, **given}


# SQLSTATE classes and codes after which the same unit of work may succeed later: connection exceptions
# (08, PgBouncer's refusals too), insufficient resources (53: too many clients, out of memory), the
# server shutting down or starting (57P01-57P03), serialization failures and deadlocks (40001, 40P01).
_TRANSIENT_SQLSTATE_CLASSES = ("08", "53")
_TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "40001", "40P01"})


def sqlstate(error: BaseException | None) -> str | None:
    """The SQLSTATE of a pg8000 error (its first argument is the server's error fields), else None."""
    fields = error.args[0] if error is not None and error.args else None
    code = fields.get("C") if isinstance(fields, dict) else None
    return code if isinstance(code, str) else None


def _unavailable_is_transient(engine: sa.Engine) -> sa.Engine:
    """Translate the database's "not now" into DatabaseUnavailable; every other error stays as it is."""

    def translate(ctx: sa.engine.ExceptionContext) -> None:
        if ctx.is_pre_ping:
            # A pooled connection the server dropped (a restart, a failover): the pool replaces it
            # with a new one unless this raises, so only a failed new connection is "unavailable".
            return
        original = ctx.original_exception
        code = sqlstate(original)
        dropped = ctx.is_disconnect or isinstance(original, ctx.dialect.loaded_dbapi.InterfaceError)
        if dropped or (code is not None and (code[:2] in _TRANSIENT_SQLSTATE_CLASSES or code in _TRANSIENT_SQLSTATES)):
            why = (original.args[0].get("M") if code else None) or type(original).__name__
            raise DatabaseUnavailable(f"the metadata database is unavailable ({why}); retry later") from original

    sa.event.listen(engine, "handle_error", translate)
    ping = engine.dialect.do_ping

    def do_ping(dbapi_connection: Any) -> bool:
        try:
            return ping(dbapi_connection)
        except OSError:
            # pg8000 lets a reset seen on its first read out unwrapped (no DBAPI error), which the
            # pre-ping would not take for a dropped connection: it is one, so the pool replaces it.
            return False

    engine.dialect.do_ping = do_ping  # type: ignore[method-assign]
    return engine


def make_session_factory(engine: sa.Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with factory() as session, session.begin():
        yield session
