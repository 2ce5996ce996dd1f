"""The Storage contract, run against every backend for real: file, memory, S3 (moto), GCS (fake-gcs-server)."""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from firebackup.errors import AccessDenied, BucketNotFound, ObjectExists, ObjectNotFound, UsageError
from firebackup.storage import ObjectInfo, ObjectWriter, Storage

BIG = 12 << 20  # over 10 MB: must go through the multipart / resumable path
UNICODE_KEYS = ["ünï/日本語/ファイル", "emoji/🙂 space+plus%20.bin", "a/b c/d=e&f", "Ω/ß/é"]


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def write_stream(store, key: str, data: bytes, piece: int = 1 << 20, **kw) -> ObjectWriter:
    with store.open_write(key, **kw) as w:
        for i in range(0, len(data), piece):
            w.write(data[i : i + piece])
    return w


# --- basics ---------------------------------------------------------------------------------


def test_the_backend_satisfies_the_storage_protocol(store):
    assert isinstance(store, Storage)
    assert "@" not in store.url and "testing" not in store.url


def test_put_then_get_returns_the_same_bytes_and_put_replaces(store):
    info = store.put("dir/obj", b"first")
    assert isinstance(info, ObjectInfo) and info.key == "dir/obj" and info.size == 5
    assert store.get("dir/obj") == b"first"
    store.put("dir/obj", b"second, longer")
    assert store.get("dir/obj") == b"second, longer"
    assert store.stat("dir/obj").size == 14


def test_an_empty_object_round_trips_through_every_read_method(store):
    store.put("empty", b"")
    assert store.get("empty") == b""
    assert store.stat("empty").size == 0
    assert store.exists("empty")
    with store.open_read("empty") as s:
        assert s.read() == b""
    assert store.get_range("empty", 0, 0) == b""
    assert store.get_range("empty", 0, 10) == b""
    assert [i.key for i in store.list("empty")] == ["empty"]


def test_missing_objects_raise_object_not_found_from_every_read_method(store):
    store.put("present", b"x")  # the bucket exists; only the key is missing
    for call in (
        lambda: store.get("absent"),
        lambda: store.stat("absent"),
        lambda: store.open_read("absent").read(),
        lambda: store.get_range("absent", 0, 1),
        lambda: store.get_range("absent", 0, 0),
    ):
        with pytest.raises(ObjectNotFound) as e:
            call()
        assert "absent" in str(e.value) and "\n" not in str(e.value)
    assert store.exists("absent") is False


def test_deleting_removes_the_object_and_deleting_again_is_fine(store):
    store.put("gone", b"x")
    store.put("kept", b"y")
    store.delete("gone")
    store.delete("gone")
    assert not store.exists("gone")
    assert [i.key for i in store.list()] == ["kept"]


# --- ranges ---------------------------------------------------------------------------------


def test_ranged_reads_return_exactly_the_bytes_asked_for(store):
    data = bytes(range(256)) * 4
    store.put("r", data)
    assert store.get_range("r", 0, 10) == data[:10]
    assert store.get_range("r", 100, 50) == data[100:150]
    assert store.get_range("r", 500, 0) == b""
    assert store.get_range("r", 1000, 100) == data[1000:]  # overlaps the end: fewer bytes
    assert store.get_range("r", 1024, 10) == b""  # starts at the end
    assert store.get_range("r", 5000, 10) == b""  # starts past the end
    with store.open_read("r", 1000) as s:
        assert s.read() == data[1000:]
    with store.open_read("r", 3, 7) as s:
        assert s.read() == data[3:10]
    with store.open_read("r", 2000, 5) as s:
        assert s.read() == b""


def test_a_streamed_read_can_be_consumed_in_small_pieces(store):
    data = os.urandom(300_000)
    store.put("s", data)
    got = bytearray()
    with store.open_read("s", 7) as s:
        while piece := s.read(4096):
            got += piece
    assert bytes(got) == data[7:]


# --- keys -----------------------------------------------------------------------------------


def test_unicode_keys_round_trip_and_list_in_code_point_order(store):
    for i, k in enumerate(UNICODE_KEYS):
        store.put(k, str(i).encode())
    for i, k in enumerate(UNICODE_KEYS):
        assert store.get(k) == str(i).encode()
        assert store.stat(k).key == k
    assert [i.key for i in store.list()] == sorted(UNICODE_KEYS)
    assert [i.key for i in store.list("emoji/")] == ["emoji/🙂 space+plus%20.bin"]


