"""The Metrics adapters: the same seven metrics, names and labels on a Prometheus registry and as JSON log lines."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import Any

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from firebackup.errors import UsageError
from firebackup.runtime.metrics import SPECS, JobFinished, LogMetrics, PrometheusMetrics, QueueDepth, job_samples
from firebackup.settings import Settings

DONE = JobFinished("backup", "org_a", "prj_a", "completed", 42.5, bytes_stored=123_456)
FAILED = JobFinished("restore", "org_a", "prj_b", "failed", 3.0)


class Depths:
    """A queue-depth reader whose answer the test changes; counts how often it was asked."""

    def __init__(self) -> None:
        self.now = [QueueDepth("backup", 0, 0), QueueDepth("restore", 0, 0)]
        self.reads = 0

    def __call__(self) -> Iterable[QueueDepth]:
        self.reads += 1
        return list(self.now)


def scrape(metrics: PrometheusMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition, by (sample name, labels)."""
    body, content_type = metrics.exposition(None)
    assert content_type.startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def test_a_completed_backup_counts_one_success_and_records_its_duration_and_size() -> None:
    m = PrometheusMetrics(Depths())
    m.job_finished(DONE)
    got = scrape(m)
    assert got[key("backup_success_total", organization="org_a", project="prj_a", kind="backup")] == 1
    assert got[key("backup_duration_seconds_count", organization="org_a", kind="backup", outcome="completed")] == 1
    assert got[key("backup_duration_seconds_sum", organization="org_a", kind="backup", outcome="completed")] == 42.5
    assert got[key("backup_duration_seconds_bucket", organization="org_a", kind="backup", outcome="completed",
                   le="30.0")] == 0
    assert got[key("backup_size_bytes", organization="org_a", project="prj_a")] == 123_456
    assert not [k for k in got if k[0] == "backup_failure_total"]


def test_a_failed_job_counts_one_failure_and_sets_no_size() -> None:
    m = PrometheusMetrics(Depths())
    m.job_finished(FAILED)
    m.job_finished(FAILED)
    got = scrape(m)
    assert got[key("backup_failure_total", organization="org_a", project="prj_b", kind="restore")] == 2
    assert got[key("backup_duration_seconds_count", organization="org_a", kind="restore", outcome="failed")] == 2
    assert not [k for k in got if k[0] in ("backup_size_bytes", "backup_success_total")]


def test_a_later_backup_of_the_same_project_replaces_its_size() -> None:
    m = PrometheusMetrics(Depths())
    m.job_finished(DONE)
    m.job_finished(JobFinished("backup", "org_a", "prj_a", "completed", 1.0, bytes_stored=99))
    assert scrape(m)[key("backup_size_bytes", organization="org_a", project="prj_a")] == 99


def test_the_queue_gauges_are_read_at_each_scrape_and_never_kept() -> None:
    depths = Depths()
    m = PrometheusMetrics(depths)
    assert depths.reads == 0  # registering asks for names only, not for the database
    depths.now = [QueueDepth("backup", 3, 1), QueueDepth("restore", 0, 2)]
    got = scrape(m)
    assert got[key("queue_jobs_waiting", kind="backup")] == 3 and got[key("queue_jobs_active", kind="backup")] == 1
    assert got[key("queue_jobs_waiting", kind="restore")] == 0 and got[key("queue_jobs_active", kind="restore")] == 2
    depths.now = [QueueDepth("backup", 0, 0), QueueDepth("restore", 0, 0)]
    got = scrape(m)
    assert got[key("queue_jobs_waiting", kind="backup")] == 0 and got[key("queue_jobs_active", kind="restore")] == 0
    assert depths.reads == 2
    m.report_queues()
    assert depths.reads == 2  # the scrape reads them; reporting has nothing to add


def test_each_prometheus_adapter_keeps_a_registry_of_its_own() -> None:
    one, two = PrometheusMetrics(Depths()), PrometheusMetrics(Depths())
    one.job_finished(DONE)
    one.request_served("GET /v1/orgs/{org_id}", "200", 0.01)
    assert key("backup_success_total", organization="org_a", project="prj_a", kind="backup") in scrape(one)
    assert not [k for k in scrape(two) if k[0] in ("backup_success_total", "api_request_duration_seconds_count")]
    assert prometheus_client.REGISTRY.get_sample_value("backup_success_total", {"organization": "org_a",
                                                       "project": "prj_a", "kind": "backup"}) is None


