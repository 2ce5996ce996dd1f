"""The TaskQueue port and its in-process adapter.

In the cloud, tasks go to Cloud Tasks and each runs in its own function instance; locally
LocalQueue runs them on a thread pool. Either way a task is (name, payload) with a
JSON-serializable payload, a handler may enqueue follow-up tasks, and handlers must be
idempotent because a queue may deliver a task more than once.

    queue = LocalQueue(threads=4)
    queue.register("chunk", lambda payload: run_chunk(...))
    queue.enqueue("chunk", {"partition": 0, "seq": 0})
    queue.enqueue("webhook_deliver", {"delivery_id": "whd_1"}, delay_seconds=30)  # not before 30 s
    queue.join()          # waits for every task, follow-ups included; raises the first failure

Like Cloud Tasks, LocalQueue delivers again a task whose handler raised a transient error
(firebackup.errors.is_transient), after an exponential backoff with full jitter, up to
max_attempts deliveries; a task that fails for good goes to on_give_up (the dead letter), or
without one to join().
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Protocol, runtime_checkable

from firebackup.errors import is_transient

Payload = dict[str, Any]  # JSON-serializable: Cloud Tasks carries it as the request body
Handler = Callable[[Payload], object]
GiveUp = Callable[[str, Payload, BaseException], None]

DEFAULT_MAX_ATTEMPTS = 5
_BASE_DELAY, _MAX_DELAY = 0.2, 10.0


@runtime_checkable
class TaskQueue(Protocol):
    def enqueue(self, name: str, payload: Payload, *, delay_seconds: float = 0.0) -> None:
        """Schedule handler `name` to run once (at least once, in the cloud) with payload.

        delay_seconds > 0: not before that many seconds from now (Cloud Tasks: schedule_time).
        """


class Timer(Protocol):
    """What LocalQueue needs of threading.Timer; tests pass a factory that fires on demand."""

    daemon: bool

    def start(self) -> None: ...

    def cancel(self) -> None: ...


TimerFactory = Callable[[float, Callable[[], None]], Timer]


class LocalQueue:
    """Runs tasks on a thread pool in this process.

    join() returns when no task is queued or running; if a handler raised, pending tasks
    are dropped, running ones finish, and join() re-raises the first exception.
    """

    def __init__(self, threads: int = 4, handlers: dict[str, Handler] | None = None, *,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS, on_give_up: GiveUp | None = None,
                 delay: Callable[[int], float] | None = None, timer: TimerFactory = threading.Timer):
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.threads = threads
        self.max_attempts = max(1, max_attempts)
        self.on_give_up = on_give_up
        self._random = random.Random()
        self._delay = delay or self._full_jitter
        self._timer = timer
        self._timers: set[Timer] = set()
        self._handlers: dict[str, Handler] = dict(handlers or {})
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._outstanding = 0
        self._error: BaseException | None = None
        self.completed = 0

    def register(self, name: str, handler: Handler) -> None:
        self._handlers[name] = handler

    def enqueue(self, name: str, payload: Payload, *, delay_seconds: float = 0.0) -> None:
        if name not in self._handlers:
            raise KeyError(f"no handler registered for task {name!r}")
        with self._lock:
            if self._error is not None:
                return  # the run already failed; don't start more work
            self._outstanding += 1
        if delay_seconds > 0:
            self._later(delay_seconds, name, payload, 1)
        else:
            self._submit(name, payload, 1)

    def _submit(self, name: str, payload: Payload, attempt: int) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="firebackup-task")
            pool = self._pool
        try:
            pool.submit(self._run, name, payload, attempt)
        except BaseException:
            self._done()
            raise

    def _full_jitter(self, attempt: int) -> float:
        return self._random.uniform(0, min(_MAX_DELAY, _BASE_DELAY * 2 ** (attempt - 1)))

    def _run(self, name: str, payload: Payload, attempt: int) -> None:
        try:
            if self._error is None:
                self._handlers[name](payload)
        except BaseException as e:  # noqa: BLE001 - retried, given up, or handed to join()
            if is_transient(e) and attempt < self.max_attempts and self._error is None:
                self._later(self._delay(attempt + 1), name, payload, attempt + 1)
                return  # still outstanding: _done() runs when the last attempt ends
            if self.on_give_up is not None and isinstance(e, Exception):
                self.on_give_up(name, payload, e)
            else:
                with self._lock:
                    if self._error is None:
                        self._error = e
        self._done()

    def _later(self, seconds: float, name: str, payload: Payload, attempt: int) -> None:
        """Submit delivery `attempt` after `seconds`; the task stays outstanding meanwhile."""

        def fire() -> None:
            with self._lock:
                self._timers.discard(timer)
            self._submit(name, payload, attempt)

        timer = self._timer(seconds, fire)
        timer.daemon = True
        with self._lock:
            self._timers.add(timer)
        timer.start()

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
        with self._lock:
            timers, self._timers = list(self._timers), set()
        for timer in timers:
            timer.cancel()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "LocalQueue":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
