"""The two Cloud Scheduler ticks (scheduler every minute, maintenance every hour) and reading a tick's instant.

    python -m firebackup.services.ticks ensure     # create or update both jobs (idempotent)

Why one tick job for all schedules, not one Cloud Scheduler job per schedule:
- the decision "this due instant starts once" is one database transaction (scheduling.py) that
  also creates the backup row; a job per schedule would still need it (Cloud Scheduler delivers
  at least once) and would add a second copy of every schedule to keep in step with the rows;
- Cloud Scheduler counts jobs per project and location (a few hundred to a few thousand):
  one per tenant schedule would cap the number of schedules every tenant together may have;
- time zones and DST are evaluated by croniter in the schedule's IANA zone with the rules in
  cron.py, the same locally as in the cloud, where the local platform has no Cloud Scheduler;
- an outage costs nothing extra: the next tick starts each missed schedule once.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from firebackup.errors import FireBackupError, UsageError
from firebackup.settings import Settings

if TYPE_CHECKING:
    from google.cloud import scheduler_v1


@dataclass(frozen=True)
class Tick:
    """One Cloud Scheduler job publishing a tick to a topic."""

    job_id: str
    schedule: str
    topic: str
    description: str


def ticks(settings: Settings) -> list[Tick]:
    return [
        Tick("firebackup-scheduler", "* * * * *", settings.scheduler_topic,
             "FireBackup: start the schedules that are due (every minute)"),
        Tick("firebackup-maintenance", "17 * * * *", settings.maintenance_topic,
             "FireBackup: retention, reaper, webhook redelivery (hourly)"),
    ]


def _job(client: scheduler_v1.CloudSchedulerClient, project: str, location: str, tick: Tick) -> scheduler_v1.Job:
    from google.cloud import scheduler_v1

    return scheduler_v1.Job(
        name=client.job_path(project, location, tick.job_id), description=tick.description,
        schedule=tick.schedule, time_zone="Etc/UTC",
        pubsub_target=scheduler_v1.PubsubTarget(topic_name=f"projects/{project}/topics/{tick.topic}",
                                                data=json.dumps({"tick": tick.job_id}).encode()))


_COMPARED = ("description", "schedule", "time_zone", "pubsub_target")


def ensure(client: scheduler_v1.CloudSchedulerClient, project: str, location: str,
           wanted: list[Tick]) -> dict[str, str]:
    """Create each tick job that is missing and update one that differs; returns job id -> created|updated|unchanged."""
    from google.api_core import exceptions as gexc
    from google.protobuf import field_mask_pb2

    parent = client.common_location_path(project, location)
    done: dict[str, str] = {}
    for tick in wanted:
        job = _job(client, project, location, tick)
        try:
            try:
                current = client.get_job(name=job.name)
            except gexc.NotFound:
                client.create_job(parent=parent, job=job)
                done[tick.job_id] = "created"
                continue
            if all(getattr(current, f) == getattr(job, f) for f in _COMPARED):
                done[tick.job_id] = "unchanged"
                continue
            client.update_job(job=job, update_mask=field_mask_pb2.FieldMask(paths=list(_COMPARED)))
            done[tick.job_id] = "updated"
        except gexc.GoogleAPICallError as e:
            raise FireBackupError(f"Cloud Scheduler refused job {tick.job_id} in {parent}: "
                                  f"{type(e).__name__}; check the project, location and the caller's "
                                  f"roles/cloudscheduler.admin") from None
    return done


def tick_time(data: Mapping[str, Any] | None, fallback: dt.datetime) -> dt.datetime:
    """The instant a tick was published (the Pub/Sub message's publish_time), never later than `fallback`.

    A duplicate or late delivery of a tick carries the same instant as the first, so every
    delivery of one tick asks about the same due instants. A message without one (or not a
    Pub/Sub message at all) counts as published at `fallback`.
    """
    from google.events.cloud.pubsub_v1 import MessagePublishedData

    try:
        msg = MessagePublishedData.from_json(json.dumps(dict(data or {})), ignore_unknown_fields=True).message
    except (ValueError, TypeError):
        return fallback
    if "publish_time" not in msg:
        return fallback
    published: dt.datetime = msg.publish_time
    return min(published.astimezone(dt.timezone.utc), fallback)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firebackup.services.ticks",
                                     description="Create or update the Cloud Scheduler tick jobs.")
    parser.add_argument("command", choices=["ensure"])
    parser.add_argument("--project", help="GCP project (default: FIREBACKUP_GCP_PROJECT or GOOGLE_CLOUD_PROJECT)")
    parser.add_argument("--location", help="Cloud Scheduler location (default: FIREBACKUP_SCHEDULER_LOCATION)")
    args = parser.parse_args(argv)
    from google.cloud import scheduler_v1

    try:
        settings = Settings.from_env()
        project = args.project or settings.gcp_project
        if not project:
            raise UsageError("no GCP project; pass --project or set GOOGLE_CLOUD_PROJECT")
        done = ensure(scheduler_v1.CloudSchedulerClient(), project, args.location or settings.scheduler_location,
                      ticks(settings))
    except FireBackupError as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    for job_id, what in done.items():
        print(f"{job_id}: {what}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
