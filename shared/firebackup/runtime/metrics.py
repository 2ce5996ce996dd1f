"""The Metrics port and its two adapters: Prometheus (scraped at /metrics) and JSON log lines (the cloud).

The control plane reports events (a job finished, a request was served); each adapter turns them
into the same seven metrics with the same names and labels:

    backup_success_total            counter    organization, project, kind
    backup_failure_total            counter    organization, project, kind
    backup_duration_seconds         histogram  organization, kind, outcome
    backup_size_bytes               gauge      organization, project
    queue_jobs_waiting              gauge      kind
    queue_jobs_active               gauge      kind
    api_request_duration_seconds    histogram  route, outcome

kind is backup or restore (a restore counts against its target project); outcome is the job's
final state (completed, failed) or the HTTP status code; route is the route template
("GET /v1/orgs/{org_id}/backups", or "unmatched"), never a raw path. Every label value comes from
a bounded set: our own organization and project ids (one series per connected project, never a
name or a GCP project id, which are tenant data), fixed kinds and states, the API's route table
and the status codes it answers. The histograms leave the project out: one series per bucket per
project would multiply the series for little an alert needs.

Organization and project ids are shown unhashed on the unauthenticated /metrics: they are opaque
random ids that carry no tenant data, grant nothing (every route checks membership), and an
operator needs them as they are to find the organization a series is about. /metrics exists only
with the Prometheus adapter, which is the local and self-hosted default; the cloud logs instead.

backup_size_bytes is a gauge, the stored size of a project's last completed backup: size belongs
to a project's data at a point in time, so one series per project lets an alert compare a backup
with the one before (a sudden drop means data went missing); a histogram would mix every project
into buckets that cannot suit both kilobytes and terabytes.

The queue gauges are read from the database (pending and running job rows) when they are
published, never kept in memory: many stateless instances run the jobs, and none of them knows
the whole queue.
"""

from __future__ import annotations

import json
import sys
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, TextIO, runtime_checkable

if TYPE_CHECKING:
    # Imported where used: prometheus_client adds ~30 ms to a cold start that logs its metrics instead.
    from prometheus_client.core import GaugeMetricFamily, Metric

MetricType = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class Spec:
    """One metric: its name, type, label names and help text, spelt once for both adapters."""

    name: str
    type: MetricType
    labels: tuple[str, ...]
    help: str
    buckets: tuple[float, ...] = ()


# Backups run from seconds to hours; a request from milliseconds to the API's timeout.
_JOB_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0)
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

BACKUP_SUCCESS = Spec("backup_success_total", "counter", ("organization", "project", "kind"),
                      "Backup and restore jobs that completed.")
BACKUP_FAILURE = Spec("backup_failure_total", "counter", ("organization", "project", "kind"),
                      "Backup and restore jobs that failed.")
BACKUP_DURATION = Spec("backup_duration_seconds", "histogram", ("organization", "kind", "outcome"),
                       "Time from a job's start to its outcome.", _JOB_BUCKETS)
BACKUP_SIZE = Spec("backup_size_bytes", "gauge", ("organization", "project"),
                   "Bytes stored by the project's last completed backup.")
QUEUE_WAITING = Spec("queue_jobs_waiting", "gauge", ("kind",), "Jobs pending: requested, not yet started.")
QUEUE_ACTIVE = Spec("queue_jobs_active", "gauge", ("kind",), "Jobs running.")
API_REQUEST_DURATION = Spec("api_request_duration_seconds", "histogram", ("route", "outcome"),
                            "Time to answer an API request, by route template and status code.", _REQUEST_BUCKETS)

SPECS = (BACKUP_SUCCESS, BACKUP_FAILURE, BACKUP_DURATION, BACKUP_SIZE, QUEUE_WAITING, QUEUE_ACTIVE,
         API_REQUEST_DURATION)


@dataclass(frozen=True)
class JobFinished:
    """A backup or restore reached its outcome (reported once per job, after the row is committed)."""

    kind: Literal["backup", "restore"]
    organization: str
    project: str  # a restore's target project
    outcome: Literal["completed", "failed"]
    seconds: float
    bytes_stored: int | None = None  # a completed backup's stored size; None for restores and failures


@dataclass(frozen=True)
class QueueDepth:
    """Jobs of one kind waiting (pending) and active (running), as the database has them now."""

    kind: str
    waiting: int
    active: int


QueueDepthReader = Callable[[], Iterable[QueueDepth]]
Sample = tuple[Spec, float, dict[str, str]]


@runtime_checkable
class Metrics(Protocol):
    """Where the control plane reports what happened; adapters publish it as the seven metrics."""

    def job_finished(self, job: JobFinished) -> None:
        """Count the job's outcome, observe its duration and, for a completed backup, its size."""

    def request_served(self, route: str, outcome: str, seconds: float) -> None:
        """Observe one API request; route is the route template or "unmatched", outcome the status code."""

    def report_queues(self) -> None:
        """Publish the queue gauges now (a periodic tick calls this); a scraped adapter reads them at scrape time."""


