"""File-backend specifics the contract suite cannot see: temp files, symlinks, folders."""

import os
import threading

import pytest

from firebackup.errors import ObjectExists, StorageError, UsageError
from firebackup.storage import MemoryStorage
from firebackup.storage.file import TMP_MARK, FileStorage


def test_an_aborted_upload_leaves_no_file_and_no_temp_file(tmp_path):
    s = FileStorage(str(tmp_path), part_size=8)
    with pytest.raises(RuntimeError):
        with s.open_write("a/b") as w:
            w.write(b"x" * 100)
            raise RuntimeError("boom")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_writer_in_progress_is_invisible_to_readers_and_listings(tmp_path):
    s = FileStorage(str(tmp_path), part_size=8)
    w = s.open_write("k")
    w.write(b"y" * 100)
    assert not s.exists("k") and list(s.list()) == []
    assert any(p.name.startswith(TMP_MARK) for p in tmp_path.iterdir())
    w.close()
    assert s.get("k") == b"y" * 100 and [i.key for i in s.list()] == ["k"]


def test_keys_that_name_temp_files_are_refused(tmp_path):
    with pytest.raises(UsageError):
        FileStorage(str(tmp_path)).put(f"a/{TMP_MARK}1", b"")


def test_a_symlink_leading_outside_the_root_is_refused(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    (outside / "secret").write_bytes(b"s")
    os.symlink(outside, root / "link")
    s = FileStorage(str(root))
    with pytest.raises(UsageError, match="outside"):
        s.get("link/secret")
    with pytest.raises(UsageError):
        s.put("link/new", b"x")
    assert not (outside / "new").exists()


def test_a_key_under_an_existing_object_is_a_storage_error(tmp_path):
    s = FileStorage(str(tmp_path))
    s.put("a", b"1")
    with pytest.raises(StorageError, match="parent of the key is an object"):
        s.put("a/b", b"2")


def test_deleting_the_last_object_in_a_folder_removes_the_empty_folders(tmp_path):
    s = FileStorage(str(tmp_path))
    s.put("x/y/z", b"1")
    s.delete("x/y/z")
    assert list(tmp_path.iterdir()) == []


def test_listing_walks_folders_in_global_key_order(tmp_path):
    s = FileStorage(str(tmp_path))
    keys = ["a.b", "a/b", "a/b.c", "a/b/c", "a0", "a-", "b"]
    for k in ["a.b", "a/b.c", "a/b/c", "a0", "a-", "b"]:
        s.put(k, b"")
    want = sorted(k for k in keys if k != "a/b")
    assert [i.key for i in s.list()] == want
    assert [i.key for i in s.list("a/b")] == ["a/b.c", "a/b/c"]
    assert [i.key for i in s.list("", start_after="a/b.c")] == ["a/b/c", "a0", "b"]


@pytest.mark.parametrize("make", [lambda p: FileStorage(str(p)), lambda p: MemoryStorage()], ids=["file", "memory"])
def test_concurrent_if_absent_puts_let_exactly_one_writer_win(tmp_path, make):
    s = make(tmp_path)
    wins, losses = [], []
    barrier = threading.Barrier(8)

    def racer(i):
        barrier.wait()
        try:
            s.put("lock", str(i).encode(), if_absent=True)
            wins.append(i)
        except ObjectExists:
            losses.append(i)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(wins) == 1 and len(losses) == 7
    assert s.get("lock") == str(wins[0]).encode()


def test_create_if_absent_still_works_where_hard_links_are_not_supported(tmp_path, monkeypatch):
    import errno

    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    s = FileStorage(str(tmp_path))
    s.put("lock", b"first", if_absent=True)
    with pytest.raises(ObjectExists):
        s.put("lock", b"second", if_absent=True)
    assert s.get("lock") == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["lock"]
