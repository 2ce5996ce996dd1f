"""gcloud-tasks-emulator, corrected where our tests depend on Cloud Tasks' behaviour.

    python -m infra.local.tasks_emulator --port 9022     # gRPC on 127.0.0.1:9022

The emulator (pip gcloud-tasks-emulator 0.6) serves the Cloud Tasks gRPC API with the proto-plus
types of google-cloud-tasks and runs with our grpcio and protobuf 6+ unchanged: its `protobuf<5`
pin is stale, so it is installed with --no-deps (infra/bootstrap.sh). Four of its behaviours
differ from Cloud Tasks in ways the tests rely on; this launcher corrects them with a subclass of
its queue state and a dispatch loop of its own around its gRPC servicer (its files stay as released):

- it listens on every interface; here only on 127.0.0.1;
- it accepts a task whose name is already taken; Cloud Tasks refuses it with ALREADY_EXISTS,
  also for about an hour after the first one ran or was deleted: our queue relies on that to
  drop duplicates (here a name stays taken for the emulator's lifetime);
- it sends one task of a queue at a time; Cloud Tasks sends up to the queue's
  rate_limits.max_concurrent_dispatches at once, so chunk tasks run in parallel;
- it sends a failed task again at once and forever, and ignores UpdateQueue; Cloud Tasks waits
  min_backoff, doubling up to max_backoff, stops after retry_config.max_attempts, and UpdateQueue
  creates or changes the queue.
A task is sent no earlier than its schedule_time, and a task being sent stays listed (as in Cloud
Tasks, a task is deleted only once it succeeded).
Not emulated: max_dispatches_per_second, and OIDC tokens (the emulator cannot mint them; our
queue sends the worker secret instead). Every attempt is logged as one line on stdout:
`dispatched <task id> attempt=<n> status=<http status>`, for tests to read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import logging
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from gcloud_tasks_emulator.cloudtasks_pb2_grpc import add_CloudTasksServicer_to_server
from gcloud_tasks_emulator.server import Greeter, QueueState
from google.api_core.exceptions import AlreadyExists, NotFound
from google.cloud.tasks_v2 import Queue, Task

HOST = "127.0.0.1"
DEFAULT_MAX_ATTEMPTS = 100  # Cloud Tasks' defaults for a queue that sets none
DEFAULT_MIN_BACKOFF, DEFAULT_MAX_BACKOFF = 0.1, 3600.0
DEFAULT_CONCURRENCY = 1000
DISPATCH_TIMEOUT = 600.0  # Cloud Tasks' default dispatch deadline for HTTP targets

log = logging.getLogger("tasks-emulator")


class State(QueueState):  # type: ignore[misc]  # the emulator ships no types
    """The emulator's queues and tasks, with Cloud Tasks' name rules and queue updates."""

    def __init__(self) -> None:
        super().__init__(HOST, 80, -1)
        self.lock = threading.RLock()
        self.used: set[str] = set()
        self.due: dict[str, float] = {}  # task name -> monotonic time it may be sent
        self.sending: dict[str, list[Task]] = {}  # queue name -> tasks being sent now

    def create_queue(self, parent: Any, queue: Queue) -> Queue:
        with self.lock:
            created: Queue = super().create_queue(parent, queue)
            self.sending.setdefault(created.name, [])
            return created

    def update_queue(self, queue: Queue) -> Queue:
        with self.lock:
            if queue.name not in self._queues:
                return self.create_queue(None, queue)
            current: Queue = self._queues[queue.name]
            current.rate_limits = queue.rate_limits
            current.retry_config = queue.retry_config
            return current

    def create_task(self, queue: str, task: Task) -> Task:
        with self.lock:
            if task.name and task.name in self.used:
                raise AlreadyExists(f"Requested entity already exists: {task.name}")  # type: ignore[no-untyped-call]
            created: Task = super().create_task(queue, task)
            self.used.add(created.name)
            wait = 0.0
            if created.schedule_time is not None:  # a task not to be sent before its schedule_time
                wait = max(0.0, (created.schedule_time - dt.datetime.now(dt.timezone.utc)).total_seconds())
            self.due[created.name] = time.monotonic() + wait
            return created

    def list_tasks(self, queue_name: str) -> list[Task]:
        with self.lock:
            if queue_name not in self._queue_tasks:
                raise NotFound(f"Queue {queue_name} does not exist.")  # type: ignore[no-untyped-call]
            return [*self.sending.get(queue_name, []), *self._queue_tasks[queue_name]]

    def take_due(self, queue_name: str) -> list[Task]:
        """Remove and return the queue's tasks that are due, as many as its concurrency leaves room for."""
        with self.lock:
            queue = self._queues.get(queue_name)
            if queue is None or queue.state != Queue.State.RUNNING:
                return []
            limit = queue.rate_limits.max_concurrent_dispatches or DEFAULT_CONCURRENCY
            sending = self.sending.setdefault(queue_name, [])
            now, taken = time.monotonic(), []
            for task in list(self._queue_tasks[queue_name]):
                if len(sending) >= limit:
                    break
                if self.due.get(task.name, 0.0) <= now:
                    self._queue_tasks[queue_name].remove(task)
                    sending.append(task)
                    taken.append(task)
            return taken

    def settle(self, queue_name: str, task: Task, status: int) -> None:
        """After an attempt: a 2xx deletes the task; a failure waits for its backoff, or gives up."""
        with self.lock:
            if task in self.sending.get(queue_name, []):
                self.sending[queue_name].remove(task)
            queue = self._queues.get(queue_name)
            if 200 <= status < 300 or queue is None:
                self.due.pop(task.name, None)
                return
            retry = queue.retry_config
            attempts = retry.max_attempts or DEFAULT_MAX_ATTEMPTS
            if 0 < attempts <= task.dispatch_count:
                log.info("gave up %s after %d attempts", task.name, task.dispatch_count)
                self.due.pop(task.name, None)
                return
            low = _seconds(retry.min_backoff, DEFAULT_MIN_BACKOFF)
            high = _seconds(retry.max_backoff, DEFAULT_MAX_BACKOFF)
            self.due[task.name] = time.monotonic() + min(high, low * 2 ** (task.dispatch_count - 1))
            self._queue_tasks[queue_name].append(task)


