"""webhook delivery log: when the next attempt is due, and what the last one took and got

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_INDEX = "ix_webhook_deliveries_state_next_attempt_at"


def upgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("last_attempt_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("duration_ms", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("response_excerpt", sa.String(length=256), nullable=True))
        batch.create_index(_INDEX, ["state", "next_attempt_at"], unique=False)
    # Deliveries still pending from before are due now: maintenance sends them again.
    op.execute("UPDATE webhook_deliveries SET next_attempt_at = created_at WHERE state = 'pending'")


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_index(_INDEX)
        for name in ("response_excerpt", "duration_ms", "last_attempt_at", "next_attempt_at"):
            batch.drop_column(name)
