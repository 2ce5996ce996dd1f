"""key rotations run as jobs: one row per rotation of an organization's backups to a Cloud KMS key

A rotation re-wraps every completed backup's manifest in a task on the backup queue; the row holds
its state, its counts and (with its JobTask row) where a redelivered task resumes.

Revision ID: 0011
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_rotations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("kms_key_name", sa.String(length=512), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("rewrapped", sa.Integer(), server_default="0", nullable=False),
        sa.Column("already_current", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failed", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], name=op.f("fk_key_rotations_org_id_organizations"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_rotations")),
    )
    op.create_index(op.f("ix_key_rotations_org_id"), "key_rotations", ["org_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_key_rotations_org_id"), table_name="key_rotations")
    op.drop_table("key_rotations")
