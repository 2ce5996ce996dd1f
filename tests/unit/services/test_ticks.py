"""The Cloud Scheduler tick jobs (against a fake client that subclasses the real one) and a tick's instant."""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import scheduler_v1

from firebackup.errors import FireBackupError
from firebackup.services.ticks import ensure, tick_time, ticks
from firebackup.settings import Settings

LATER = datetime(2030, 1, 1, tzinfo=timezone.utc)


class FakeCloudScheduler(scheduler_v1.CloudSchedulerClient):
    """Keeps jobs in a dict; never talks to Google (its parent's __init__, which finds credentials, is not run)."""

    def __init__(self, refuse: bool = False) -> None:
        self.jobs: dict[str, scheduler_v1.Job] = {}
        self.calls: list[str] = []
        self.refuse = refuse

    def get_job(self, request: Any = None, *, name: str | None = None, **kw: Any) -> scheduler_v1.Job:
        self.calls.append("get")
        if self.refuse:
            raise gexc.PermissionDenied("cloudscheduler.jobs.get denied")
        if name not in self.jobs:
            raise gexc.NotFound(f"job {name} not found")
        return scheduler_v1.Job.deserialize(scheduler_v1.Job.serialize(self.jobs[name]))  # a copy, as over the wire

    def create_job(self, request: Any = None, *, parent: str | None = None, job: scheduler_v1.Job | None = None,
                   **kw: Any) -> scheduler_v1.Job:
        assert job is not None and parent is not None and job.name.startswith(parent + "/jobs/")
        self.calls.append("create")
        self.jobs[job.name] = job
        return job

    def update_job(self, request: Any = None, *, job: scheduler_v1.Job | None = None, update_mask: Any = None,
                   **kw: Any) -> scheduler_v1.Job:
        assert job is not None and job.name in self.jobs and list(update_mask.paths)
        self.calls.append("update")
        self.jobs[job.name] = job
        return job


def test_ensure_creates_both_tick_jobs_then_leaves_them_alone_then_updates_a_changed_one() -> None:
    client = FakeCloudScheduler()
    settings = Settings()
    assert ensure(client, "acme-prod", "europe-west1", ticks(settings)) == {
        "firebackup-scheduler": "created", "firebackup-maintenance": "created"}
    job = client.jobs["projects/acme-prod/locations/europe-west1/jobs/firebackup-scheduler"]
    assert (job.schedule, job.time_zone) == ("* * * * *", "Etc/UTC")
    assert job.pubsub_target.topic_name == "projects/acme-prod/topics/firebackup-scheduler-tick"
    hourly = client.jobs["projects/acme-prod/locations/europe-west1/jobs/firebackup-maintenance"]
    assert hourly.schedule.split()[1:] == ["*", "*", "*", "*"]

    assert set(ensure(client, "acme-prod", "europe-west1", ticks(settings)).values()) == {"unchanged"}
    moved = Settings(scheduler_topic="ticks-v2")
    assert ensure(client, "acme-prod", "europe-west1", ticks(moved)) == {
        "firebackup-scheduler": "updated", "firebackup-maintenance": "unchanged"}
    assert job.name in client.jobs and client.jobs[job.name].pubsub_target.topic_name.endswith("/topics/ticks-v2")
    assert client.calls.count("create") == 2 and client.calls.count("update") == 1


def test_a_refused_call_is_one_line_naming_the_job_and_the_role_to_grant() -> None:
    with pytest.raises(FireBackupError, match=r"firebackup-scheduler .*cloudscheduler.admin") as e:
        ensure(FakeCloudScheduler(refuse=True), "acme-prod", "europe-west1", ticks(Settings()))
    assert "\n" not in str(e.value) and e.value.__cause__ is None


def _pubsub(publish_time: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {"data": base64.b64encode(b'{"tick": "firebackup-scheduler"}').decode(),
                               "messageId": "1234", "attributes": {}}
    if publish_time:
        message["publishTime"] = publish_time
    return {"message": message, "subscription": "projects/p/subscriptions/firebackup-scheduler"}


def test_a_tick_is_dated_by_its_publish_time_so_every_delivery_asks_about_the_same_instant() -> None:
    data = _pubsub("2026-11-30T03:00:04.250Z")
    first, again = tick_time(data, LATER), tick_time(data, datetime(2031, 5, 5, tzinfo=timezone.utc))
    assert first == again == datetime(2026, 11, 30, 3, 0, 4, 250000, tzinfo=timezone.utc)


@pytest.mark.parametrize("data", [_pubsub(None), {"unrelated": True}, None, {"message": "not an object"}])
def test_a_tick_without_a_publish_time_counts_as_published_now(data: Any) -> None:
    assert tick_time(data, LATER) == LATER


def test_a_publish_time_ahead_of_this_clock_is_capped_at_now() -> None:
    assert tick_time(_pubsub("2040-01-01T00:00:00Z"), LATER) == LATER
