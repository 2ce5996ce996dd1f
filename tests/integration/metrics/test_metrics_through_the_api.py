"""The seven metrics move with what the API and its in-process workers do: at /metrics (Prometheus, the
default) and as JSON lines on stdout (FIREBACKUP_METRICS=log), on SQLite, against the Firestore emulator."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from firebackup.bootstrap import api_app
from firebackup.crypto.secrets import LocalMasterKey, Sealer
from firebackup.db.migrate import upgrade
from firebackup.db.models import Backup, Restore, new_id
from firebackup.db.session import make_engine, make_session_factory
from firebackup.runtime.metrics import JobFinished, Metrics
from firebackup.services.ports import RecordingQueue
from tests.integration.controlplane.conftest import FakeFirestoreProber, FakeGoogleOAuth
from tests.integration.controlplane.jobs_world import Org, make_org, seed, settings_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'firebackup.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


def start_org(engine: sa.Engine, tmp: Path, **settings: Any) -> Org:
    """The API as deployed by default (tasks run in this process), with one organization and its owner token."""
    key = os.urandom(32)
    app = api_app(settings_for(engine, key, **settings), engine=engine, sealer=Sealer(LocalMasterKey(key)),
                  oauth=FakeGoogleOAuth(), prober=FakeFirestoreProber())
    return make_org(app, make_session_factory(engine), tmp)


def backup_ok_and_backup_failing(org: Org, project_id: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """One backup that completes and one whose destination is a file (it fails), both of the same project."""
    seed(project_id)
    blocker = org.tmp / "not-a-folder"
    blocker.write_text("a file where the destination folder should be\n")
    pid = org.project(project_id)
    good, bad = org.destination(org.tmp / "loc"), org.destination(blocker / "loc")
    first = org.ok("POST", "/backups", {"project_id": pid, "destination_id": good}, 202)
    org.run()
    second = org.ok("POST", "/backups", {"project_id": pid, "destination_id": bad}, 202)
    org.run()
    done, failed = org.ok("GET", f"/backups/{first['id']}"), org.ok("GET", f"/backups/{second['id']}")
    assert (done["state"], failed["state"]) == ("completed", "failed"), (done, failed)
    return pid, done, failed


def scrape(org: Org) -> Samples:
    resp = org.app.test_client().get("/metrics")  # no token: /metrics needs none
    assert resp.status_code == 200 and resp.content_type.startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(resp.get_data(as_text=True)) for s in f.samples}


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def named(samples: Samples, name: str) -> Samples:
    return {k: v for k, v in samples.items() if k[0] == name}


def add_jobs(org: Org, project: str, backup_id: str, *, backups: dict[str, int], restores: dict[str, int]) -> None:
    """Job rows straight into the database (nothing enqueued): the queue gauges must count them."""
    with org.factory.begin() as s:
        row = s.get(Backup, backup_id)
        assert row is not None
        for state, n in backups.items():
            s.add_all(Backup(id=new_id("bkp"), org_id=org.id, project_id=project, destination_id=row.destination_id,
                             state=state) for _ in range(n))
        for state, n in restores.items():
            s.add_all(Restore(id=new_id("rst"), org_id=org.id, backup_id=backup_id, target_project_id=project,
                              state=state) for _ in range(n))


def test_metrics_show_one_success_one_failure_the_routes_called_and_the_queue_in_the_database(
        engine: sa.Engine, firestore_emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        project_id: str) -> None:
    firestore_emulator.apply(monkeypatch)
    org = start_org(engine, tmp_path)
    try:
        before = scrape(org)
        assert not named(before, "backup_success_total") and not named(before, "backup_failure_total")
        pid, done, failed = backup_ok_and_backup_failing(org, project_id)
        got = scrape(org)
    finally:
        org.queue.close()

    labels = {"organization": org.id, "project": pid, "kind": "backup"}
    assert named(got, "backup_success_total") == {key("backup_success_total", **labels): 1}
    assert named(got, "backup_failure_total") == {key("backup_failure_total", **labels): 1}
    assert named(got, "backup_duration_seconds_count") == {
        key("backup_duration_seconds_count", organization=org.id, kind="backup", outcome="completed"): 1,
        key("backup_duration_seconds_count", organization=org.id, kind="backup", outcome="failed"): 1}
    assert named(got, "backup_size_bytes") == {
        key("backup_size_bytes", organization=org.id, project=pid): done["bytes_stored"]}
    assert done["bytes_stored"] > 0

    requests = named(got, "api_request_duration_seconds_count")
    assert requests[key("api_request_duration_seconds_count", route="POST /v1/orgs/{org_id}/backups",
                        outcome="202")] == 2
    assert requests[key("api_request_duration_seconds_count", route="GET /v1/orgs/{org_id}/backups/{backup_id}",
                        outcome="200")] == 2
    assert requests[key("api_request_duration_seconds_count", route="POST /v1/orgs/{org_id}/projects",
                        outcome="201")] == 1
    assert requests[key("api_request_duration_seconds_count", route="GET /metrics", outcome="200")] == 1
    # Route templates only: no id from a path ever becomes a label value.
    route_values = {v for k in got for n, v in k[1] if n == "route"}
    assert not [v for v in route_values if org.id in v or done["id"] in v or failed["id"] in v]

    # Nothing is waiting or running now; rows made elsewhere (another instance) show at the next scrape.
    assert named(got, "queue_jobs_waiting") == {key("queue_jobs_waiting", kind="backup"): 0,
                                                key("queue_jobs_waiting", kind="restore"): 0}
    add_jobs(org, pid, done["id"], backups={"pending": 2, "running": 1, "completed": 4},
             restores={"pending": 1, "failed": 1})
    queue = {k: v for k, v in scrape(org).items() if k[0].startswith("queue_jobs_")}
    assert queue == {key("queue_jobs_waiting", kind="backup"): 2, key("queue_jobs_active", kind="backup"): 1,
                     key("queue_jobs_waiting", kind="restore"): 1, key("queue_jobs_active", kind="restore"): 0}


def test_in_log_mode_each_event_is_a_json_line_on_stdout_and_there_is_no_metrics_route(
        engine: sa.Engine, firestore_emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        project_id: str, capfd: pytest.CaptureFixture[str]) -> None:
    firestore_emulator.apply(monkeypatch)
    org = start_org(engine, tmp_path, metrics="log")
    try:
        capfd.readouterr()
        pid, done, _ = backup_ok_and_backup_failing(org, project_id)
        assert org.app.test_client().get("/metrics").status_code == 404
        plane = org.app.extensions["firebackup_control_plane"]
        add_jobs(org, pid, done["id"], backups={"pending": 1, "running": 2}, restores={"running": 1})
        plane.ports.metrics.report_queues()
        out = capfd.readouterr().out
    finally:
        org.queue.close()

    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert lines and all(x["severity"] == "INFO" and set(x) == {"severity", "message", "metric", "value", "labels"}
                         for x in lines)
    labels = {"organization": org.id, "project": pid, "kind": "backup"}
    assert [(x["value"], x["labels"]) for x in lines if x["metric"] == "backup_success_total"] == [(1, labels)]
    assert [(x["value"], x["labels"]) for x in lines if x["metric"] == "backup_failure_total"] == [(1, labels)]
    assert [x["labels"]["outcome"] for x in lines if x["metric"] == "backup_duration_seconds"] == ["completed",
                                                                                                  "failed"]
    assert [(x["value"], x["labels"]) for x in lines if x["metric"] == "backup_size_bytes"] == [
        (done["bytes_stored"], {"organization": org.id, "project": pid})]
    routes = [(x["labels"]["route"], x["labels"]["outcome"]) for x in lines
              if x["metric"] == "api_request_duration_seconds"]
    assert routes.count(("POST /v1/orgs/{org_id}/backups", "202")) == 2
    assert ("unmatched", "404") in routes  # the refused GET /metrics, by no path of its own
    assert [(x["metric"], x["labels"], x["value"]) for x in lines if x["metric"].startswith("queue_jobs_")] == [
        ("queue_jobs_waiting", {"kind": "backup"}, 1), ("queue_jobs_active", {"kind": "backup"}, 2),
        ("queue_jobs_waiting", {"kind": "restore"}, 0), ("queue_jobs_active", {"kind": "restore"}, 1)]


class RecordingMetrics(Metrics):
    """Keeps every finished job it is told of."""

    def __init__(self) -> None:
        self.jobs: list[JobFinished] = []

    def job_finished(self, job: JobFinished) -> None:
        self.jobs.append(job)

    def request_served(self, route: str, outcome: str, seconds: float) -> None:
        pass

    def report_queues(self) -> None:
        pass


def test_a_job_outcome_is_reported_once_however_often_the_store_is_told(engine: sa.Engine, tmp_path: Path) -> None:
    key_ = os.urandom(32)
    metrics, queue = RecordingMetrics(), RecordingQueue()
    app = api_app(settings_for(engine, key_, queue="recording"), engine=engine,
                  sealer=Sealer(LocalMasterKey(key_)), queue=queue, oauth=FakeGoogleOAuth(),
                  prober=FakeFirestoreProber(), metrics=metrics)
    org = make_org(app, make_session_factory(engine), tmp_path)
    pid, did = org.project("acme-prod"), org.destination(tmp_path / "loc")
    store = app.extensions["firebackup_control_plane"].workers.backups.store
    ids = [org.ok("POST", "/backups", {"project_id": pid, "destination_id": did}, 202)["id"] for _ in range(2)]
    summary = {"documents": 3, "bytes_raw": 30, "bytes_stored": 20, "manifest_key": "m", "chunks": 1}
    for job_id in ids:
        store.claim(job_id, "plan")
    assert store.complete(ids[0], summary) is True
    assert store.complete(ids[0], summary) is False and store.fail(ids[0], "late") is False
    assert store.fail(ids[1], "the bucket is gone") is True
    assert store.fail(ids[1], "again") is False
    assert [(j.kind, j.organization, j.project, j.outcome, j.bytes_stored) for j in metrics.jobs] == [
        ("backup", org.id, pid, "completed", 20), ("backup", org.id, pid, "failed", None)]
    assert all(j.seconds >= 0 for j in metrics.jobs)
