"""point-in-time restores run as restore jobs: the instant, scope and gap choice on the restore row

A point-in-time restore is a restore of its base backup plus the captured changes up to an
instant; the row keeps what its worker needs (instant, scope, allow_gaps, keep_references), the
warnings the API gave, and the counts only it has (changes applied, documents deleted).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_COLUMNS = ("at_ns", "scope", "allow_gaps", "keep_references", "warnings", "changes_applied", "documents_deleted")


def upgrade() -> None:
    with op.batch_alter_table("restores") as batch:
        batch.add_column(sa.Column("at_ns", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("scope", sa.Text(), nullable=True))
        batch.add_column(sa.Column("allow_gaps", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("keep_references", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("warnings", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("changes_applied", sa.BigInteger(), server_default="0", nullable=False))
        batch.add_column(sa.Column("documents_deleted", sa.BigInteger(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("restores") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
