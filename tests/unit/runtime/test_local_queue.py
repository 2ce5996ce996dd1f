"""LocalQueue runs tasks and their follow-ups to completion and re-raises the first failure."""

from __future__ import annotations

import threading
from typing import Callable

import pytest

from firebackup.runtime.queue import LocalQueue, TaskQueue


def test_follow_up_tasks_run_before_join_returns():
    seen, lock = [], threading.Lock()
    q = LocalQueue(threads=3)

    def chain(payload):
        with lock:
            seen.append((payload["chain"], payload["n"]))
        if payload["n"] < 4:
            q.enqueue("chain", {"chain": payload["chain"], "n": payload["n"] + 1})

    q.register("chain", chain)
    with q:
        for c in range(3):
            q.enqueue("chain", {"chain": c, "n": 0})
        q.join()
    assert sorted(seen) == [(c, n) for c in range(3) for n in range(5)]
    assert isinstance(q, TaskQueue)


def test_the_first_failure_is_raised_and_pending_tasks_do_not_start():
    started = []
    gate = threading.Event()
    q = LocalQueue(threads=1)

    def work(payload):
        started.append(payload["i"])
        if payload["i"] == 0:
            gate.wait(5)
            raise RuntimeError("task 0 failed")

    q.register("work", work)
    with q:
        for i in range(5):
            q.enqueue("work", {"i": i})
        gate.set()
        with pytest.raises(RuntimeError, match="task 0 failed"):
            q.join()
    assert started == [0]


def test_an_unknown_task_name_is_refused():
    with pytest.raises(KeyError):
        LocalQueue().enqueue("nope", {})


class HeldTimer:
    """A Timer that fires only when the test says so; records the interval it was given."""

    made: list["HeldTimer"] = []

    def __init__(self, interval: float, function: Callable[[], None]) -> None:
        self.interval, self.function, self.daemon, self.started = interval, function, False, False
        HeldTimer.made.append(self)

    def start(self) -> None:
        self.started = True

    def cancel(self) -> None:
        self.started = False

    def fire(self) -> None:
        assert self.started
        self.function()


def test_a_delayed_task_waits_for_its_timer_and_join_waits_for_it() -> None:
    HeldTimer.made.clear()
    ran: list[int] = []
    second_done = threading.Event()
    q = LocalQueue(threads=1, timer=HeldTimer)

    def hook(payload: dict[str, int]) -> None:
        ran.append(payload["n"])
        if payload["n"] == 2:
            second_done.set()

    q.register("hook", hook)
    with q:
        q.enqueue("hook", {"n": 1}, delay_seconds=30.0)
        q.enqueue("hook", {"n": 2})
        [timer] = HeldTimer.made
        assert timer.interval == 30.0

        def fire_after_the_undelayed_task() -> None:
            second_done.wait(10)
            timer.fire()

        firer = threading.Thread(target=fire_after_the_undelayed_task)
        firer.start()
        q.join()
        when_joined = list(ran)
        firer.join()
    assert when_joined == [2, 1]
