"""RetryingStorage over FaultyStorage over each real backend: transient faults are retried to
success with byte-identical objects; permanent ones surface once, without retries."""

from __future__ import annotations

import hashlib
import os
import secrets

import pytest

from firebackup.errors import AccessDenied, BucketNotFound, TransientStorageError
from firebackup.storage import open_storage
from firebackup.storage.faulty import Fault, FaultyStorage, access_denied, bucket_missing, connection_reset
from firebackup.retry import RetryPolicy
from firebackup.storage.retry import RetryingStorage

BIG = 12 << 20


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def wrap(inner, *faults, attempts=5):
    faulty = FaultyStorage(inner, list(faults))
    sleeps: list[float] = []
    return faulty, RetryingStorage(
        faulty, RetryPolicy(attempts=attempts, base_delay=0.01, max_delay=0.1, sleep=sleeps.append)
    ), sleeps


def upload(store, key, data, piece=(1 << 20) + 3):
    with store.open_write(key) as w:
        for i in range(0, len(data), piece):
            w.write(data[i : i + piece])
    return w


def no_leftover_uploads(backend, inner) -> bool:
    if backend.name != "s3":
        return True
    r = backend.raw["client"].list_multipart_uploads(Bucket=backend.raw["bucket"], Prefix=inner.prefix + "/")
    return r.get("Uploads", []) == []


