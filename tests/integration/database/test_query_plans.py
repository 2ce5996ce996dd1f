"""Each hot query of the control plane, as the services send it, uses its index on a database at realistic volume
(1,000 organizations, 200,000 backups, 1,000,000 audit rows): EXPLAIN shows no sequential scan of a big table."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from firebackup.bootstrap import ports
from firebackup.crypto.secrets import LocalMasterKey, Sealer
from firebackup.db.session import make_session_factory
from firebackup.services import jobs, maintenance, orgs, scheduling
from firebackup.services.commands import AuditFilter, PageRequest
from firebackup.services.context import Ctx, SystemTx, system_transactions
from firebackup.services.job_store import queue_depth
from firebackup.services.ports import RecordingQueue
from firebackup.settings import Settings
from infra.local.db_volume import org_id
from tests.integration.database.conftest import VOLUME_NOW

BIG = ("backups", "restores", "audit_log", "schedules")
ORG = org_id(417)


def _tx(engine: sa.Engine) -> SystemTx:
    key = os.urandom(32)
    built = ports(Settings(database_url=str(engine.url), master_key=key), sealer=Sealer(LocalMasterKey(key)),
                  queue=RecordingQueue())
    return system_transactions(make_session_factory(engine), built)


def _sent(engine: sa.Engine, call: Callable[[], Any]) -> list[tuple[str, Any]]:
    """The SELECT statements (with their parameters) the engine sent while `call` ran."""
    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        call()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert sent, "the call sent no query"
    return sent


def _scans(engine: sa.Engine, statement: str, parameters: Any) -> list[tuple[str, str, str]]:
    """(node type, relation, index) of every scan in the statement's plan."""
    with engine.connect() as c:
        plan = c.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    out: list[tuple[str, str, str]] = []

    def walk(node: dict[str, Any]) -> None:
        if "Scan" in node["Node Type"]:
            out.append((node["Node Type"], node.get("Relation Name", ""), node.get("Index Name", "")))
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return out


def _big(engine: sa.Engine, relation: str) -> bool:
    """One of the big tables and not nearly empty: a month partition still ahead (or the default one) holds
    no rows, and reading an empty table whole is what the planner should do."""
    with engine.connect() as c:
        rows = c.scalar(sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:r)"), {"r": relation})
    return relation.startswith(BIG) and (rows or 0) > 1000


def _assert_indexed(engine: sa.Engine, call: Callable[[], Any], index: Callable[[str], bool]) -> None:
    for statement, parameters in _sent(engine, call):
        scans = _scans(engine, statement, parameters)
        seq = [s for s in scans if s[0] == "Seq Scan" and _big(engine, s[1])]
        assert seq == [], (statement, scans)
        assert any(index(name) for _, _, name in scans), (statement, scans)


@pytest.fixture
def ctx(volume_engine: sa.Engine) -> Iterator[Ctx]:
    with _tx(volume_engine)() as c:
        yield c


def _audit_index(name: str) -> bool:
    # The partitions' copies of ix_audit_org_id (org_id, id) are named by PostgreSQL after the partition.
    return name == "ix_audit_org_id" or (name.startswith("audit_log_y") and name.endswith("_org_id_id_idx"))


def test_the_backup_list_of_an_organization_newest_first_uses_its_index_on_every_page(volume_engine, ctx):
    first, cursor = jobs.list_backups(ctx, ORG, PageRequest(limit=50))
    assert len(first) == 50 and cursor == first[-1]["id"]
    assert [b["id"] for b in first] == sorted((b["id"] for b in first), reverse=True)
    for page in (PageRequest(limit=50), PageRequest(limit=50, cursor=cursor)):
        _assert_indexed(volume_engine, lambda p=page: jobs.list_backups(ctx, ORG, p),
                        lambda name: name == "ix_backups_org_created")


@pytest.mark.parametrize("query", [
    AuditFilter(limit=50),
    AuditFilter(limit=50, cursor="aud_0"),
    AuditFilter(limit=50, action="backup."),
    AuditFilter(limit=50, actor="usr_vol17", action="access.denied"),
    AuditFilter(limit=50, since=VOLUME_NOW - dt.timedelta(days=45), until=VOLUME_NOW - dt.timedelta(days=30),
                resource="backup"),
], ids=["newest", "next-page", "action-prefix", "actor-and-action", "time-range-and-resource"])
def test_the_audit_log_of_an_organization_by_time_and_filters_uses_its_index(volume_engine, ctx, query):
    if query.cursor:  # a real cursor: the last id of the first page
        query = AuditFilter(limit=50, cursor=orgs.list_audit(ctx, ORG, AuditFilter(limit=50))[1])
    _assert_indexed(volume_engine, lambda: orgs.list_audit(ctx, ORG, query), _audit_index)


def test_a_time_range_reads_only_the_partitions_of_those_months(volume_engine, ctx):
    query = AuditFilter(limit=50, since=VOLUME_NOW - dt.timedelta(days=45), until=VOLUME_NOW - dt.timedelta(days=30))
    (statement, parameters), = _sent(volume_engine, lambda: orgs.list_audit(ctx, ORG, query))
    months = {rel for _, rel, _ in _scans(volume_engine, statement, parameters) if rel}
    assert 1 <= len(months) <= 2 and all(m.startswith("audit_log_y") for m in months), months


def test_the_reaper_and_the_queue_gauges_read_only_the_active_jobs_index(volume_engine):
    tx = _tx(volume_engine)
    # An instant before every row: the reaper's queries run as in production and find nothing to fail.
    long_ago = dt.datetime(2001, 1, 1, tzinfo=dt.timezone.utc)
    _assert_indexed(volume_engine, lambda: maintenance.reap(tx, long_ago, dt.timedelta(minutes=30)),
                    lambda name: name in ("ix_backups_active", "ix_restores_active"))
    factory = make_session_factory(volume_engine)
    _assert_indexed(volume_engine, lambda: queue_depth(factory),
                    lambda name: name in ("ix_backups_active", "ix_restores_active"))
    depth = {q.kind: (q.waiting, q.active) for q in queue_depth(factory)}
    assert depth["backup"][1] == 200 and depth["restore"][1] == 40


def test_the_scheduler_tick_reads_only_the_due_schedules_through_their_index(volume_engine):
    # A day ago nothing was due yet: the tick's query runs as in production and starts nothing.
    tx = _tx(volume_engine)
    day_ago = VOLUME_NOW - dt.timedelta(days=1)
    assert scheduling.run_due(tx, day_ago) == []
    _assert_indexed(volume_engine, lambda: scheduling.run_due(tx, day_ago), lambda name: name == "ix_schedules_due")
