"""FIREBACKUP_REPORTING_DATABASE_URL: reporting reads (the metrics' queue gauges) go through a second engine (a read
replica in production; here a second connection to the same server, told apart by its application_name)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from firebackup.bootstrap import api_app
from firebackup.crypto.secrets import LocalMasterKey, Sealer
from firebackup.db.migrate import upgrade
from firebackup.db.session import make_engine, make_session_factory
from tests.integration.conftest import postgres_database
from tests.integration.controlplane.conftest import FakeFirestoreProber, FakeGoogleOAuth
from tests.integration.controlplane.jobs_world import make_org, settings_for


@pytest.fixture
def pg_url(postgres_server) -> Iterator[str]:
    with postgres_database(postgres_server.url, "r") as url:
        yield url


def _record(engine: sa.Engine) -> list[str]:
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        sent.append(" ".join(statement.split()))

    sa.event.listen(engine, "before_cursor_execute", record)
    return sent


def test_the_queue_gauges_read_through_the_reporting_engine_and_requests_through_the_primary(
        pg_url: str, tmp_path: Path) -> None:
    engine = make_engine(pg_url)
    upgrade(engine)
    replica_url = sa.make_url(pg_url).update_query_dict({"application_name": "firebackup-reporting"})
    key = os.urandom(32)
    settings = settings_for(engine, key, metrics="prometheus",
                            reporting_database_url=replica_url.render_as_string(hide_password=False))
    app = api_app(settings, engine=engine, sealer=Sealer(LocalMasterKey(key)), oauth=FakeGoogleOAuth(),
                  prober=FakeFirestoreProber())
    plane = app.extensions["firebackup_control_plane"]
    reporting = plane.reporting.kw["bind"]
    try:
        assert reporting is not engine
        with reporting.connect() as c:
            assert c.scalar(sa.text("SELECT current_setting('application_name')")) == "firebackup-reporting"
        primary_sent, reporting_sent = _record(engine), _record(reporting)
        org = make_org(app, make_session_factory(engine), tmp_path)
        assert org.call("GET", "/backups").status_code == 200
        scrape = app.test_client().get("/metrics")
        assert scrape.status_code == 200
        assert b'queue_jobs_active{kind="backup"}' in scrape.data
        gauges = [s for s in reporting_sent if "GROUP BY" in s and ("FROM backups" in s or "FROM restores" in s)]
        assert len(gauges) == 2, reporting_sent
        assert not any("GROUP BY" in s for s in primary_sent)
        assert any(s.startswith("SELECT backups.") and "ORDER BY backups.id DESC" in s for s in primary_sent)
        assert [s for s in reporting_sent if " FROM " in s and s not in gauges] == []
    finally:
        reporting.dispose()
        engine.dispose()


def test_without_a_reporting_url_the_gauges_use_the_primary(pg_url: str) -> None:
    engine = make_engine(pg_url)
    upgrade(engine)
    key = os.urandom(32)
    app = api_app(settings_for(engine, key), engine=engine, sealer=Sealer(LocalMasterKey(key)),
                  oauth=FakeGoogleOAuth(), prober=FakeFirestoreProber())
    try:
        plane = app.extensions["firebackup_control_plane"]
        assert plane.reporting is plane.factory
    finally:
        engine.dispose()
