"""point-in-time recovery capture: each change's database and operation, the project's wrapped PITR key

pitr_changes gains database_id and operation and an index for (project, database, time) range
scans; pitr_configs gains the project's PITR data key wrapped by the organization's KEK and how far
gap detection has checked; pitr_gaps holds the windows in which capture missed writes.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pitr_changes") as batch:
        batch.add_column(sa.Column("database_id", sa.String(length=64), nullable=False, server_default="(default)"))
        batch.add_column(sa.Column("operation", sa.String(length=8), nullable=False, server_default="update"))
        batch.create_index("ix_pitr_changes_project_database_time", ["project_id", "database_id", "update_time"])
    with op.batch_alter_table("pitr_configs") as batch:
        batch.add_column(sa.Column("wrapped_dek", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("kek_id", sa.String(length=600), nullable=True))
        batch.add_column(sa.Column("gaps_checked_through", sa.DateTime(), nullable=True))
    op.create_table(
        "pitr_gaps",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("start_ns", sa.BigInteger(), nullable=False),
        sa.Column("end_ns", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("backup_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name=op.f("fk_pitr_gaps_project_id_projects"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pitr_gaps")),
        sa.UniqueConstraint("project_id", "start_ns", "end_ns", name=op.f("uq_pitr_gaps_project_id_start_ns_end_ns")),
    )
    with op.batch_alter_table("pitr_gaps") as batch:
        batch.create_index(batch.f("ix_pitr_gaps_project_id"), ["project_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("pitr_gaps") as batch:
        batch.drop_index(batch.f("ix_pitr_gaps_project_id"))
    op.drop_table("pitr_gaps")
    with op.batch_alter_table("pitr_configs") as batch:
        batch.drop_column("gaps_checked_through")
        batch.drop_column("kek_id")
        batch.drop_column("wrapped_dek")
    with op.batch_alter_table("pitr_changes") as batch:
        batch.drop_index("ix_pitr_changes_project_database_time")
        batch.drop_column("operation")
        batch.drop_column("database_id")
