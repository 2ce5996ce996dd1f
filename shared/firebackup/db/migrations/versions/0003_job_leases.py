"""job leases: task rows for at-least-once delivery, the plan on the job row, chunk extras

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_JOB_COLUMNS = ("plan", "attempts", "heartbeat_at", "lease_until")


def _job_columns() -> list[sa.Column]:
    return [
        sa.Column("plan", sa.JSON(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
    ]


def upgrade() -> None:
    for table in ("backups", "restores"):
        with op.batch_alter_table(table) as batch:
            for column in _job_columns():
                batch.add_column(column)
    with op.batch_alter_table("restores") as batch:
        batch.add_column(sa.Column("documents_skipped", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("documents_failed", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("auth_users", sa.BigInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("backup_chunks") as batch:
        batch.add_column(sa.Column("extra", sa.JSON(), nullable=True))
    op.create_table(
        "job_tasks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("task_key", sa.String(length=64), nullable=False),
        sa.Column("done", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("resume_seq", sa.Integer(), nullable=True),
        sa.Column("resume_after", sa.Text(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_tasks")),
        sa.UniqueConstraint("job_id", "task_key", name=op.f("uq_job_tasks_job_id_task_key")),
    )


def downgrade() -> None:
    op.drop_table("job_tasks")
    with op.batch_alter_table("backup_chunks") as batch:
        batch.drop_column("extra")
    with op.batch_alter_table("restores") as batch:
        for name in ("documents_skipped", "documents_failed", "auth_users"):
            batch.drop_column(name)
    for table in ("backups", "restores"):
        with op.batch_alter_table(table) as batch:
            for name in _JOB_COLUMNS:
                batch.drop_column(name)
