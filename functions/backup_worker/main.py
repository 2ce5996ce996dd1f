"""Cloud Function `backup_worker`: runs one control-plane task, the same handlers the embedded LocalQueue runs.

Request body: {"task": "<plan|restore|verify|delete_backup|webhook_deliver>", "payload": {...}} (what
Cloud Tasks delivers). Follow-up tasks the handler enqueues (webhook deliveries) run in the same
invocation. 204 when done; 400 for a task it does not know; 500 lets the queue retry.
"""

from __future__ import annotations

import logging
import threading

import functions_framework

from firebackup.services.workers import TASKS

log = logging.getLogger("firebackup.backup_worker")
_state: dict = {}
_lock = threading.Lock()


def _setup():
    with _lock:
        if not _state:
            from firebackup.api.wiring import build_ports
            from firebackup.db.session import make_engine, make_session_factory
            from firebackup.services.ports import RecordingQueue
            from firebackup.settings import Settings

            settings = Settings.from_env()
            _state["factory"] = make_session_factory(make_engine(settings))
            _state["settings"] = settings
            _state["build_ports"] = build_ports
            _state["queue_type"] = RecordingQueue
        return _state


@functions_framework.http
def backup_worker(request):
    from firebackup.services.workers import run_task

    body = request.get_json(silent=True) or {}
    name, payload = body.get("task"), body.get("payload")
    if name not in TASKS or not isinstance(payload, dict):
        return {"error": {"code": "invalid", "message": f"unknown task {name!r}; send task and payload"}}, 400
    st = _setup()
    queue = st["queue_type"]()
    ports = st["build_ports"](st["settings"], queue=queue)
    pending = [(name, payload)]
    try:
        while pending:
            task, data = pending.pop(0)
            run_task(task, data, st["factory"], ports)
            pending.extend(queue.tasks)
            queue.tasks.clear()
    except Exception:  # noqa: BLE001 - a 500 makes Cloud Tasks retry; handlers are idempotent
        log.exception("task %s failed", name)
        return {"error": {"code": "internal", "message": f"task {name} failed; it will be retried"}}, 500
    return "", 204
