"""MemoryJobStore: leases, and where a redelivered task resumes."""

from __future__ import annotations

import datetime as dt

from firebackup.engine.jobs import ClaimState, MemoryJobStore
from firebackup.format.manifest import ChunkEntry

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


class _Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


def test_a_task_claimed_after_its_lease_expired_resumes_after_the_last_recorded_chunk() -> None:
    clock = _Clock()
    store = MemoryJobStore(clock=clock, lease_seconds=60)
    first = store.claim("job", "d00000-00000")
    store.record_chunk("job", "d00000-00000", ChunkEntry("d00000-00000", records=3), 1, "projects/p/databases/d/documents/c/x")

    clock.now = T0 + dt.timedelta(seconds=61)
    again = store.claim("job", "d00000-00000")

    assert (first.state, first.resume_seq, first.resume_after) == (ClaimState.RUN, None, None)
    assert again.state is ClaimState.RUN
    assert (again.attempt, again.job_state) == (2, "running")
    assert (again.resume_seq, again.resume_after) == (1, "projects/p/databases/d/documents/c/x")


def test_a_task_claimed_while_another_attempt_holds_its_lease_is_busy() -> None:
    clock = _Clock()
    store = MemoryJobStore(clock=clock, lease_seconds=60)
    store.claim("job", "plan")

    clock.now = T0 + dt.timedelta(seconds=59)
    assert store.claim("job", "plan").state is ClaimState.BUSY
