"""The TaskQueue port and its in-process adapter.

In the cloud, tasks go to Cloud Tasks and each runs in its own function instance; locally
LocalQueue runs them on a thread pool. Either way a task is (name, payload) with a
JSON-serializable payload, a handler may enqueue follow-up tasks, and handlers must be
idempotent because a queue may deliver a task more than once.

    queue = LocalQueue(threads=4)
    queue.register("chunk", lambda payload: run_chunk(...))
    queue.enqueue("chunk", {"partition": 0, "seq": 0})
    queue.join()          # waits for every task, follow-ups included; raises the first failure
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Protocol, runtime_checkable

Handler = Callable[[dict], Any]


@runtime_checkable
class TaskQueue(Protocol):
    def enqueue(self, name: str, payload: dict) -> None:
        """Schedule handler `name` to run once (at least once, in the cloud) with payload."""


class LocalQueue:
    """Runs tasks on a thread pool in this process.

    join() returns when no task is queued or running; if a handler raised, pending tasks
    are dropped, running ones finish, and join() re-raises the first exception.
    """

    def __init__(self, threads: int = 4, handlers: dict[str, Handler] | None = None):
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.threads = threads
        self._handlers: dict[str, Handler] = dict(handlers or {})
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._outstanding = 0
        self._error: BaseException | None = None
        self.completed = 0

    def register(self, name: str, handler: Handler) -> None:
        self._handlers[name] = handler

    def enqueue(self, name: str, payload: dict) -> None:
        handler = self._handlers.get(name)
        if handler is None:
            raise KeyError(f"no handler registered for task {name!r}")
        with self._lock:
            if self._error is not None:
                return  # the run already failed; don't start more work
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="firebackup-task")
            self._outstanding += 1
        try:
            self._pool.submit(self._run, handler, payload)
        except BaseException:
            self._done()
            raise

    def _run(self, handler: Handler, payload: dict) -> None:
        try:
            if self._error is None:
                handler(payload)
        except BaseException as e:  # noqa: BLE001 - handed to join()
            with self._lock:
                if self._error is None:
                    self._error = e
        finally:
            self._done()

    def _done(self) -> None:
        with self._lock:
            self._outstanding -= 1
            self.completed += 1
            if self._outstanding == 0:
                self._idle.notify_all()

    def join(self) -> None:
        """Wait until every task (and every follow-up) has finished; raise the first failure."""
        with self._lock:
            while self._outstanding:
                self._idle.wait()
            error, self._error = self._error, None
        if error is not None:
            raise error

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "LocalQueue":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
