"""One task per HTTP request: what a worker function does with a delivery from Cloud Tasks.

    endpoint = TaskEndpoint(handlers, auth, max_attempts=..., on_give_up=workers.dead_letter)
    body, status = endpoint.respond(request.headers, request.get_data())

The request body is {"task": "<name>", "payload": {...}} (runtime/cloud_tasks.py writes it).
Exactly one task runs per request; the tasks it enqueues go back to the queue, so they run in
parallel on as many instances as Cloud Tasks dispatches. The status tells Cloud Tasks whether
to deliver the task again, so it retries exactly what is worth retrying:

    204  the task ran (or had nothing left to do: a duplicate delivery)
    200  it failed for good; its job row records why, and a retry cannot help. Also for a transient
         failure on the last delivery the queue allows: the job is failed then (on_give_up)
    503  it failed transiently (errors.is_transient): delivered again after the queue's backoff
    400  not a task of this worker (an unknown name, or a body that is not {"task", "payload"})
    401  the caller is not authenticated; nothing ran
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Mapping

from firebackup.engine.jobs import LeaseHeld, one_line
from firebackup.errors import FireBackupError, is_transient
from firebackup.runtime.queue import GiveUp, Handler, Payload
from firebackup.runtime.worker_auth import WorkerAuth

log = logging.getLogger("firebackup.worker")

RETRY_COUNT_HEADER = "X-CloudTasks-TaskRetryCount"  # 0 on the first delivery

Answer = tuple[dict[str, Any] | str, int]


class TaskEndpoint:
    """Authenticates a delivery, runs its one task and answers with the status for the queue.

    max_attempts(task) is the number of deliveries the task's queue allows (-1: no limit).
    """

    def __init__(self, handlers: Mapping[str, Handler], auth: WorkerAuth, *,
                 max_attempts: Callable[[str], int] = lambda task: -1, on_give_up: GiveUp | None = None):
        self.handlers, self.auth = dict(handlers), auth
        self.max_attempts, self.on_give_up = max_attempts, on_give_up

    def respond(self, headers: Mapping[str, str], body: bytes) -> Answer:
        if self.auth.caller(headers) is None:
            log.warning("refused an unauthenticated task request")
            return _error("unauthenticated", "this worker runs tasks from its queue only"), 401
        task = _parse(body)
        if task is None or task[0] not in self.handlers:
            known = ", ".join(sorted(self.handlers))
            name = task[0] if task is not None else None
            return _error("invalid", f"unknown task {name!r}; send {{\"task\", \"payload\"}} with a task "
                                     f"of this worker: {known}"), 400
        name, payload = task
        started = time.monotonic()
        try:
            self.handlers[name](payload)
        except Exception as e:  # noqa: BLE001 - the status decides whether Cloud Tasks delivers it again
            return self._failed(name, payload, e, _attempt(headers))
        log.info("task %s done in %.0f ms", name, (time.monotonic() - started) * 1000)
        return "", 204

    def _failed(self, name: str, payload: Payload, e: Exception, attempt: int) -> Answer:
        if not is_transient(e):
            log.error("task %s failed for good: %s", name, one_line(e), exc_info=not isinstance(e, FireBackupError))
            return _error("failed", f"task {name} failed; its job records why"), 200
        limit = self.max_attempts(name)
        # A held lease means another delivery is running the task now: it finishes it, so the
        # last attempt of this one must not fail the job under it.
        if 0 < limit <= attempt and self.on_give_up is not None and not isinstance(e, LeaseHeld):
            log.error("task %s failed on its last attempt (%d of %d): %s", name, attempt, limit, one_line(e))
            self.on_give_up(name, payload, e)
            return _error("failed", f"task {name} gave up after {attempt} attempts"), 200
        log.warning("task %s failed transiently (attempt %d); it will be retried: %s", name, attempt, one_line(e))
        return _error("unavailable", f"task {name} will be retried"), 503


def _parse(body: bytes) -> tuple[str, Payload] | None:
    try:
        data = json.loads(body or b"null")
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("task"), str) or not isinstance(data.get("payload"), dict):
        return None
    return data["task"], data["payload"]


def _attempt(headers: Mapping[str, str]) -> int:
    """This delivery's number, 1 for the first (Cloud Tasks counts retries from 0)."""
    try:
        return int(headers.get(RETRY_COUNT_HEADER, "0")) + 1
    except ValueError:
        return 1


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


__all__ = ["TaskEndpoint", "RETRY_COUNT_HEADER"]
