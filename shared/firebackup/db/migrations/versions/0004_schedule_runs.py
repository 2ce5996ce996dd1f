"""schedule runs: one row per started due instant; GFS retention (keep_days becomes keep_within)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_schedules = sa.table("schedules", sa.column("id", sa.String()), sa.column("retention", sa.JSON()))


def upgrade() -> None:
    op.create_table(
        "schedule_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("schedule_id", sa.String(length=40), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("backup_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["schedule_id"], ["schedules.id"], name=op.f("fk_schedule_runs_schedule_id_schedules"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["backup_id"], ["backups.id"], name=op.f("fk_schedule_runs_backup_id_backups"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_runs")),
        sa.UniqueConstraint("schedule_id", "due_at", name=op.f("uq_schedule_runs_schedule_id_due_at")),
    )
    _rewrite_retention(_within_days)


def downgrade() -> None:
    _rewrite_retention(_days_within)
    op.drop_table("schedule_runs")


def _within_days(rules: dict[str, Any]) -> dict[str, Any]:
    """keep_days (age from now) becomes restic's keep_within in days (counted from the newest backup)."""
    if not rules.get("keep_days"):
        return rules
    out = {k: v for k, v in rules.items() if k != "keep_days"}
    out["keep_within"] = f"{rules['keep_days']}d"
    return out


def _days_within(rules: dict[str, Any]) -> dict[str, Any]:
    """Back to the two rules revision 0003 knew: keep_last, and keep_within in whole days as keep_days."""
    within = str(rules.get("keep_within") or "")
    out = {k: v for k, v in rules.items() if k == "keep_last"}
    if within.endswith("d") and within[:-1].isdigit():
        out["keep_days"] = int(within[:-1])
    return out


def _rewrite_retention(change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    conn = op.get_bind()
    for sid, retention in conn.execute(sa.select(_schedules.c.id, _schedules.c.retention)).all():
        new = change(dict(retention or {}))
        if new != (retention or {}):
            conn.execute(sa.update(_schedules).where(_schedules.c.id == sid).values(retention=new))