class Dispatcher(threading.Thread):
    """Sends due tasks to their URLs, each queue up to its max_concurrent_dispatches at once."""

    def __init__(self, state: State) -> None:
        super().__init__(name="dispatcher", daemon=True)
        self.state = state
        self.stopped = threading.Event()
        self.pool = ThreadPoolExecutor(64, thread_name_prefix="dispatch")

    def run(self) -> None:
        while not self.stopped.wait(0.02):
            for queue_name in self.state.queue_names():
                for task in self.state.take_due(queue_name):
                    self.pool.submit(self.send, queue_name, task)

    def send(self, queue_name: str, task: Task) -> None:
        task.dispatch_count += 1
        try:
            status = _deliver(queue_name, task)
        except Exception:  # noqa: BLE001 - never lose a task to a bug here: count it as a failed attempt
            log.exception("delivering %s failed", task.name)
            status = 500
        print(f"dispatched {task.name.rsplit('/', 1)[-1]} attempt={task.dispatch_count} status={status}", flush=True)
        self.state.settle(queue_name, task, status)

    def stop(self) -> None:
        self.stopped.set()
        self.pool.shutdown(wait=False, cancel_futures=True)


def _deliver(queue_name: str, task: Task) -> int:
    """The HTTP status of one attempt; 500 when the worker could not be reached or hung up (a crash).

    The request the emulator makes for an HTTP target (its X-CloudTasks-* headers included), with
    a deadline as Cloud Tasks has (the emulator's own waits forever).
    """
    target = task.http_request
    headers = {**dict(target.headers),
               "X-CloudTasks-QueueName": queue_name.rsplit("/", 1)[-1],
               "X-CloudTasks-TaskName": task.name.rsplit("/", 1)[-1],
               "X-CloudTasks-TaskRetryCount": str(task.dispatch_count - 1),
               "X-CloudTasks-TaskExecutionCount": str(task.dispatch_count - 1)}
    request = urllib.request.Request(target.url, data=target.body, method=target.http_method.name or "POST",
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=DISPATCH_TIMEOUT) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (OSError, http.client.HTTPException) as e:  # refused, reset, hung up mid-answer, timed out
        log.info("could not deliver %s: %s", task.name, e)
        return 500


def _seconds(duration: Any, default: float) -> float:
    if duration is None:
        return default
    seconds = duration.total_seconds() if isinstance(duration, dt.timedelta) else float(duration)
    return seconds or default


def serve(port: int) -> None:
    state = State()
    server = grpc.server(ThreadPoolExecutor(16, thread_name_prefix="grpc"))
    add_CloudTasksServicer_to_server(Greeter(state), server)
    if server.add_insecure_port(f"{HOST}:{port}") == 0:
        raise SystemExit(f"tasks emulator: cannot listen on {HOST}:{port}: address already in use")
    server.start()
    dispatcher = Dispatcher(state)
    dispatcher.start()
    print(f"tasks emulator listening on {HOST}:{port}", flush=True)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.sigwait({signal.SIGINT, signal.SIGTERM})
    dispatcher.stop()
    server.stop(grace=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="gcloud-tasks-emulator with Cloud Tasks' name, dispatch and "
                                                 "retry rules")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    serve(args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
