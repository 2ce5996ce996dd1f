"""The control plane through PgBouncer in transaction mode: migrations, and a backup started by the API and run by
its workers, with no named server-side prepared statement or session setting the pooler would break."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from firebackup.db.migrate import downgrade, upgrade
from firebackup.db.partitions import is_partition
from firebackup.db.session import make_engine
from tests.integration.conftest import postgres_database
from tests.integration.controlplane.jobs_world import World, seed

# What a pooler in transaction mode hands to the next client along with the server connection.
SESSION_STATE = ("PREPARE ", "SET ", "LISTEN ", "DECLARE ", "CREATE TEMP", "LOCK ", "SELECT PG_ADVISORY_LOCK")


@pytest.fixture
def pooled_url(postgres_server, pgbouncer_server) -> Iterator[str]:
    """A fresh database, reached through PgBouncer."""
    with postgres_database(postgres_server.url, "b") as direct:
        yield sa.make_url(direct).set(port=pgbouncer_server.port).render_as_string(hide_password=False)


class Watch:
    """Every statement the engine sent, and the named statements pg8000 prepared on each connection."""

    def __init__(self, engine: sa.Engine) -> None:
        self.statements: list[str] = []
        self.named: set[Any] = set()
        sa.event.listen(engine, "before_cursor_execute", self._statement)
        sa.event.listen(engine.pool, "checkin", self._checkin)

    def _statement(self, conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        self.statements.append(statement)

    def _checkin(self, dbapi_conn: Any, record: Any) -> None:
        # pg8000 keeps the names of the statements it prepared on the server here (Connection.prepare);
        # it executes everything else as the unnamed statement, which lives inside one transaction.
        if dbapi_conn is not None:
            self.named |= set(dbapi_conn._statement_nums)

    def session_state(self) -> list[str]:
        return [s for s in self.statements if s.lstrip().upper().startswith(SESSION_STATE)]


def _head(engine: sa.Engine) -> str:
    """The newest migration, as Alembic's script directory names it."""
    from alembic.script import ScriptDirectory

    from firebackup.db.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert head is not None
    return head


def test_migrations_run_up_and_down_through_pgbouncer_in_transaction_mode(pooled_url: str) -> None:
    engine = make_engine(pooled_url)
    watch = Watch(engine)
    try:
        upgrade(engine)
        with engine.connect() as c:
            assert c.scalar(sa.text("SELECT version_num FROM alembic_version")) == _head(engine)
            assert c.scalar(sa.text("SELECT relkind FROM pg_class WHERE relname = 'audit_log'")) == "p"
        downgrade(engine, "base")
        assert [t for t in sa.inspect(engine).get_table_names() if not is_partition(t)] == ["alembic_version"]
        upgrade(engine)
    finally:
        engine.dispose()
    assert watch.named == set()
    assert watch.session_state() == []


def test_a_backup_runs_through_the_api_and_its_workers_over_pgbouncer(
        pooled_url: str, firestore_emulator, monkeypatch, tmp_path: Path, project_id: str) -> None:
    firestore_emulator.apply(monkeypatch)
    count = seed(project_id)
    engine = make_engine(pooled_url)
    try:
        upgrade(engine)
        watch = Watch(engine)
        world = World(engine, tmp_path, chunk_docs=5)
        backup_id = world.start(project_id)
        ran = world.drain()
        row = world.row(backup_id)
        assert (row.state, row.documents) == ("completed", count), row.error
        assert {"backup.plan", "backup.chunk", "backup.finalize"} <= set(ran)
        assert len(world.backed_up_names(backup_id)) == count
        audit = world.org.ok("GET", "/audit")["items"]
        assert "backup.start" in {a["action"] for a in audit}
    finally:
        engine.dispose()
    assert watch.named == set()
    assert watch.session_state() == []