def job_samples(job: JobFinished) -> list[Sample]:
    """What one finished job adds to each metric."""
    counter = BACKUP_SUCCESS if job.outcome == "completed" else BACKUP_FAILURE
    out: list[Sample] = [
        (counter, 1, {"organization": job.organization, "project": job.project, "kind": job.kind}),
        (BACKUP_DURATION, max(0.0, job.seconds),
         {"organization": job.organization, "kind": job.kind, "outcome": job.outcome}),
    ]
    if job.kind == "backup" and job.outcome == "completed" and job.bytes_stored is not None:
        out.append((BACKUP_SIZE, job.bytes_stored, {"organization": job.organization, "project": job.project}))
    return out


def request_samples(route: str, outcome: str, seconds: float) -> list[Sample]:
    return [(API_REQUEST_DURATION, max(0.0, seconds), {"route": route, "outcome": outcome})]


def queue_samples(depths: Iterable[QueueDepth]) -> list[Sample]:
    out: list[Sample] = []
    for d in depths:
        out += [(QUEUE_WAITING, d.waiting, {"kind": d.kind}), (QUEUE_ACTIVE, d.active, {"kind": d.kind})]
    return out


class NullMetrics(Metrics):
    """Publishes nothing: for Ports built by hand (tools, unit tests) where no one reads metrics."""

    def job_finished(self, job: JobFinished) -> None:
        pass

    def request_served(self, route: str, outcome: str, seconds: float) -> None:
        pass

    def report_queues(self) -> None:
        pass


class _Publisher(Metrics):
    """An adapter that publishes samples: both turn events into samples the same way."""

    @abstractmethod
    def _record(self, samples: list[Sample]) -> None:
        """Publish the samples, in order."""

    def job_finished(self, job: JobFinished) -> None:
        self._record(job_samples(job))

    def request_served(self, route: str, outcome: str, seconds: float) -> None:
        self._record(request_samples(route, outcome, seconds))


# --- Prometheus -----------------------------------------------------------------------------------


class PrometheusMetrics(_Publisher):
    """The metrics on a registry of this adapter's own (two apps in one process never collide)."""

    def __init__(self, queue_depth: QueueDepthReader):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self._counters = {s.name: Counter(s.name, s.help, s.labels, registry=r) for s in SPECS if s.type == "counter"}
        self._histograms = {s.name: Histogram(s.name, s.help, s.labels, registry=r, buckets=s.buckets)
                            for s in SPECS if s.type == "histogram"}
        self._gauges = {s.name: Gauge(s.name, s.help, s.labels, registry=r) for s in SPECS
                        if s.type == "gauge" and s not in _QueueCollector.SPECS}
        r.register(_QueueCollector(queue_depth))

    def _record(self, samples: list[Sample]) -> None:
        for spec, value, labels in samples:
            if spec.type == "counter":
                self._counters[spec.name].labels(**labels).inc(value)
            elif spec.type == "gauge":
                self._gauges[spec.name].labels(**labels).set(value)
            else:
                self._histograms[spec.name].labels(**labels).observe(value)

    def report_queues(self) -> None:
        pass  # a scrape reads the queue from the database itself

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The registry in the format the scraper's Accept header asks for, with its content type."""
        from prometheus_client.exposition import choose_encoder

        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type


class _QueueCollector:
    """The queue gauges, read from the database at each scrape."""

    SPECS = (QUEUE_WAITING, QUEUE_ACTIVE)

    def __init__(self, read: QueueDepthReader):
        self.read = read

    def describe(self) -> Iterator[Metric]:
        # Names only: the registry asks at registration, before any database may be reachable.
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        by_name = {f.name: f for f in families}
        for spec, value, labels in queue_samples(self.read()):
            by_name[spec.name].add_metric([labels[n] for n in spec.labels], value)
        yield from families

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        from prometheus_client.core import GaugeMetricFamily

        return [GaugeMetricFamily(s.name, s.help, labels=s.labels) for s in _QueueCollector.SPECS]


# --- structured log lines -------------------------------------------------------------------------


class LogMetrics(_Publisher):
    """One JSON line per sample on stdout, in Cloud Logging's structured form, for log-based metrics.

    {"severity": "INFO", "message": "backup_success_total 1", "metric": "backup_success_total",
     "value": 1, "labels": {"organization": "org_...", "project": "prj_...", "kind": "backup"}}

    A log-based counter metric filters on jsonPayload.metric; a distribution metric also extracts
    jsonPayload.value; its labels come from jsonPayload.labels.<name>.
    """

    def __init__(self, queue_depth: QueueDepthReader, stream: TextIO | None = None):
        self.queue_depth = queue_depth
        self._stream = stream
        self._lock = threading.Lock()

    def _record(self, samples: list[Sample]) -> None:
        lines = "".join(json.dumps({"severity": "INFO", "message": f"{spec.name} {value}", "metric": spec.name,
                                    "value": value, "labels": labels}, separators=(",", ":")) + "\n"
                        for spec, value, labels in samples)
        # stdout at the time of writing, not of building: the functions runtime (and pytest) may swap it.
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(lines)
            stream.flush()

    def report_queues(self) -> None:
        self._record(queue_samples(self.queue_depth()))


__all__ = ["Metrics", "JobFinished", "QueueDepth", "QueueDepthReader", "Spec", "SPECS", "NullMetrics",
           "PrometheusMetrics", "LogMetrics", "job_samples", "request_samples", "queue_samples"]