@pytest.mark.parametrize("bad", ["../escape", "/abs", "a//b", "a/./b", "a/", "", "a\x00b"])
def test_bad_keys_are_rejected_by_every_method_before_any_request(store, bad):
    calls = [
        lambda: store.put(bad, b"x"),
        lambda: store.put(bad, b"x", if_absent=True),
        lambda: store.open_write(bad),
        lambda: store.get(bad),
        lambda: store.open_read(bad),
        lambda: store.get_range(bad, 0, 1),
        lambda: store.stat(bad),
        lambda: store.exists(bad),
        lambda: store.delete(bad),
    ]
    for call in calls:
        with pytest.raises(UsageError):
            call()
    with pytest.raises(UsageError):
        list(store.list("../"))
    assert list(store.list()) == []


# --- listing --------------------------------------------------------------------------------


def test_list_yields_only_keys_under_the_prefix_in_key_order_with_sizes(store):
    for k, v in [("b/2", b"22"), ("a/1", b"1"), ("b/1", b"1"), ("b10/x", b"x"), ("c", b"ccc")]:
        store.put(k, v)
    assert [(i.key, i.size) for i in store.list()] == [("a/1", 1), ("b/1", 1), ("b/2", 2), ("b10/x", 1), ("c", 3)]
    assert [i.key for i in store.list("b/")] == ["b/1", "b/2"]
    assert [i.key for i in store.list("b")] == ["b/1", "b/2", "b10/x"]
    assert list(store.list("zzz")) == []


def test_list_resumes_after_a_given_key(store):
    keys = [f"k/{i:02d}" for i in range(10)]
    for k in keys:
        store.put(k, b"")
    assert [i.key for i in store.list("k/", start_after="k/04")] == keys[5:]
    assert [i.key for i in store.list("k/", start_after="a")] == keys
    assert list(store.list("k/", start_after="k/09")) == []


def test_list_pages_through_many_keys_with_a_small_page_size(backend):
    store = backend.open(page_size=3)
    keys = [f"p/{i:03d}" for i in range(25)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: store.put(k, k.encode()), keys))
    assert [i.key for i in store.list("p/")] == keys
    assert [i.key for i in store.list("p/", start_after="p/010")] == keys[11:]


def test_s3_lists_more_than_one_thousand_keys_across_pages(s3_backend):
    store = s3_backend.open()
    keys = [f"many/{i:05d}" for i in range(1005)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: store.put(k, b""), keys))
    assert [i.key for i in store.list("many/")] == keys


def test_two_prefixes_in_one_bucket_do_not_see_each_other(backend):
    tag = secrets.token_hex(3)
    one, two = backend.open(f"iso-{tag}"), backend.open(f"iso-{tag}-2")
    one.put("k", b"one")
    two.put("k", b"two")
    two.put("only-two", b"2")
    assert one.get("k") == b"one" and two.get("k") == b"two"
    assert [i.key for i in one.list()] == ["k"]
    assert not one.exists("only-two")
    one.delete("k")
    assert two.get("k") == b"two"


# --- create-if-absent -----------------------------------------------------------------------


def test_put_if_absent_creates_once_and_then_refuses_without_changing_the_object(store):
    store.put("lock", b"mine", if_absent=True)
    with pytest.raises(ObjectExists) as e:
        store.put("lock", b"theirs", if_absent=True)
    assert "lock" in str(e.value)
    assert store.get("lock") == b"mine"


def test_racing_if_absent_puts_let_exactly_one_writer_win(store):
    wins, losses = [], []
    barrier = threading.Barrier(6)

    def racer(i: int) -> None:
        barrier.wait()
        try:
            store.put("race", f"writer-{i}".encode(), if_absent=True)
            wins.append(i)
        except ObjectExists:
            losses.append(i)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(losses) == 5
    assert store.get("race") == f"writer-{wins[0]}".encode()


def test_a_streamed_if_absent_upload_loses_to_an_object_that_landed_first(store, backend):
    data = os.urandom(backend.part_size * 2 + 5)
    late = store.open_write("manifest", if_absent=True)
    late.write(data)
    store.put("manifest", b"first", if_absent=True)
    with pytest.raises(ObjectExists):
        late.close()
    late.abort()
    assert store.get("manifest") == b"first"


# --- streaming writes ------------------------------------------------------------------------


def test_a_small_streamed_object_goes_up_in_one_request(store):
    w = write_stream(store, "small", b"abc" * 1000, piece=100)
    assert w.parts == 0
    assert store.get("small") == b"abc" * 1000


