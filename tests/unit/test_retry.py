"""The one retry policy, on a fake clock: attempts, deadline, full-jitter bounds, what is retried."""

from __future__ import annotations

import random
import threading

import pytest

from firebackup.errors import (
    AccessDenied,
    FireBackupError,
    KmsUnavailable,
    SourceAccessDenied,
    SourceUnavailable,
    TransientError,
    TransientSourceError,
    TransientStorageError,
    UsageError,
    is_transient,
)
from firebackup.retry import RetryPolicy


class FakeClock:
    """Time that moves only when the policy sleeps (or a test advances it)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def policy(clock: FakeClock, **kw: object) -> RetryPolicy:
    kw.setdefault("rng", lambda: 1.0)
    return RetryPolicy(clock=clock, sleep=clock.sleep, **kw)  # type: ignore[arg-type]


class Flaky:
    """Fails with the given errors in turn, then returns "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def unavailable() -> SourceUnavailable:
    return SourceUnavailable("RunQuery on db at host: UNAVAILABLE", grpc_code="UNAVAILABLE")


def test_transient_errors_are_retried_with_doubling_delays_up_to_max_delay():
    clock = FakeClock()
    fn = Flaky(*(unavailable() for _ in range(5)))
    assert policy(clock, attempts=6, base_delay=0.5, max_delay=3.0, deadline=None).call(fn) == "ok"
    assert fn.calls == 6
    assert clock.sleeps == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_a_permanent_error_is_raised_at_once_without_a_retry():
    clock = FakeClock()
    denied = SourceAccessDenied("RunQuery on db: permission denied", grpc_code="PERMISSION_DENIED")
    fn = Flaky(denied)
    with pytest.raises(SourceAccessDenied) as e:
        policy(clock).call(fn)
    assert e.value is denied and fn.calls == 1 and clock.sleeps == []


@pytest.mark.parametrize("error", [ValueError("a bug"), AccessDenied("403"), UsageError("bad input")])
def test_errors_that_are_not_transient_ones_of_ours_are_never_retried(error):
    clock = FakeClock()
    fn = Flaky(error)
    with pytest.raises(type(error)):
        policy(clock).call(fn)
    assert fn.calls == 1 and clock.sleeps == []


def test_the_attempt_budget_is_tries_in_all_and_the_last_error_says_so():
    clock = FakeClock()
    fn = Flaky(*(unavailable() for _ in range(10)))
    with pytest.raises(SourceUnavailable, match=r"UNAVAILABLE \(gave up after 3 attempts in 3\.0 s\)") as e:
        policy(clock, attempts=3, base_delay=1.0, max_delay=2.0).call(fn)
    assert fn.calls == 3 and clock.sleeps == [1.0, 2.0]
    assert is_transient(e.value), "a queue above may still retry the whole task later"


def test_the_deadline_stops_retries_before_the_attempts_run_out():
    clock = FakeClock()
    fn = Flaky(*(unavailable() for _ in range(100)))
    with pytest.raises(SourceUnavailable, match="gave up after"):
        policy(clock, attempts=100, base_delay=4.0, max_delay=4.0, deadline=10.0).call(fn)
    # 4 + 4 + the 2 s left before the deadline; then one last try, then no more waiting.
    assert clock.sleeps == [4.0, 4.0, 2.0] and fn.calls == 4
    assert clock.now == 10.0


def test_time_spent_inside_failing_calls_counts_against_the_deadline():
    clock = FakeClock()

    def slow_failure() -> None:
        clock.now += 7.0
        raise unavailable()

    with pytest.raises(SourceUnavailable):
        policy(clock, attempts=100, base_delay=1.0, max_delay=1.0, deadline=10.0).call(slow_failure)
    assert clock.sleeps == [1.0] and clock.now == 15.0


def test_full_jitter_waits_anywhere_between_zero_and_the_capped_exponential():
    caps = [0.2 * 2 ** (n - 1) for n in range(1, 9)]
    caps = [min(2.0, c) for c in caps]
    rng = random.Random(7)
    p = RetryPolicy(base_delay=0.2, max_delay=2.0, rng=rng.random)
    samples = [[p.delay(n) for n in range(1, 9)] for _ in range(500)]
    for n, cap in enumerate(caps):
        column = [s[n] for s in samples]
        assert all(0.0 <= d <= cap for d in column)
        assert min(column) < cap * 0.1 and max(column) > cap * 0.9, "spread over the whole interval"
    assert RetryPolicy(base_delay=0.2, max_delay=2.0, rng=lambda: 0.0).delay(5) == 0.0


def test_the_default_jitter_leaves_the_global_random_state_alone():
    random.seed(1234)
    expected = random.random()
    random.seed(1234)
    RetryPolicy().delay(3)
    assert random.random() == expected


def test_progress_gives_a_stream_a_fresh_budget_per_stall():
    clock = FakeClock()
    run = policy(clock, attempts=2, base_delay=1.0, max_delay=1.0).start()
    for _ in range(5):  # one failure after each piece of progress: never two in a row
        run.failed(unavailable())
        run.progressed()
    assert clock.sleeps == [1.0] * 5
    run.failed(unavailable())
    with pytest.raises(SourceUnavailable, match="gave up after 2 attempts"):
        run.failed(unavailable())


def test_again_counts_failures_that_are_not_exceptions():
    clock = FakeClock()
    run = policy(clock, attempts=3, base_delay=1.0).start()
    assert run.again() and run.again() and not run.again()
    assert run.tries == 4 and clock.sleeps == [1.0, 2.0]


def test_cancel_ends_a_real_wait_and_allows_no_further_try():
    run = RetryPolicy(base_delay=3600.0, max_delay=3600.0, deadline=None, rng=lambda: 1.0).start()
    raised: list[BaseException] = []

    def fail_once() -> None:
        try:
            run.failed(unavailable())  # waits an hour unless cancel() ends the wait
        except SourceUnavailable as e:
            raised.append(e)

    waiter = threading.Thread(target=fail_once)
    waiter.start()
    run.cancel()
    waiter.join(timeout=60)  # a safety net for a broken cancel(), not a measurement
    assert not waiter.is_alive() and run.cancelled
    assert len(raised) == 1 and "gave up after 1 attempts" in str(raised[0])


def test_every_transient_error_of_ours_is_a_transient_error_and_exits_1():
    for kind in (TransientStorageError, TransientSourceError, SourceUnavailable, KmsUnavailable):
        err = kind("x")
        assert isinstance(err, TransientError) and is_transient(err) and err.exit_code == 1
    assert not is_transient(FireBackupError("x")) and not is_transient(TimeoutError())


@pytest.mark.parametrize("kw", [{"attempts": 0}, {"base_delay": -1.0}, {"deadline": -5.0}])
def test_a_policy_that_cannot_work_is_a_usage_error(kw):
    with pytest.raises(UsageError):
        RetryPolicy(**kw)  # type: ignore[arg-type]
