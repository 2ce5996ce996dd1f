"""Cloud Function `scheduler`: a Pub/Sub CloudEvent (Cloud Scheduler's tick, every minute) starts the due schedules.

Each due instant starts once however the tick arrives (twice, late, overlapping another): the
database decides (services/scheduling.py). The tick's instant is its message's publish time,
so every delivery of one tick asks the same question. Returning acknowledges the tick; an
exception (the database unreachable) makes Pub/Sub deliver it again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

import functions_framework
from cloudevents.http import CloudEvent

from firebackup import bootstrap
from firebackup.services.context import system_transactions
from firebackup.services.scheduling import run_due
from firebackup.services.ticks import tick_time
from firebackup.settings import Settings

log = logging.getLogger("firebackup.scheduler")
_control_plane = bootstrap.once(lambda: bootstrap.control_plane(Settings.from_env()))


@functions_framework.cloud_event
def scheduler(event: CloudEvent) -> None:
    plane = _control_plane()
    now = tick_time(event.get_data(), dt.datetime.now(dt.timezone.utc))
    started = run_due(system_transactions(plane.factory, plane.ports), now)
    log.info(json.dumps({"event": "scheduler_tick", "tick": event["id"], "at": now.isoformat(),
                         "started": started}))
