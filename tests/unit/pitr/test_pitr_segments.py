"""PITR segments: captured changes written like a one-chunk backup under pitr/, read back with the key."""

from __future__ import annotations

import pytest

from firebackup.crypto.keys import LocalKey
from firebackup.engine.repository import Repository
from firebackup.errors import WrongKeyOrTampered
from firebackup.pitr.events import CREATE, DELETE, UPDATE
from firebackup.pitr.restore import Change
from firebackup.pitr.segments import SegmentRepository, list_segments, read_segment, stored_changes, write_segment
from firebackup.storage import MemoryStorage

KEK = LocalKey(b"s" * 32)
CHANGES = [Change("users/u1", 10, CREATE, b"\x0a\x01a"), Change("users/é/orders/o1", 20, UPDATE, b"\x0a\x01b"),
           Change("users/u1", 30, DELETE, None)]


def test_a_segment_reads_back_exactly_as_written_and_lists_with_its_source_and_range() -> None:
    storage = MemoryStorage()
    repo = SegmentRepository(storage)
    info = write_segment(repo, CHANGES, project="p", database="(default)", kek=KEK)
    assert (info.first, info.last, info.changes) == (10, 30, 3)
    read_info, changes = read_segment(repo, info.segment_id, KEK)
    assert read_info == info and list(changes) == CHANGES
    assert list_segments(repo, KEK, project="p") == [info] and list_segments(repo, KEK, project="q") == []
    assert all(o.key.startswith("pitr/") for o in storage.list()), "segments stay out of backups/"
    assert Repository(storage).list_backups() == [], "`firebackup list` does not show segments"


def test_a_segment_needs_the_key_it_was_written_with() -> None:
    repo = SegmentRepository(MemoryStorage())
    info = write_segment(repo, CHANGES, project="p", database="(default)", kek=KEK)
    with pytest.raises(WrongKeyOrTampered):
        read_segment(repo, info.segment_id, LocalKey(b"t" * 32))


def test_stored_changes_keep_only_the_window_and_skip_segments_outside_it() -> None:
    repo = SegmentRepository(MemoryStorage())
    early = write_segment(repo, CHANGES, project="p", database="(default)", kek=KEK)
    late = write_segment(repo, [Change("a/b", 100, CREATE, b"\x0a\x01c")], project="p", database="(default)", kek=KEK)
    segments = [early, late]
    assert [c.version for c in stored_changes(repo, segments, KEK, after=10, upto=30)] == [20, 30]
    assert [c.version for c in stored_changes(repo, segments, KEK, after=30, upto=200)] == [100]


def test_segments_under_different_keys_open_through_a_resolver_of_the_key_each_names() -> None:
    repo = SegmentRepository(MemoryStorage())
    other = LocalKey(b"o" * 32)
    write_segment(repo, CHANGES[:1], project="p", database="(default)", kek=KEK)
    write_segment(repo, CHANGES[1:], project="p", database="(default)", kek=other)
    keys = {KEK.key_id: KEK, other.key_id: other}
    segments = list_segments(repo, keys.__getitem__, project="p")
    assert list(stored_changes(repo, segments, keys.__getitem__, after=0, upto=100)) == CHANGES
