"""Repository: layout, chunk streaming, manifests last, listing, deleting (MemoryStorage, no I/O)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import pytest

from firebackup.crypto.keys import DataKey, LocalKey
from firebackup.engine.repository import BackupSummary, Repository
from firebackup.errors import BackupNotFound, BadKey, UsageError, WrongKeyOrTampered
from firebackup.format.manifest import Manifest
from firebackup.storage.memory import MemoryStorage


def make_manifest(backup_id: str, entries, *, encrypted: bool, documents: int | None = None) -> Manifest:
    return Manifest(
        backup_id=backup_id,
        created_at="2026-11-28T02:00:00Z",
        read_time="2026-11-28T02:00:00Z",
        source={"project": "p", "database": "(default)"},
        collections=["users"],
        documents=sum(e.records for e in entries if e.kind == "docs") if documents is None else documents,
        auth_users=sum(e.records for e in entries if e.kind == "auth"),
        compression="zstd",
        level=None,
        encrypted=encrypted,
        chunks=list(entries),
    )


def records(n: int, tag: str = "r") -> list[bytes]:
    return [f"{tag}{i:06d}".encode() * (1 + i % 3) for i in range(n)]


@pytest.fixture
def repo() -> Repository:
    return Repository(MemoryStorage())


@pytest.fixture
def kek() -> LocalKey:
    return LocalKey.from_text(LocalKey.generate_text())


def write_backup(repo: Repository, kek=None, *, chunks: int = 2, per_chunk: int = 50) -> tuple[str, DataKey | None, list]:
    backup_id = repo.new_backup_id()
    dek = DataKey.generate() if kek is not None else None
    entries = [
        repo.write_chunk(backup_id, f"d00000-{i:05d}", records(per_chunk, f"c{i}-"), kind="docs", data_key=dek)
        for i in range(chunks)
    ]
    repo.write_manifest(make_manifest(backup_id, entries, encrypted=dek is not None), dek, kek)
    return backup_id, dek, entries


def test_new_backup_id_is_utc_time_plus_random_hex_and_sorts_by_time():
    early = Repository.new_backup_id(dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc))
    late = Repository.new_backup_id(dt.datetime(2026, 1, 2, 3, 4, 6, tzinfo=dt.timezone.utc))
    assert re.fullmatch(r"20260102T030405Z-[0-9a-f]{8}", early)
    assert early < late
    assert Repository.new_backup_id() != Repository.new_backup_id()


def test_keys_follow_the_documented_layout():
    bid = "20260102T030405Z-0123abcd"
    assert Repository.chunk_key(bid, "d00001-00002") == f"backups/{bid}/chunks/d00001-00002.fbc"
    assert Repository.manifest_key(bid) == f"backups/{bid}/manifest.fbm"


@pytest.mark.parametrize("bad", ["../etc", "20260102T030405Z", "x/y", "", "20260102T030405Z-0123ABCD"])
def test_a_malformed_backup_id_is_a_usage_error_not_a_storage_key(bad):
    with pytest.raises(UsageError):
        Repository.manifest_key(bad)


@pytest.mark.parametrize("bad", ["", "a/b", "..", "a b", "x" * 65])
def test_a_malformed_chunk_id_is_rejected(bad):
    with pytest.raises(UsageError):
        Repository.chunk_key("20260102T030405Z-0123abcd", bad)


@pytest.mark.parametrize("encrypted", [False, True])
def test_a_chunk_streams_into_storage_and_its_entry_describes_the_stored_bytes(repo, encrypted):
    bid = repo.new_backup_id()
    dek = DataKey.generate() if encrypted else None
    upload = repo.open_chunk_writer(bid, "d00003-00007", kind="docs", data_key=dek)
    with upload as writer:
        for r in records(300):
            writer.add(r)
    entry = upload.entry
    stored = repo.storage.get(entry.key)
    assert entry.chunk_id == "d00003-00007"
    assert entry.kind == "docs"
    assert entry.key == f"backups/{bid}/chunks/d00003-00007.fbc"
    assert entry.records == 300
    assert entry.bytes_raw == sum(len(r) for r in records(300))
    assert entry.bytes_stored == len(stored)
    assert entry.sha256 == hashlib.sha256(stored).hexdigest()
    assert list(repo.iter_records(bid, entry, dek)) == records(300)


def test_rewriting_the_same_chunk_id_replaces_the_same_key(repo):
    bid = repo.new_backup_id()
    first = repo.write_chunk(bid, "d00000-00000", records(10, "old"))
    second = repo.write_chunk(bid, "d00000-00000", records(20, "new"))
    assert first.key == second.key
    assert [i.key for i in repo.storage.list(f"backups/{bid}/")] == [first.key]
    assert list(repo.iter_records(bid, second, None)) == records(20, "new")


def test_an_exception_inside_the_chunk_block_leaves_no_object(repo):
    bid = repo.new_backup_id()
    upload = repo.open_chunk_writer(bid, "a00000", kind="auth")
    with pytest.raises(RuntimeError):
        with upload as writer:
            writer.add(b'{"localId": "u1"}')
            raise RuntimeError("task died")
    assert upload.entry is None
    assert list(repo.storage.list("backups/")) == []


@pytest.mark.parametrize("encrypted", [False, True])
def test_manifest_round_trips_and_records_stream_back(repo, kek, encrypted):
    backup_id, dek, entries = write_backup(repo, kek if encrypted else None)
    manifest, data_key = repo.read_manifest(backup_id, kek if encrypted else None)
    assert manifest.backup_id == backup_id
    assert [c.chunk_id for c in manifest.chunks] == ["d00000-00000", "d00000-00001"]
    assert manifest.documents == 100
    assert (data_key is not None) is encrypted
    got = [r for e in manifest.chunks for r in repo.iter_records(backup_id, e, data_key)]
    assert got == records(50, "c0-") + records(50, "c1-")


def test_reading_an_encrypted_manifest_with_the_wrong_key_says_wrong_key(repo, kek):
    backup_id, _, _ = write_backup(repo, kek)
    other = LocalKey.from_text(LocalKey.generate_text())
    with pytest.raises(WrongKeyOrTampered, match="wrong key, or the data was altered"):
        repo.read_manifest(backup_id, other)


def test_reading_an_encrypted_manifest_without_a_key_asks_for_one(repo, kek):
    backup_id, _, _ = write_backup(repo, kek)
    with pytest.raises(BadKey, match="--key-file"):
        repo.read_manifest(backup_id, None)


def test_an_unknown_backup_id_is_backup_not_found_naming_the_location(repo):
    with pytest.raises(BackupNotFound, match="20260102T030405Z-0123abcd"):
        repo.read_manifest("20260102T030405Z-0123abcd", None)


def test_a_backup_without_a_manifest_is_not_listed_and_reads_as_incomplete(repo, kek):
    complete, _, _ = write_backup(repo, kek)
    partial = repo.new_backup_id()
    repo.write_chunk(partial, "d00000-00000", records(5))
    listing = repo.scan()
    assert [b.backup_id for b in listing.backups] == [complete]
    assert listing.incomplete == [partial]
    with pytest.raises(BackupNotFound, match="incomplete"):
        repo.read_manifest(partial, None)


def test_list_reads_public_summaries_without_a_key_sorted_by_id(repo, kek):
    ids = [write_backup(repo, kek if i % 2 else None, chunks=1, per_chunk=i + 1)[0] for i in range(3)]
    listed = repo.list_backups()
    assert [b.backup_id for b in listed] == sorted(ids)
    by_id = {b.backup_id: b for b in listed}
    for i, bid in enumerate(ids):
        assert isinstance(by_id[bid], BackupSummary)
        assert by_id[bid].documents == i + 1
        assert by_id[bid].encrypted is bool(i % 2)
        assert by_id[bid].bytes_stored > 0
        assert by_id[bid].read_time == "2026-11-28T02:00:00Z"
        assert by_id[bid].problem is None


def test_an_unreadable_manifest_is_reported_as_a_problem_not_a_crash(repo, kek):
    good, _, _ = write_backup(repo, kek)
    bad, _, _ = write_backup(repo, None)
    repo.storage.put(Repository.manifest_key(bad), b"this is not a manifest")
    listing = repo.scan()
    assert [b.backup_id for b in listing.backups if b.problem is None] == [good]
    assert len(listing.problems) == 1
    assert bad in listing.problems[0] and "\n" not in listing.problems[0]
    assert [b.backup_id for b in repo.list_backups() if b.problem] == [bad]


def test_objects_that_are_not_backups_are_ignored_by_list(repo, kek):
    bid, _, _ = write_backup(repo, kek)
    repo.storage.put("backups/notes.txt", b"hello")
    repo.storage.put("backups/some-folder/manifest.fbm", b"x")
    repo.storage.put("elsewhere/file", b"x")
    assert [b.backup_id for b in repo.list_backups()] == [bid]


class RecordingStorage(MemoryStorage):
    def __init__(self):
        super().__init__()
        self.deleted: list[str] = []

    def delete(self, key: str) -> None:
        self.deleted.append(key)
        super().delete(key)


def test_delete_backup_removes_the_manifest_first_then_every_chunk():
    repo = Repository(RecordingStorage())
    keep, _, _ = write_backup(repo)
    gone, _, entries = write_backup(repo, chunks=3)
    assert repo.delete_backup(gone) == 4
    assert repo.storage.deleted[0] == Repository.manifest_key(gone)
    assert sorted(repo.storage.deleted[1:]) == sorted(e.key for e in entries)
    assert [b.backup_id for b in repo.list_backups()] == [keep]
    assert list(repo.storage.list(f"backups/{gone}/")) == []


def test_deleting_an_unknown_backup_is_backup_not_found(repo):
    with pytest.raises(BackupNotFound):
        repo.delete_backup("20260102T030405Z-0123abcd")


def test_a_manifest_copied_under_another_backup_id_is_refused(repo):
    a, _, _ = write_backup(repo)
    b, _, _ = write_backup(repo)
    repo.storage.put(Repository.manifest_key(b), repo.storage.get(Repository.manifest_key(a)))
    with pytest.raises((WrongKeyOrTampered, BadKey, UsageError)):
        repo.read_manifest(b, None)


def test_the_manifest_is_not_written_while_a_chunk_it_names_is_missing(repo):
    from firebackup.errors import OperationFailed

    bid = repo.new_backup_id()
    entries = [repo.write_chunk(bid, f"d00000-{i:05d}", records(5)) for i in range(2)]
    repo.storage.delete(entries[1].key)
    with pytest.raises(OperationFailed, match="d00000-00001"):
        repo.write_manifest(make_manifest(bid, entries, encrypted=False), None, None)
    assert not repo.storage.exists(Repository.manifest_key(bid))
    assert repo.list_backups() == []


class CountingStorage(MemoryStorage):
    def __init__(self):
        super().__init__()
        self.listed = 0

    def list(self, prefix: str = "", *, start_after=None):
        for info in super().list(prefix, start_after=start_after):
            self.listed += 1
            yield info


def test_list_skips_past_the_chunks_of_big_backups_instead_of_reading_every_key():
    repo = Repository(CountingStorage())
    ids = []
    for b in range(3):
        bid = repo.new_backup_id(dt.datetime(2026, 1, 1, 0, 0, b, tzinfo=dt.timezone.utc))
        for i in range(500):
            repo.storage.put(Repository.chunk_key(bid, f"d00000-{i:05d}"), b"x")
        if b != 1:
            repo.write_manifest(make_manifest(bid, [], encrypted=False), None, None)
        ids.append(bid)
    repo.storage.listed = 0
    complete, incomplete = repo.backup_ids()
    assert complete == [ids[0], ids[2]]
    assert incomplete == [ids[1]]
    assert repo.storage.listed < 3 * 250
