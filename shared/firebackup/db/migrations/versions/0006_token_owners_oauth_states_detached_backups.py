"""API tokens bound to their creator (parent, expiry, may mint), single-use OAuth states, backups that
outlive their project or destination (foreign keys SET NULL instead of CASCADE)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Tokens made before this revision get the default lifetime from now rather than none.
_LEGACY_TOKEN_DAYS = 90
_BACKUP_FKS = (("project_id", "projects"), ("destination_id", "storage_destinations"))


def _fk(column: str, table: str) -> str:
    return f"fk_backups_{column}_{table}"


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("can_create_tokens", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("expires_at", sa.DateTime(), nullable=True))
        batch.create_foreign_key(op.f("fk_api_tokens_parent_id_api_tokens"), "api_tokens", ["parent_id"], ["id"],
                                 ondelete="CASCADE")
    tokens = sa.table("api_tokens", sa.column("id", sa.String), sa.column("created_by", sa.String),
                      sa.column("parent_id", sa.String), sa.column("expires_at", sa.DateTime))
    # A token made by a token recorded the parent token's id as its creator: that becomes its parent,
    # and its creator the parent's (a few passes follow chains of tokens).
    op.execute(tokens.update().where(tokens.c.created_by.like("tok\\_%", escape="\\"))
               .values(parent_id=tokens.c.created_by))
    parent = tokens.alias("parent")
    for _ in range(8):
        op.execute(tokens.update().where(tokens.c.created_by.like("tok\\_%", escape="\\")).values(
            created_by=sa.select(parent.c.created_by).where(parent.c.id == tokens.c.created_by).scalar_subquery()))
    expiry = {"sqlite": f"datetime('now', '+{_LEGACY_TOKEN_DAYS} days')",
              "postgresql": f"(now() at time zone 'utc') + interval '{_LEGACY_TOKEN_DAYS} days'"}
    op.execute(tokens.update().where(tokens.c.expires_at.is_(None))
               .values(expires_at=sa.text(expiry[op.get_bind().dialect.name])))

    op.create_table(
        "oauth_state_uses",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("nonce", name=op.f("pk_oauth_state_uses")),
    )
    op.create_index(op.f("ix_oauth_state_uses_expires_at"), "oauth_state_uses", ["expires_at"], unique=False)

    with op.batch_alter_table("backups") as batch:
        for column, table in _BACKUP_FKS:
            batch.alter_column(column, existing_type=sa.String(length=40), nullable=True)
            batch.drop_constraint(_fk(column, table), type_="foreignkey")
            batch.create_foreign_key(_fk(column, table), table, [column], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    # Detached backups have no project or destination to point at again: their records go.
    op.execute("DELETE FROM backups WHERE project_id IS NULL OR destination_id IS NULL")
    with op.batch_alter_table("backups") as batch:
        for column, table in _BACKUP_FKS:
            batch.drop_constraint(_fk(column, table), type_="foreignkey")
            batch.create_foreign_key(_fk(column, table), table, [column], ["id"], ondelete="CASCADE")
            batch.alter_column(column, existing_type=sa.String(length=40), nullable=False)
    op.drop_index(op.f("ix_oauth_state_uses_expires_at"), table_name="oauth_state_uses")
    op.drop_table("oauth_state_uses")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_constraint(op.f("fk_api_tokens_parent_id_api_tokens"), type_="foreignkey")
        for name in ("expires_at", "can_create_tokens", "parent_id"):
            batch.drop_column(name)