def test_an_object_over_10_mb_goes_through_the_multipart_path_intact(store, backend):
    data = os.urandom(BIG)
    w = write_stream(store, "big/object", data, piece=(1 << 20) + 17)
    assert w.parts == -(-BIG // backend.part_size) and w.parts >= 2  # the multipart path was taken
    assert store.stat("big/object").size == BIG
    assert sha(store.get("big/object")) == sha(data)
    edge = backend.part_size
    assert store.get_range("big/object", edge - 10, 20) == data[edge - 10 : edge + 10]
    with store.open_read("big/object", 5) as s:
        assert sha(s.read()) == sha(data[5:])


def test_a_streamed_object_is_invisible_until_close(store, backend):
    w = store.open_write("pending")
    w.write(os.urandom(backend.part_size * 2 + 1))
    assert w.parts >= 2
    assert not store.exists("pending") and list(store.list()) == []
    info = w.close()
    assert info.size == backend.part_size * 2 + 1 and store.exists("pending")
    assert w.close() == info  # closing again is harmless


def test_an_aborted_upload_leaves_nothing_behind(store, backend):
    with pytest.raises(RuntimeError):
        with store.open_write("aborted") as w:
            w.write(os.urandom(backend.part_size * 2 + 1))
            assert w.parts >= 2
            raise RuntimeError("caller failed mid-upload")
    w.abort()  # aborting twice is harmless
    assert not store.exists("aborted")
    assert list(store.list()) == []
    if backend.name == "s3":
        ups = backend.raw["client"].list_multipart_uploads(Bucket=backend.raw["bucket"], Prefix=store.prefix)
        assert ups.get("Uploads", []) == []


def test_writing_an_exact_multiple_of_the_part_size_works(store, backend):
    data = os.urandom(backend.part_size * 2)
    w = write_stream(store, "exact", data, piece=backend.part_size)
    assert store.get("exact") == data and w.parts == 2


# --- missing bucket -------------------------------------------------------------------------


def test_a_missing_bucket_is_bucket_not_found_from_every_method(remote_backend, monkeypatch):
    from firebackup.storage import open_storage

    scheme = "s3" if remote_backend.name == "s3" else "gs"
    opts = {"project": "test"} if scheme == "gs" else {}
    store = open_storage(f"{scheme}://missing-{secrets.token_hex(4)}/p", retry=False, **opts)
    calls = [
        lambda: store.put("k", b"x"),
        lambda: store.get("k"),
        lambda: store.stat("k"),
        lambda: store.exists("k"),
        lambda: store.get_range("k", 0, 1),
        lambda: list(store.list()),
        lambda: store.delete("k"),
        lambda: write_stream(store, "k", os.urandom(remote_backend.part_size * 2 if scheme == "gs" else 6 << 20)),
    ]
    for call in calls:
        with pytest.raises(BucketNotFound) as e:
            call()
        assert "missing-" in str(e.value) and "\n" not in str(e.value)


def test_an_endpoint_in_the_url_reaches_an_s3_compatible_server_without_aws_endpoint_url(s3_backend, s3_server, monkeypatch):
    from firebackup.storage import open_storage

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    endpoint = s3_server.env["AWS_ENDPOINT_URL"]
    store = open_storage(f"s3://{s3_backend.raw['bucket']}/ep-{secrets.token_hex(3)}?endpoint={endpoint}&addressing=path")
    store.put("k", b"via the URL's endpoint")
    assert store.get("k") == b"via the URL's endpoint"
    assert "endpoint=" in store.url and "testing" not in store.url


def test_bad_s3_credentials_are_access_denied_without_leaking_the_key(s3_backend, s3_server, monkeypatch):
    """moto checks credentials only when asked to (/moto-api/reset-auth); fake-gcs-server never does."""
    import json
    import urllib.request

    from firebackup.storage import open_storage

    def set_auth(count: str) -> str:
        req = urllib.request.Request(f"{s3_server.env['AWS_ENDPOINT_URL']}/moto-api/reset-auth", data=count.encode(), method="POST",
                                     headers={"Content-Type": "text/plain"})  # moto reads the raw body
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIABADKEY0000000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    store = open_storage(f"s3://{s3_backend.raw['bucket']}/creds", retry=False)
    previous = set_auth("0")
    try:
        for call in (lambda: store.put("k", b"x"), lambda: store.get("k"), lambda: list(store.list())):
            with pytest.raises(AccessDenied) as e:
                call()
            assert "not-the-secret" not in str(e.value) and "AKIABADKEY" not in str(e.value)
    finally:
        set_auth(previous)
    assert s3_backend.open().put("after", b"auth is off again").size == 17
