"""The audit log's partition lifecycle on PostgreSQL, run by the hourly maintenance tick.

    create ahead  ->  attached (queried)  ->  detached (older than the retention)  ->  exported  ->  dropped

Each hour: the partitions of this month and the next `audit_partitions_ahead` exist; with a retention
of N months, every month partition that ended more than N months before this month's start is
detached (it leaves the audit log's queries at once), written to `audit_archive_url` as
`audit/<partition>.jsonl.gz`, read back and counted, and only then dropped. A run that stops
anywhere between is finished by the next one: detached tables are found by name.

The archive is plain JSON lines, gzip-compressed, one object per row (ISO 8601 UTC times): an
auditor reads it with zcat or loads it into BigQuery without FireBackup or its keys, years after
the rows left the database. It holds no secrets (the audit log never does), and lives in the
platform's own bucket, encrypted at rest by the provider and readable by the platform's service
account only, so it is not sealed like tenant backups (those hold tenant data under tenant keys).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
import zlib
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from firebackup.db import partitions
from firebackup.errors import UsageError
from firebackup.services.context import SystemTx
from firebackup.storage import Storage, open_storage

log = logging.getLogger("firebackup.maintenance")

PAGE_ROWS = 5000  # rows read per query while exporting: memory stays flat whatever a month holds
ARCHIVE_PREFIX = "audit/"


@dataclass
class PartitionReport:
    created: list[str] = field(default_factory=list)
    archived: dict[str, int] = field(default_factory=dict)  # partition -> rows exported, then dropped


def archive_key(name: str) -> str:
    return f"{ARCHIVE_PREFIX}{name}.jsonl.gz"


def maintain(tx: SystemTx, now: dt.datetime, *, storage: Storage | None = None) -> PartitionReport:
    """Create partitions ahead; detach, export and drop the expired ones. Nothing to do on SQLite."""
    report = PartitionReport()
    with tx() as ctx:
        conn = ctx.session.connection()
        if not partitions.is_partitioned(conn):
            return report
        settings = ctx.ports.settings
        this_month = partitions.month_start(now)
        report.created = partitions.ensure_months(
            conn, this_month, partitions.add_months(this_month, settings.audit_partitions_ahead))
    if not settings.audit_retention_months:
        return report
    if storage is None:
        if not settings.audit_archive_url:
            raise UsageError("FIREBACKUP_AUDIT_RETENTION_MONTHS is set but FIREBACKUP_AUDIT_ARCHIVE_URL is not; "
                             "audit partitions are kept until there is somewhere to export them")
        storage = open_storage(settings.audit_archive_url)
    cutoff = partitions.add_months(this_month, -settings.audit_retention_months)
    with tx() as ctx:
        conn = ctx.session.connection()
        for name, month in partitions.attached(conn):
            if partitions.add_months(month, 1) <= cutoff:
                partitions.detach(conn, name)
    with tx() as ctx:
        waiting = partitions.detached(ctx.session.connection())
    for name in waiting:
        rows = export_and_drop(tx, storage, name)
        if rows:
            report.archived[name] = rows
    return report


def export_and_drop(tx: SystemTx, storage: Storage, name: str) -> int:
    """Write a detached month table to storage, check the object holds every row, then drop the table.

    An empty month is dropped without an object. Returns the number of rows archived.
    """
    key = archive_key(name)
    with tx() as ctx:
        conn = ctx.session.connection()
        if not conn.scalar(sa.text(f"SELECT EXISTS (SELECT 1 FROM {name})")):  # names come from partitions only
            partitions.drop(conn, name)
            return 0
    written = 0
    squeeze = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: a gzip stream, as `zcat` reads it
    with storage.open_write(key) as out:
        after: tuple[dt.datetime, str] | None = None
        while True:
            with tx() as ctx:
                rows = _page(ctx.session.connection(), name, after)
            if not rows:
                break
            out.write(squeeze.compress("".join(_line(r) for r in rows).encode()))
            written += len(rows)
            after = (rows[-1]["created_at"], rows[-1]["id"])
        out.write(squeeze.flush())
    with storage.open_read(key) as raw, gzip.GzipFile(fileobj=raw) as lines:  # streamed: a month may be large
        stored = sum(piece.count(b"\n") for piece in iter(lambda: lines.read(1 << 20), b""))
    with tx() as ctx:
        conn = ctx.session.connection()
        in_table = conn.scalar(sa.text(f"SELECT count(*) FROM {name}"))
        if stored != in_table or written != in_table:
            raise RuntimeError(f"audit archive {key} holds {stored} rows, {name} {in_table}: the table is kept; "
                               "the next maintenance run exports it again")
        partitions.drop(conn, name)
    log.info("audit partition %s: %d rows archived to %s, table dropped", name, written, key)
    return written


def _page(conn: sa.Connection, name: str, after: tuple[dt.datetime, str] | None) -> list[dict[str, Any]]:
    where = "WHERE (created_at, id) > (:t, :i)" if after else ""
    params = {"t": after[0], "i": after[1]} if after else {}
    result = conn.execute(sa.text(f"SELECT * FROM {name} {where} ORDER BY created_at, id LIMIT {PAGE_ROWS}"), params)
    return [dict(r) for r in result.mappings()]


def _line(row: dict[str, Any]) -> str:
    out = {k: (v.replace(tzinfo=dt.timezone.utc).isoformat() if isinstance(v, dt.datetime) else v)
           for k, v in row.items()}
    return json.dumps(out, separators=(",", ":"), sort_keys=True) + "\n"
