"""The audit log's monthly partitions on PostgreSQL: naming, creating ahead, detaching, listing.

`audit_log` is partitioned by RANGE (created_at), one partition per calendar month (UTC) named
`audit_log_y2026m11`, plus `audit_log_default` for a row no month partition takes (maintenance did
not run for months): an insert never fails for want of a partition. SQLite keeps one plain table;
nothing here runs there. Migration 0008 and services/maintenance.py both use these functions.
"""

from __future__ import annotations

import re
from datetime import datetime

import sqlalchemy as sa

PARENT = "audit_log"
DEFAULT = "audit_log_default"
_NAME = re.compile(r"audit_log_y(\d{4})m(\d{2})")


def month_start(t: datetime) -> datetime:
    """The first instant of t's month, naive UTC (what the column stores)."""
    return t.replace(tzinfo=None, day=1, hour=0, minute=0, second=0, microsecond=0)


def add_months(month: datetime, n: int) -> datetime:
    index = month.year * 12 + month.month - 1 + n
    return month.replace(year=index // 12, month=index % 12 + 1)


def partition_name(month: datetime) -> str:
    return f"{PARENT}_y{month.year:04d}m{month.month:02d}"


def month_of(name: str) -> datetime | None:
    """The month a partition's name stands for; None for any other table name."""
    m = _NAME.fullmatch(name)
    return datetime(int(m.group(1)), int(m.group(2)), 1) if m else None


def is_partition(table: str) -> bool:
    """A month or default partition of the audit log (schema comparisons look at the parent only)."""
    return table == DEFAULT or month_of(table) is not None


def not_a_partition(name: str | None, type_: str, _parents: object) -> bool:
    """Alembic's include_name: compare the models with the parent table, never its partitions."""
    return not (type_ == "table" and name is not None and is_partition(name))


def _bounds(month: datetime) -> str:
    return f"FROM ('{month:%Y-%m-%d %H:%M:%S}') TO ('{add_months(month, 1):%Y-%m-%d %H:%M:%S}')"


def is_partitioned(conn: sa.Connection) -> bool:
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.scalar(sa.text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"), {"t": PARENT})
    return bool(kind == "p")


def attached(conn: sa.Connection) -> list[tuple[str, datetime]]:
    """The month partitions attached to the audit log, oldest first."""
    names = conn.scalars(sa.text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass(:t)"), {"t": PARENT})
    months = [(name, month_of(name)) for name in names]
    return sorted(((n, m) for n, m in months if m is not None), key=lambda nm: nm[1])


def detached(conn: sa.Connection) -> list[str]:
    """Month tables detached from the audit log and not yet exported and dropped, oldest first."""
    names = conn.scalars(sa.text(
        "SELECT relname FROM pg_class WHERE relkind = 'r' AND NOT relispartition "
        "AND relnamespace = current_schema()::regnamespace AND relname ~ '^audit_log_y[0-9]{4}m[0-9]{2}$'"))
    return sorted(names)


def create_month(conn: sa.Connection, month: datetime) -> bool:
    """Create the partition of `month` unless it exists; returns whether it was created.

    Rows of that month already in the default partition move into it (PostgreSQL refuses a new
    partition whose rows sit in the default one), in this transaction.
    """
    name = partition_name(month)
    if conn.scalar(sa.text("SELECT to_regclass(:n) IS NOT NULL"), {"n": name}):
        return False
    lo, hi = month, add_months(month, 1)
    stray = conn.scalar(sa.text(f"SELECT EXISTS (SELECT 1 FROM {DEFAULT} WHERE created_at >= :lo AND created_at < :hi)"),
                        {"lo": lo, "hi": hi})
    if not stray:
        conn.exec_driver_sql(f"CREATE TABLE {name} PARTITION OF {PARENT} FOR VALUES {_bounds(month)}")
        return True
    conn.exec_driver_sql(f"ALTER TABLE {PARENT} DETACH PARTITION {DEFAULT}")
    conn.exec_driver_sql(f"CREATE TABLE {name} PARTITION OF {PARENT} FOR VALUES {_bounds(month)}")
    moved = f"created_at >= '{lo:%Y-%m-%d %H:%M:%S}' AND created_at < '{hi:%Y-%m-%d %H:%M:%S}'"
    conn.exec_driver_sql(f"INSERT INTO {PARENT} SELECT * FROM {DEFAULT} WHERE {moved}")
    conn.exec_driver_sql(f"DELETE FROM {DEFAULT} WHERE {moved}")
    conn.exec_driver_sql(f"ALTER TABLE {PARENT} ATTACH PARTITION {DEFAULT} DEFAULT")
    return True


def ensure_months(conn: sa.Connection, first: datetime, last: datetime) -> list[str]:
    """Create every month partition from first's month to last's (both included); returns the new ones."""
    created, month = [], month_start(first)
    while month <= month_start(last):
        if create_month(conn, month):
            created.append(partition_name(month))
        month = add_months(month, 1)
    return created


def detach(conn: sa.Connection, name: str) -> None:
    """Detach a month partition: its rows leave the audit log's queries and wait, as a table, for export."""
    if month_of(name) is None:
        raise ValueError(f"{name!r} is not an audit log month partition")
    conn.exec_driver_sql(f"ALTER TABLE {PARENT} DETACH PARTITION {name}")


def drop(conn: sa.Connection, name: str) -> None:
    if month_of(name) is None:
        raise ValueError(f"{name!r} is not an audit log month partition")
    conn.exec_driver_sql(f"DROP TABLE {name}")
