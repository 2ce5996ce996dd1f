"""Cloud Function `backup_worker`: runs one control-plane task with the same handlers the embedded queue runs.

Request body: {"task": "<name>", "payload": {...}} (what Cloud Tasks delivers), name one of
Workers.handlers() (backup.plan, backup.chunk, ..., restore.plan, ..., verify, delete_backup,
webhook_deliver). Follow-up tasks the handler enqueues run in the same invocation.
204 when done, and also when the task failed for good (its job row records why: retrying
cannot help); 503 for a transient failure, so the queue delivers the task again; 400 for a
task it does not know.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any

import functions_framework

from firebackup import bootstrap
from firebackup.errors import is_transient
from firebackup.services.ports import RecordingQueue
from firebackup.services.workers import Workers
from firebackup.settings import Settings

log = logging.getLogger("firebackup.backup_worker")
_plane: Any = None
_lock = threading.Lock()


def _control_plane() -> bootstrap.ControlPlane:
    global _plane
    with _lock:
        if _plane is None:
            _plane = bootstrap.control_plane(Settings.from_env(), queue=RecordingQueue())
        return _plane


@functions_framework.http
def backup_worker(request: Any) -> Any:
    body = request.get_json(silent=True) or {}
    name, payload = body.get("task"), body.get("payload")
    plane = _control_plane()
    # Each request gets its own queue, so the follow-ups it drains are its own.
    queue = RecordingQueue()
    workers = Workers(plane.factory, dataclasses.replace(plane.ports, queue=queue),
                      threads=plane.settings.worker_threads)
    handlers = workers.handlers()
    if name not in handlers or not isinstance(payload, dict):
        return {"error": {"code": "invalid", "message": f"unknown task {name!r}; send task and payload"}}, 400
    pending = [(name, payload)]
    try:
        while pending:
            task, data = pending.pop(0)
            handlers[task](data)
            pending.extend(queue.tasks)
            queue.tasks.clear()
    except Exception as e:  # noqa: BLE001 - the status decides whether Cloud Tasks delivers it again
        if is_transient(e):
            log.warning("task %s failed transiently; it will be retried: %s", name, e)
            return {"error": {"code": "unavailable", "message": f"task {name} will be retried"}}, 503
        log.exception("task %s failed for good", name)
        return {"error": {"code": "failed", "message": f"task {name} failed; see the worker log"}}, 200
    return "", 204
