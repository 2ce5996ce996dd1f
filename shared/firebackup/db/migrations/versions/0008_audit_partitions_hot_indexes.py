"""the audit log partitioned by month on PostgreSQL; indexes for the reaper, queue depth and due schedules

PostgreSQL: audit_log becomes a table partitioned by RANGE (created_at), one partition per month from
its oldest row to three months ahead (maintenance keeps creating them) and a default partition; every
row is copied over in this transaction. Its primary key becomes (id, created_at), since a partitioned
table's unique keys must hold the partition key; ids stay unique by construction (models.new_id).
SQLite keeps one table. On both: partial indexes on the active jobs (state pending or running: the
reaper and the queue gauges read only those), and schedules.next_run_at (NULL: the next tick works it
out) with a partial index on the enabled ones, so the scheduler's tick reads the due schedules only.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

from firebackup.db import partitions

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

AHEAD = 3  # months of partitions made here; maintenance tops up to settings.audit_partitions_ahead
_ACTIVE = "state IN ('pending', 'running')"
_COLUMNS = """
    id VARCHAR(40) NOT NULL, org_id VARCHAR(40), actor_type VARCHAR(16) NOT NULL, actor_id VARCHAR(40),
    action VARCHAR(64) NOT NULL, resource_type VARCHAR(32), resource_id VARCHAR(64), ip VARCHAR(64),
    user_agent VARCHAR(512), result VARCHAR(16) NOT NULL, details JSON, created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL
"""
_NAMES = "id, org_id, actor_type, actor_id, action, resource_type, resource_id, ip, user_agent, result, details, created_at"


def _keys_and_indexes(table: str, primary_key: str) -> None:
    """The audit log's constraints and indexes under their usual names (a partitioned table passes them on)."""
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_audit_log PRIMARY KEY ({primary_key})")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT fk_audit_log_org_id_organizations FOREIGN KEY (org_id) "
               "REFERENCES organizations (id) ON DELETE CASCADE")
    op.execute(f"CREATE INDEX ix_audit_org_id ON {table} (org_id, id)")
    op.execute(f"CREATE INDEX ix_audit_log_action ON {table} (action)")


def upgrade() -> None:
    for table in ("backups", "restores"):
        op.create_index(f"ix_{table}_active", table, ["state"], postgresql_where=sa.text(_ACTIVE),
                        sqlite_where=sa.text(_ACTIVE))
    with op.batch_alter_table("schedules") as batch:
        batch.add_column(sa.Column("next_run_at", sa.DateTime(), nullable=True))
    enabled = sa.text("enabled")
    op.create_index("ix_schedules_due", "schedules", ["next_run_at"], postgresql_where=enabled, sqlite_where=enabled)
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    oldest = conn.scalar(sa.text("SELECT min(created_at) FROM audit_log"))
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    op.execute(f"CREATE TABLE audit_log_partitioned ({_COLUMNS}) PARTITION BY RANGE (created_at)")
    op.execute(f"ALTER TABLE audit_log RENAME TO audit_log_unpartitioned")
    op.execute("ALTER TABLE audit_log_partitioned RENAME TO audit_log")
    op.execute(f"CREATE TABLE {partitions.DEFAULT} PARTITION OF audit_log DEFAULT")
    first = partitions.month_start(min(oldest, now) if oldest is not None else now)
    partitions.ensure_months(conn, first, partitions.add_months(partitions.month_start(now), AHEAD))
    op.execute(f"INSERT INTO audit_log ({_NAMES}) SELECT {_NAMES} FROM audit_log_unpartitioned")
    op.execute("DROP TABLE audit_log_unpartitioned")
    _keys_and_indexes("audit_log", "id, created_at")


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        # Month tables detached but not yet exported still hold rows: they come back too.
        leftovers = partitions.detached(conn)
        op.execute(f"CREATE TABLE audit_log_plain ({_COLUMNS})")
        for source in ("audit_log", *leftovers):
            op.execute(f"INSERT INTO audit_log_plain ({_NAMES}) SELECT {_NAMES} FROM {source}")
        op.execute("DROP TABLE audit_log")
        for name in leftovers:
            partitions.drop(conn, name)
        op.execute("ALTER TABLE audit_log_plain RENAME TO audit_log")
        _keys_and_indexes("audit_log", "id")
    op.drop_index("ix_schedules_due", "schedules")
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("next_run_at")
    for table in ("backups", "restores"):
        op.drop_index(f"ix_{table}_active", table)
