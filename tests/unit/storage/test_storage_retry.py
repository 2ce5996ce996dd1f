"""RetryingStorage over MemoryStorage with injected faults: what is retried, what is not."""

import hashlib
import os

import pytest

from firebackup.errors import AccessDenied, BucketNotFound, ObjectExists, ObjectNotFound, TransientStorageError
from firebackup.storage import MemoryStorage
from firebackup.storage.faulty import Fault, FaultyStorage, access_denied, bucket_missing, connection_reset
from firebackup.retry import RetryPolicy
from firebackup.storage.retry import RetryingStorage

PART = 1024


def stack(*faults, attempts=5, page_size=1000):
    mem = MemoryStorage(part_size=PART, page_size=page_size)
    faulty = FaultyStorage(mem, list(faults))
    sleeps: list[float] = []
    policy = RetryPolicy(attempts=attempts, base_delay=1.0, max_delay=5.0, sleep=sleeps.append, rng=lambda: 1.0)
    retrying = RetryingStorage(faulty, policy)
    return mem, faulty, retrying, sleeps


def test_transient_put_failures_are_retried_to_success_with_backoff():
    mem, faulty, r, sleeps = stack(Fault("put", 1, times=3))
    r.put("k", b"data")
    assert mem.get("k") == b"data"
    assert faulty.calls["put"] == 4
    assert sleeps == [1.0, 2.0, 4.0]


@pytest.mark.parametrize("error, kind", [(access_denied, AccessDenied), (bucket_missing, BucketNotFound)])
def test_permanent_errors_surface_once_without_retries(error, kind):
    mem, faulty, r, sleeps = stack(Fault("get", 1, times=10, error=error))
    mem.put("k", b"x")
    with pytest.raises(kind) as e:
        r.get("k")
    assert faulty.calls["get"] == 1
    assert sleeps == []
    assert "\n" not in str(e.value)


def test_object_not_found_is_not_retried():
    mem, faulty, r, sleeps = stack()
    with pytest.raises(ObjectNotFound):
        r.stat("missing")
    assert faulty.calls["stat"] == 1 and sleeps == []


def test_retries_give_up_after_the_attempt_budget_with_a_clear_message():
    mem, faulty, r, sleeps = stack(Fault("delete", 1, times=99), attempts=3)
    with pytest.raises(TransientStorageError, match=r"gave up after 3 attempts"):
        r.delete("k")
    assert faulty.calls["delete"] == 3 and len(sleeps) == 2


@pytest.mark.parametrize("after", [False, True], ids=["request-lost", "response-lost"])
def test_a_failed_part_is_resent_alone_and_the_object_is_byte_identical(after):
    mem, faulty, r, _ = stack(Fault("part", 3, times=2, error=connection_reset, after=after))
    data = os.urandom(PART * 7 + 11)
    with r.open_write("big") as w:
        for i in range(0, len(data), 700):
            w.write(data[i : i + 700])
    assert hashlib.sha256(mem.get("big")).digest() == hashlib.sha256(data).digest()
    assert w.parts == 8
    assert faulty.calls["part"] == 8 + 2  # only the failed part went out again


def test_a_failed_commit_is_retried_and_the_object_appears_once():
    mem, faulty, r, _ = stack(Fault("commit", 1, error=connection_reset))
    data = os.urandom(PART * 3)
    with r.open_write("big") as w:
        w.write(data)
    assert mem.get("big") == data and faulty.calls["commit"] == 2


def test_a_permanent_part_failure_aborts_and_leaves_nothing():
    mem, faulty, r, sleeps = stack(Fault("part", 2, error=access_denied))
    with pytest.raises(AccessDenied):
        with r.open_write("big") as w:
            w.write(os.urandom(PART * 4))
    assert not mem.exists("big") and sleeps == []
    assert faulty.calls["part"] == 2


def test_if_absent_put_whose_response_was_lost_still_succeeds():
    mem, faulty, r, _ = stack(Fault("put", 1, after=True))
    r.put("lock", b"mine", if_absent=True)
    assert mem.get("lock") == b"mine"


def test_if_absent_put_still_refuses_someone_elses_object():
    mem, faulty, r, _ = stack(Fault("put", 1, after=False))
    mem.put("lock", b"theirs")
    with pytest.raises(ObjectExists):
        r.put("lock", b"mine", if_absent=True)
    assert mem.get("lock") == b"theirs"


def test_a_stream_that_fails_mid_read_resumes_at_the_next_byte():
    mem, faulty, r, _ = stack(Fault("read", 2, times=2, after=True))
    data = os.urandom(300_000)
    mem.put("k", data)
    with r.open_read("k", 10, 250_000) as s:
        got = s.read()
    assert got == data[10:250_010]
    assert faulty.calls["open_read"] >= 3


def test_a_listing_that_fails_mid_way_resumes_without_duplicates():
    mem, faulty, r, _ = stack(Fault("list_item", 5, times=2), page_size=3)
    keys = [f"k{i:03d}" for i in range(20)]
    for k in keys:
        mem.put(k, b"")
    assert [i.key for i in r.list("k")] == keys
    assert faulty.calls["list"] == 3


def test_faulty_storage_rejects_unknown_operations():
    with pytest.raises(ValueError):
        Fault("upload")
