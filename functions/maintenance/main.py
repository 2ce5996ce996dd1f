"""Cloud Function `maintenance`: a Pub/Sub CloudEvent (Cloud Scheduler's hourly tick) runs services/maintenance.py.

Retention, the reaper, webhook redelivery and PITR compaction each run on their own; the
tick is acknowledged even when one of them failed (the report names it; the next hour tries
again), so one broken destination does not make Pub/Sub redeliver the whole run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging

import functions_framework
from cloudevents.http import CloudEvent

from firebackup import bootstrap
from firebackup.services import maintenance as steps
from firebackup.services.context import system_transactions
from firebackup.settings import Settings

log = logging.getLogger("firebackup.maintenance")
_control_plane = bootstrap.once(lambda: bootstrap.control_plane(Settings.from_env()))


@functions_framework.cloud_event
def maintenance(event: CloudEvent) -> None:
    plane = _control_plane()
    report = steps.run(system_transactions(plane.factory, plane.ports), dt.datetime.now(dt.timezone.utc),
                       reap_after=dt.timedelta(seconds=plane.settings.reap_after_seconds))
    log.info(json.dumps({"event": "maintenance", "tick": event["id"], **dataclasses.asdict(report)}))
