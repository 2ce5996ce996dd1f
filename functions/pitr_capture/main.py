"""Cloud Function `pitr_capture`: a Firestore `document.v1.written` CloudEvent (Eventarc, `{document=**}`) is recorded.

services/pitr.py records the write once whatever the deliveries; a bad event (not a Firestore
write) and a write of a project without PITR are acknowledged with one log line, never retried.
A database or key that is down raises, so Eventarc delivers the event again.

An async function: functions-framework serves it on an event loop (uvicorn) rather than a thread
per request (gunicorn and Flask), and the requests in flight share their commits (GroupCommit).
That is what lets one process record more than 1,000 events a second (docs/performance.md).
"""

from __future__ import annotations

import logging

import functions_framework.aio
from cloudevents.http import CloudEvent

from firebackup import bootstrap
from firebackup.errors import CorruptData, UsageError
from firebackup.pitr.events import parse_written
from firebackup.settings import Settings

log = logging.getLogger("firebackup.pitr")
_capture = bootstrap.once(lambda: bootstrap.pitr_capture(Settings.from_env()))


@functions_framework.aio.cloud_event
async def pitr_capture(event: CloudEvent) -> None:
    data = event.data if isinstance(event.data, bytes) else b""
    try:
        write = parse_written(event.get_attributes(), data)
    except (UsageError, CorruptData) as e:  # never a write we could record: retrying would not help
        log.warning("pitr_capture: event %s dropped: %s", event["id"], e)
        return
    await _capture().record(write)