@pytest.mark.parametrize("after", [False, True], ids=["reset-before-the-part-arrived", "reset-after-the-part-was-stored"])
def test_a_connection_reset_mid_upload_is_retried_to_a_byte_identical_object(backend, after):
    inner = backend.open()
    faulty, store, sleeps = wrap(inner, Fault("part", 2, times=2, error=connection_reset, after=after))
    data = os.urandom(BIG)
    w = upload(store, "big", data)
    parts = -(-BIG // backend.part_size)
    assert w.parts == parts
    assert faulty.calls["part"] == parts + 2  # only the failed part was sent again, never the stream
    assert len(sleeps) == 2
    assert sha(inner.get("big")) == sha(data)
    assert no_leftover_uploads(backend, inner)


def test_a_lost_response_to_the_final_commit_does_not_corrupt_or_duplicate(backend):
    inner = backend.open()
    faulty, store, _ = wrap(inner, Fault("commit", 1, error=connection_reset, after=True))
    data = os.urandom(backend.part_size * 2 + 1234)
    upload(store, "big", data)
    assert faulty.calls["commit"] == 2
    assert sha(inner.get("big")) == sha(data)
    assert [i.key for i in inner.list()] == ["big"]


def test_503s_on_small_puts_and_reads_are_retried_to_success(backend):
    inner = backend.open()
    faulty, store, sleeps = wrap(inner, Fault("put", 1, times=2), Fault("get", 1), Fault("stat", 1), Fault("list", 1))
    store.put("k", b"payload")
    assert store.get("k") == b"payload"
    assert store.stat("k").size == 7
    assert [i.key for i in store.list()] == ["k"]
    assert faulty.calls["put"] == 3 and len(sleeps) == 5


def test_a_stream_that_breaks_mid_read_resumes_where_it_stopped(backend):
    inner = backend.open()
    data = os.urandom(3 << 20)
    inner.put("r", data)
    faulty, store, _ = wrap(inner, Fault("read", 3, times=2, error=connection_reset, after=True))
    with store.open_read("r", 11) as s:
        got = s.read()
    assert sha(got) == sha(data[11:])
    assert faulty.calls["open_read"] == 3


def test_a_listing_that_breaks_mid_way_resumes_without_gaps_or_duplicates(backend):
    inner = backend.open(page_size=4)
    keys = [f"k{i:02d}" for i in range(15)]
    for k in keys:
        inner.put(k, b"")
    faulty, store, _ = wrap(inner, Fault("list_item", 6), Fault("list_item", 11))
    assert [i.key for i in store.list()] == keys


def test_a_403_mid_upload_surfaces_once_without_retries_and_leaves_nothing(backend):
    inner = backend.open()
    faulty, store, sleeps = wrap(inner, Fault("part", 2, times=99, error=access_denied))
    with pytest.raises(AccessDenied) as e:
        upload(store, "denied", os.urandom(backend.part_size * 3))
    assert "\n" not in str(e.value)
    assert faulty.calls["part"] == 2 and sleeps == []
    assert not inner.exists("denied") and list(inner.list()) == []
    assert no_leftover_uploads(backend, inner)


def test_a_missing_bucket_surfaces_once_without_retries(backend):
    inner = backend.open()
    faulty, store, sleeps = wrap(inner, Fault("put", 1, times=99, error=bucket_missing))
    with pytest.raises(BucketNotFound):
        store.put("k", b"x")
    assert faulty.calls["put"] == 1 and sleeps == []


def test_transient_failures_beyond_the_budget_give_up_and_leave_nothing(backend):
    inner = backend.open()
    faulty, store, sleeps = wrap(inner, Fault("part", 2, times=99), attempts=3)
    with pytest.raises(TransientStorageError, match="gave up after 3 attempts"):
        upload(store, "never", os.urandom(backend.part_size * 3))
    assert faulty.calls["part"] == 1 + 3 and len(sleeps) == 2
    assert not inner.exists("never")
    assert no_leftover_uploads(backend, inner)


def test_a_real_missing_bucket_is_not_retried(remote_backend):
    scheme = "s3" if remote_backend.name == "s3" else "gs"
    opts = {"project": "test"} if scheme == "gs" else {}
    sleeps: list[float] = []
    store = open_storage(f"{scheme}://missing-{secrets.token_hex(4)}/p", attempts=5, **opts)
    store._sleep = sleeps.append  # keep the real backoff out of the test run
    with pytest.raises(BucketNotFound):
        store.put("k", b"x")
    assert sleeps == []


def test_s3_connection_reset_inside_botocore_is_translated_and_retried(s3_backend):
    """The fault is raised by the HTTP layer itself, as a real reset would be."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ConnectionClosedError

    client = boto3.client("s3", config=Config(retries={"total_max_attempts": 1}))
    seen = {"UploadPart": 0, "CompleteMultipartUpload": 0}

    def reset(event_name=None, **kwargs):
        op = event_name.rsplit(".", 1)[-1]
        seen[op] += 1
        if seen[op] == 2 and op == "UploadPart":
            raise ConnectionClosedError(endpoint_url="reset mid-part (test)")

    def lose_response(event_name=None, **kwargs):
        seen["CompleteMultipartUpload"] += 1
        if seen["CompleteMultipartUpload"] == 1:
            raise ConnectionClosedError(endpoint_url="response lost (test)")

    client.meta.events.register("before-send.s3.UploadPart", reset)
    client.meta.events.register("after-call.s3.CompleteMultipartUpload", lose_response)
    inner = s3_backend.open(client=client)
    store = RetryingStorage(inner, RetryPolicy(base_delay=0.01, max_delay=0.05, sleep=lambda s: None))
    data = os.urandom(BIG)
    w = upload(store, "reset", data)
    assert w.parts == 3 and seen["UploadPart"] == 4 and seen["CompleteMultipartUpload"] == 2
    assert sha(inner.get("reset")) == sha(data)
    assert no_leftover_uploads(s3_backend, inner)


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_an_unreachable_endpoint_is_transient_and_gives_up_without_vendor_errors(scheme, monkeypatch):
    from infra.local.stack import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", dead)
    opts = {"project": "test"} if scheme == "gs" else {}
    inner = open_storage(f"{scheme}://bkt/p", retry=False, **opts)
    sleeps: list[float] = []
    store = RetryingStorage(inner, RetryPolicy(attempts=3, sleep=sleeps.append))
    for call in (lambda: store.put("k", b"x"), lambda: store.get("k"), lambda: list(store.list())):
        with pytest.raises(TransientStorageError, match="gave up after 3 attempts"):
            call()
    assert len(sleeps) == 6



def _threads_started_by_put_get_list(store, monkeypatch) -> list[str]:
    import threading

    started: list[str] = []
    real_start = threading.Thread.start

    def start(self):
        started.append(getattr(getattr(self, "_target", None), "__name__", "?"))
        return real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    store.put("k", b"x")
    assert store.get("k") == b"x"
    assert list(store.list(""))
    monkeypatch.setattr(threading.Thread, "start", real_start)
    return started


def test_the_gcs_client_environment_stops_background_bucket_lookups(gcs_backend, monkeypatch):
    # google-cloud-storage starts a thread per bucket that GETs the bucket (needs
    # storage.buckets.get) and retries for minutes, unless its environment switch is set:
    # GCS_CLIENT_ENVIRONMENT, which the composition root applies at start-up.
    from firebackup.storage.gcs import GCS_CLIENT_ENVIRONMENT

    for name in GCS_CLIENT_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    assert "_fetch_background" in _threads_started_by_put_get_list(gcs_backend.open(), monkeypatch)
    for name, value in GCS_CLIENT_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    assert "_fetch_background" not in _threads_started_by_put_get_list(gcs_backend.open(), monkeypatch)
