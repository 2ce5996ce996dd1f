"""organizations choose their backups' key-encryption key: a Cloud KMS key of their own (BYOK)

kms_key_name wraps each new backup's data key; kms_key_previous is the key a rotation is moving
away from, still accepted to read the manifests it has not re-wrapped yet.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organizations") as batch:
        batch.add_column(sa.Column("kms_key_name", sa.String(length=512), nullable=True))
        batch.add_column(sa.Column("kms_key_previous", sa.String(length=512), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("organizations") as batch:
        batch.drop_column("kms_key_previous")
        batch.drop_column("kms_key_name")
