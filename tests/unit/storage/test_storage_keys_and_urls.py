"""Key validation and open_storage() URL parsing (no network, no client is created)."""

import subprocess
import sys

import pytest

from firebackup.errors import BadURL, UsageError
from firebackup.storage import MemoryStorage, RetryingStorage, check_key, check_prefix, open_storage
from firebackup.storage.file import FileStorage


@pytest.mark.parametrize(
    "key",
    ["", "/abs", "a/", "a//b", "./a", "a/../b", "..", "a\\b", "a\x00b", "a\nb", "x" * 1025, "é" * 513],
)
def test_bad_keys_are_rejected_with_one_line_usage_error(key):
    with pytest.raises(UsageError) as e:
        check_key(key)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("key", ["a", "backups/20260101T000000Z-0a1b2c3d/chunks/d00001-00002.fbc", "ünï/日本/🙂", "a.b/.c"])
def test_good_keys_are_accepted(key):
    assert check_key(key) == key


def test_prefixes_may_end_with_a_slash_but_not_escape():
    assert check_prefix("") == "" and check_prefix("a/") == "a/" and check_prefix("a/b") == "a/b"
    for bad in ("/", "../", "a//", "/a"):
        with pytest.raises(UsageError):
            check_prefix(bad)


def test_file_urls_open_a_retrying_file_storage(tmp_path):
    s = open_storage(f"file://{tmp_path}")
    assert isinstance(s, RetryingStorage) and isinstance(s.inner, FileStorage)
    assert s.url == f"file://{tmp_path}"
    raw = open_storage(f"file://{tmp_path}", retry=False)
    assert isinstance(raw, FileStorage)


def test_memory_urls_open_a_fresh_memory_storage():
    a, b = open_storage("memory://"), open_storage("memory://")
    assert isinstance(a, MemoryStorage) and a is not b


@pytest.mark.parametrize(
    "url, words",
    [
        ("ftp://host/x", "unsupported storage URL"),
        ("nothing-here", "unsupported storage URL"),
        ("", "empty storage URL"),
        ("s3://AKIAXXXX:secret@bucket/p", "contains credentials"),
        ("s3:///prefix", "has no bucket"),
        ("s3://bucket/p?token=abc", "unknown option"),
        ("s3://bucket/p?endpoint=ftp://x", "bad endpoint"),
        ("s3://bucket/p?endpoint=https://u:p@x", "bad endpoint"),
        ("s3://bucket/p?addressing=odd", "bad addressing"),
        ("spaces://bucket/p", "needs its region"),
        ("gs://bucket/a/../b", "bad prefix"),
        ("file://otherhost/x", "names host"),
    ],
)
def test_unusable_urls_raise_bad_url_in_one_line_without_secrets(url, words):
    with pytest.raises(BadURL) as e:
        open_storage(url)
    msg = str(e.value)
    assert words in msg and "\n" not in msg
    assert "secret" not in msg and "u:p" not in msg and "abc" not in msg


def test_importing_storage_creates_no_client_and_imports_no_sdk():
    code = "import sys, firebackup.storage; print('boto3' in sys.modules, 'google.cloud.storage' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
