"""The one retry policy for calls to remote services: storage, Firestore, Auth and Cloud KMS.

Exponential backoff with full jitter: before retry n (n >= 1) a run waits
rng() * min(max_delay, base_delay * 2**(n-1)). Only transient errors (errors.is_transient)
are retried; anything else surfaces at once. A run gives up after `attempts` tries in all
or once `deadline` seconds have passed since it started, whichever comes first, and then
raises the last transient error with "(gave up after N attempts in S s)" appended; it stays
transient, so a task queue above may still retry the whole task later.

    policy = RetryPolicy(attempts=5, deadline=30)
    info = policy.call(storage.stat, key)              # one call, retried as a whole

    run = policy.start()                               # a loop that resumes instead of restarting
    while True:
        try:
            ...                                        # read on from where the last try stopped
        except Exception as e:
            run.failed(e)                              # raises, or waits before the next try
        run.progressed()                               # work went through: a fresh budget

A run's budget is per stall: progressed() starts it over, so a long stream that fails now
and then is not cut off by its total length. Sleep, clock and random source are injectable
for tests; by default the jitter comes from a private generator, so retries never move the
global random state that callers (and hypothesis, in the tests) own.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, ParamSpec, TypeVar

from firebackup.errors import TransientError, UsageError

P = ParamSpec("P")
T = TypeVar("T")


def _private_random() -> Callable[[], float]:
    return random.Random().random


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry; immutable, shared by every run made from it.

    sleep=None waits on the run's own event, so cancel() ends a wait at once; pass a
    function (e.g. a fake that records delays) to wait with it instead.
    """

    attempts: int = 6
    base_delay: float = 0.2
    max_delay: float = 10.0
    deadline: float | None = 60.0
    sleep: Callable[[float], object] | None = None
    clock: Callable[[], float] = time.monotonic
    rng: Callable[[], float] = field(default_factory=_private_random)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise UsageError(f"retry attempts must be >= 1, got {self.attempts}")
        if self.base_delay < 0 or self.max_delay < 0 or (self.deadline is not None and self.deadline < 0):
            raise UsageError("retry delays and deadline must be >= 0")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based): full jitter."""
        return self.rng() * min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))

    def start(self) -> "RetryRun":
        """A fresh budget for one operation (see RetryRun)."""
        return RetryRun(self)

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """fn(*args, **kwargs), retried as a whole while it raises transient errors."""
        run = self.start()
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - failed() re-raises all but transient errors
                run.failed(e)


NO_RETRY = RetryPolicy(attempts=1)
"""Every error surfaces at once (for callers whose caller retries)."""


class RetryRun:
    """One operation's budget under a policy: tries made and time spent since its last progress."""

    def __init__(self, policy: RetryPolicy):
        self.policy = policy
        self.failures = 0
        self._started = policy.clock()
        self._cancelled = threading.Event()

    @property
    def tries(self) -> int:
        """Tries made so far in this stall (the failed ones and the one under way)."""
        return self.failures + 1

    def failed(self, error: BaseException) -> None:
        """After a failed try: wait before the next one, or raise.

        Raises `error` itself unless it is transient (TransientError); raises it with
        "(gave up ...)" appended when the attempts or the deadline are spent, or when the
        run was cancelled meanwhile.
        """
        if not isinstance(error, TransientError):
            raise error
        if not self.again():
            raise error.gave_up(self.failures, self.policy.clock() - self._started)

    def again(self) -> bool:
        """Count a failure that is not an exception (e.g. per-write statuses); wait and say
        True if another try is allowed, or say False when the budget is spent or the run cancelled."""
        self.failures += 1
        p = self.policy
        elapsed = p.clock() - self._started
        if self.failures >= p.attempts or self._cancelled.is_set():
            return False
        wait = p.delay(self.failures)
        if p.deadline is not None:
            if elapsed >= p.deadline:
                return False
            wait = min(wait, p.deadline - elapsed)
        if p.sleep is None:
            self._cancelled.wait(wait)
        else:
            p.sleep(wait)
        return not self._cancelled.is_set()

    def progressed(self) -> None:
        """Work went through since the last failure: the next failure starts a fresh budget."""
        self.failures = 0
        self._started = self.policy.clock()

    def cancel(self) -> None:
        """End a wait under way at once and allow no further try; thread-safe."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()
