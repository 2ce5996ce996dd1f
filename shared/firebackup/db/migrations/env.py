"""Alembic environment: the engine comes from firebackup.db.migrate via config.attributes."""

from __future__ import annotations

from alembic import context

from firebackup.db.models import Base
from firebackup.db.partitions import not_a_partition

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch mode rebuilds a table (copy, DROP, rename). With foreign keys on, SQLite runs that DROP
        # as a DELETE that cascades into every referencing table: rebuilding `backups` emptied
        # `backup_chunks`, rebuilding `organizations` emptied everything an organization owns. The
        # pragma only takes effect outside a transaction, so it is set before Alembic begins one.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=sqlite,
        compare_type=True,
        # The audit log's partitions are made by migration 0008 and maintenance, not by the models.
        include_name=not_a_partition,
    )
    try:
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
        problems = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall() if sqlite else []
    finally:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
    if problems:
        raise RuntimeError(f"the migration left rows that break foreign keys: {problems[:5]}")