def test_a_request_is_observed_by_route_template_and_status() -> None:
    m = PrometheusMetrics(Depths())
    m.request_served("POST /v1/orgs/{org_id}/backups", "202", 0.2)
    m.request_served("POST /v1/orgs/{org_id}/backups", "202", 0.3)
    m.request_served("unmatched", "404", 0.001)
    got = scrape(m)
    assert got[key("api_request_duration_seconds_count", route="POST /v1/orgs/{org_id}/backups", outcome="202")] == 2
    assert got[key("api_request_duration_seconds_bucket", route="POST /v1/orgs/{org_id}/backups", outcome="202",
                   le="0.25")] == 1
    assert got[key("api_request_duration_seconds_count", route="unmatched", outcome="404")] == 1


def test_the_exposition_answers_an_openmetrics_scraper_in_its_own_format() -> None:
    m = PrometheusMetrics(Depths())
    body, content_type = m.exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")


def log_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def test_the_log_adapter_writes_one_cloud_logging_json_line_per_sample_on_stdout(
        capsys: pytest.CaptureFixture[str]) -> None:
    m = LogMetrics(Depths())
    m.job_finished(DONE)
    lines = log_lines(capsys.readouterr().out)
    assert lines == [
        {"severity": "INFO", "message": "backup_success_total 1", "metric": "backup_success_total", "value": 1,
         "labels": {"organization": "org_a", "project": "prj_a", "kind": "backup"}},
        {"severity": "INFO", "message": "backup_duration_seconds 42.5", "metric": "backup_duration_seconds",
         "value": 42.5, "labels": {"organization": "org_a", "kind": "backup", "outcome": "completed"}},
        {"severity": "INFO", "message": "backup_size_bytes 123456", "metric": "backup_size_bytes", "value": 123456,
         "labels": {"organization": "org_a", "project": "prj_a"}},
    ]


def test_the_log_adapter_reports_the_queue_gauges_from_a_fresh_read_each_time() -> None:
    depths, out = Depths(), io.StringIO()
    m = LogMetrics(depths, stream=out)
    depths.now = [QueueDepth("backup", 2, 1), QueueDepth("restore", 0, 0)]
    m.report_queues()
    depths.now = [QueueDepth("backup", 0, 3), QueueDepth("restore", 1, 0)]
    m.report_queues()
    got = [(x["metric"], x["labels"]["kind"], x["value"]) for x in log_lines(out.getvalue())]
    assert got == [("queue_jobs_waiting", "backup", 2), ("queue_jobs_active", "backup", 1),
                   ("queue_jobs_waiting", "restore", 0), ("queue_jobs_active", "restore", 0),
                   ("queue_jobs_waiting", "backup", 0), ("queue_jobs_active", "backup", 3),
                   ("queue_jobs_waiting", "restore", 1), ("queue_jobs_active", "restore", 0)]


def test_both_adapters_publish_the_seven_names_with_the_same_label_names() -> None:
    depths, out = Depths(), io.StringIO()
    prom, logged = PrometheusMetrics(depths), LogMetrics(depths, stream=out)
    for m in (prom, logged):
        m.job_finished(DONE)
        m.job_finished(FAILED)
        m.request_served("GET /v1/orgs/{org_id}/backups", "200", 0.05)
        m.report_queues()
    from_log = {(x["metric"], frozenset(x["labels"])) for x in log_lines(out.getvalue())}
    body, _ = prom.exposition(None)
    from_prom = {(f.name + ("_total" if f.type == "counter" else ""), frozenset(s.labels) - {"le"})
                 for f in text_string_to_metric_families(body.decode()) for s in f.samples
                 if not s.name.endswith("_created")}
    assert from_log == from_prom
    assert {name for name, _ in from_log} == {s.name for s in SPECS} == {
        "backup_duration_seconds", "backup_size_bytes", "backup_success_total", "backup_failure_total",
        "queue_jobs_waiting", "queue_jobs_active", "api_request_duration_seconds"}


def test_every_sample_carries_exactly_the_labels_its_metric_declares() -> None:
    for job in (DONE, FAILED, JobFinished("backup", "o", "p", "failed", 1.0, bytes_stored=5)):
        for spec, _, labels in job_samples(job):
            assert tuple(labels) == spec.labels


def test_the_metrics_setting_defaults_to_prometheus_takes_log_and_refuses_anything_else() -> None:
    assert Settings.from_env({}).metrics == "prometheus"
    assert Settings.from_env({"FIREBACKUP_METRICS": "LOG"}).metrics == "log"
    with pytest.raises(UsageError, match=r"^FIREBACKUP_METRICS='statsd' is not one of prometheus, log; "):
        Settings.from_env({"FIREBACKUP_METRICS": "statsd"})
