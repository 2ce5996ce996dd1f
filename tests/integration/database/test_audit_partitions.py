"""The audit log partitioned by month on PostgreSQL: migration 0008 up and down with rows in place, and the
partition lifecycle maintenance runs (created ahead, expired months detached, archived to storage, dropped)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from firebackup.crypto.secrets import LocalMasterKey, Sealer
from firebackup.db import partitions
from firebackup.db.migrate import downgrade, upgrade
from firebackup.db.models import AuditLog
from firebackup.db.session import make_engine, make_session_factory
from firebackup.services import maintenance
from firebackup.services.context import system_transactions
from firebackup.services.ports import RecordingQueue
from firebackup.settings import Settings
from firebackup.bootstrap import ports
from tests.integration.conftest import postgres_database

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
MONTHS = [dt.datetime(2025, m, 10, 8, 30) for m in (1, 6, 11)] + [dt.datetime(2026, 10, 2), dt.datetime(2026, 11, 1)]


@pytest.fixture
def pg_url(postgres_server) -> Iterator[str]:
    with postgres_database(postgres_server.url, "a") as url:
        yield url


def _seed(conn: sa.Connection, per_month: int = 3) -> int:
    conn.exec_driver_sql("INSERT INTO organizations (id, name, created_at) VALUES ('org_a', 'A', now()), "
                         "('org_b', 'B', now())")
    rows = [{"id": f"aud_{i:03d}_{j}", "org": ("org_a", "org_b")[j % 2], "t": t + dt.timedelta(minutes=j),
             "d": json.dumps({"n": j})} for i, t in enumerate(MONTHS) for j in range(per_month)]
    conn.execute(sa.text("INSERT INTO audit_log (id, org_id, actor_type, action, result, details, created_at) "
                         "VALUES (:id, :org, 'user', 'backup.start', 'success', CAST(:d AS json), :t)"), rows)
    return len(rows)


def _rows(conn: sa.Connection) -> list[tuple]:
    return list(conn.execute(sa.text("SELECT id, org_id, created_at, details::text FROM audit_log ORDER BY id")))


def test_upgrade_partitions_the_audit_log_by_month_and_downgrade_folds_it_back_without_losing_a_row(pg_url):
    engine = make_engine(pg_url)
    try:
        upgrade(engine, "0007")
        with engine.begin() as c:
            _seed(c)
            before = _rows(c)
        upgrade(engine, "0008")
        with engine.begin() as c:
            assert partitions.is_partitioned(c)
            assert _rows(c) == before
            homes = dict(c.execute(sa.text(
                "SELECT id, tableoid::regclass::text FROM audit_log WHERE id LIKE 'aud\\_%\\_0'")).all())
            assert homes == {"aud_000_0": "audit_log_y2025m01", "aud_001_0": "audit_log_y2025m06",
                             "aud_002_0": "audit_log_y2025m11", "aud_003_0": "audit_log_y2026m10",
                             "aud_004_0": "audit_log_y2026m11"}
        with engine.connect() as c, c.begin() as t:
            # An organization's rows still go with it (the foreign key moved to the partitioned table).
            c.exec_driver_sql("DELETE FROM organizations WHERE id = 'org_b'")
            assert c.scalar(sa.text("SELECT count(DISTINCT org_id) FROM audit_log")) == 1
            t.rollback()
        downgrade(engine, "0007")
        with engine.begin() as c:
            assert not partitions.is_partitioned(c)
            assert c.scalar(sa.text("SELECT relkind FROM pg_class WHERE relname = 'audit_log'")) == "r"
            assert _rows(c) == before
            assert c.scalar(sa.text("SELECT count(*) FROM pg_class WHERE relname LIKE 'audit\\_log\\_y%'")) == 0
    finally:
        engine.dispose()


def _maintenance(engine: sa.Engine, **settings_: object) -> maintenance.Report:
    settings = Settings(database_url=str(engine.url), master_key=os.urandom(32), **settings_)  # type: ignore[arg-type]
    built = ports(settings, sealer=Sealer(LocalMasterKey(os.urandom(32))), queue=RecordingQueue())
    tx = system_transactions(make_session_factory(engine), built)
    return maintenance.run(tx, NOW, reap_after=dt.timedelta(hours=1))


def test_maintenance_creates_months_ahead_and_archives_expired_months_to_storage_before_dropping_them(
        pg_url, tmp_path: Path):
    engine = make_engine(pg_url)
    archive = tmp_path / "archive"
    try:
        upgrade(engine, "0007")
        with engine.begin() as c:
            _seed(c)
            before = _rows(c)
        upgrade(engine)
        report = _maintenance(engine, audit_partitions_ahead=6, audit_retention_months=12,
                              audit_archive_url=archive.as_uri())
        assert report.errors == []
        # Kept: November 2025 onwards (12 months before this month's start); archived: January and June 2025.
        assert report.audit_partitions_archived == {"audit_log_y2025m01": 3, "audit_log_y2025m06": 3}
        ahead = {partitions.partition_name(partitions.add_months(dt.datetime(2026, 11, 1), n)) for n in range(7)}
        assert set(report.audit_partitions_created) <= ahead
        with engine.begin() as c:
            names = {n for n, _ in partitions.attached(c)}
            assert ahead <= names
            assert "audit_log_y2025m06" not in names and "audit_log_y2025m11" in names
            assert partitions.detached(c) == []
            assert c.scalar(sa.text("SELECT to_regclass('audit_log_y2025m01')")) is None
            kept = _rows(c)
        assert kept == [r for r in before if r[2] >= dt.datetime(2025, 11, 1)]
        for name, month in (("audit_log_y2025m01", 1), ("audit_log_y2025m06", 6)):
            lines = gzip.decompress((archive / "audit" / f"{name}.jsonl.gz").read_bytes()).decode().splitlines()
            records = [json.loads(line) for line in lines]
            assert [(r["id"], r["org_id"], r["details"]) for r in records] == [
                (i, org, json.loads(d)) for i, org, t, d in before if t.year == 2025 and t.month == month]
            assert all(r["created_at"].endswith("+00:00") for r in records)
        # A second run has nothing left to do and loses nothing more.
        again = _maintenance(engine, audit_partitions_ahead=6, audit_retention_months=12,
                             audit_archive_url=archive.as_uri())
        assert (again.audit_partitions_archived, again.audit_partitions_created, again.errors) == ({}, [], [])
    finally:
        engine.dispose()


def test_a_retention_without_an_archive_keeps_every_partition_and_says_what_to_set(pg_url):
    engine = make_engine(pg_url)
    try:
        upgrade(engine, "0007")
        with engine.begin() as c:
            count = _seed(c)
        upgrade(engine)
        report = _maintenance(engine, audit_retention_months=1)
        assert [e for e in report.errors if e.startswith("audit_partitions:")] == [
            "audit_partitions: FIREBACKUP_AUDIT_RETENTION_MONTHS is set but FIREBACKUP_AUDIT_ARCHIVE_URL is not; "
            "audit partitions are kept until there is somewhere to export them"]
        with engine.begin() as c:
            assert c.scalar(sa.text("SELECT count(*) FROM audit_log")) == count
    finally:
        engine.dispose()


def test_a_row_beyond_every_month_partition_lands_in_the_default_one_and_moves_when_its_month_is_made(pg_url):
    engine = make_engine(pg_url)
    far = dt.datetime(2031, 3, 4, 5, 6, tzinfo=UTC)
    try:
        upgrade(engine)
        factory = make_session_factory(engine)
        with factory.begin() as s:
            s.execute(sa.text("INSERT INTO organizations (id, name, created_at) VALUES ('org_a', 'A', now())"))
            s.add(AuditLog(id="aud_far", org_id="org_a", actor_type="system", action="x", result="success",
                           created_at=far))
        with engine.begin() as c:
            assert c.scalar(sa.text("SELECT tableoid::regclass::text FROM audit_log")) == partitions.DEFAULT
            assert partitions.ensure_months(c, far.replace(tzinfo=None), far.replace(tzinfo=None)) == [
                "audit_log_y2031m03"]
        with engine.begin() as c:
            assert c.execute(sa.text("SELECT id, tableoid::regclass::text FROM audit_log")).all() == [
                ("aud_far", "audit_log_y2031m03")]
    finally:
        engine.dispose()


def test_sqlite_keeps_one_audit_table_and_maintenance_leaves_it_be(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'firebackup.db'}")
    try:
        upgrade(engine)
        report = _maintenance(engine, audit_retention_months=1, audit_archive_url=(tmp_path / "a").as_uri())
        assert (report.errors, report.audit_partitions_created, report.audit_partitions_archived) == ([], [], {})
        assert not any(partitions.is_partition(t) for t in sa.inspect(engine).get_table_names())
        assert not (tmp_path / "a").exists()
    finally:
        engine.dispose()
