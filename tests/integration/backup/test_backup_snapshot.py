"""One backup is one instant: writes made while it runs never appear; stale snapshots fail in one line."""

from __future__ import annotations

import datetime as dt

import pytest

from firebackup.engine.sources import FirestoreSource
from firebackup.engine.backup import BackupRequest, ChunkTask, finalize, plan, run_backup, run_chunk
from firebackup.errors import SnapshotTooOld
from firebackup.firestore.documents import parse_rfc3339
from firebackup.firestore.reader import DocRange, SnapshotReader

from backup_helpers import Document, backup_records, commit, direct_documents, doc, put_many, rel_names

pytestmark = pytest.mark.integration


def _run_all(p, conn, repo, between_chunks) -> list:
    """Run the plan's tasks and every follow-up, calling between_chunks() before each follow-up."""
    entries, pending = [], list(p.tasks)
    while pending:
        task = pending.pop(0)
        result = run_chunk(p, task, source=FirestoreSource(conn), repo=repo)
        entries.extend(result.entries)
        if result.follow_up is not None:
            between_chunks()
            pending.append(result.follow_up)
    return entries


def test_writes_made_while_a_backup_runs_are_absent_and_it_equals_the_state_at_read_time(conn, repo):
    put_many(conn, [doc(conn, f"items/i{i:03d}", v=i) for i in range(30)]
             + [doc(conn, f"items/i{i:03d}/notes/n", v=i) for i in range(0, 30, 5)])
    p = plan(BackupRequest(project=conn.project, chunk_docs=4, chunks_per_task=1), source=FirestoreSource(conn), repo=repo)
    at_read_time = direct_documents(conn, p.read_time)

    rounds = iter(range(1000))

    def write_something() -> None:
        # Updates, deletes and creates, ahead of and behind the reading position.
        r = next(rounds)
        commit(conn,
               put=[doc(conn, f"items/i{(r * 7) % 30:03d}", v=-1), doc(conn, f"items/new{r:03d}", v=r),
                    doc(conn, f"aaa/first{r}", v=r), doc(conn, f"items/i{r % 30:03d}/notes/late", v=r)],
               delete=[f"items/i{(r * 11 + 3) % 30:03d}", f"items/i{(r * 5) % 30:03d}/notes/n"])

    write_something()  # before the first chunk is read, after read_time was fixed
    entries = _run_all(p, conn, repo, write_something)
    finalize(p, entries, repo=repo)

    stored = backup_records(repo, p.backup_id)
    assert stored == at_read_time  # byte for byte: no update, delete or create leaked in
    assert len(stored) == 36
    now = direct_documents(conn, SnapshotReader.server_time(conn))
    assert now != at_read_time  # the writes did happen; the backup just does not see them


def test_a_read_time_beyond_version_retention_fails_with_snapshot_too_old_in_one_line(conn, repo):
    commit(conn, put=[doc(conn, "c/d")])
    p = plan(BackupRequest(project=conn.project), source=FirestoreSource(conn), repo=repo)
    p.read_time = p.read_time - dt.timedelta(days=8)  # past even point-in-time recovery's 7 days

    with pytest.raises(SnapshotTooOld) as info:
        run_chunk(p, ChunkTask(p.backup_id, 0, 0, DocRange()), source=FirestoreSource(conn), repo=repo)

    message = str(info.value)
    assert "\n" not in message
    assert "too old" in message and "read_time" in message
    assert not list(repo.storage.list(f"backups/{p.backup_id}/"))  # the aborted chunk left nothing


def test_the_planned_read_time_is_the_servers_and_every_chunk_reads_at_it(conn, repo):
    put_many(conn, [doc(conn, f"k/{i:02d}", v=i) for i in range(10)])
    before = commit(conn, put=[doc(conn, "k/00", v=100)])
    p = plan(BackupRequest(project=conn.project, chunk_docs=3, chunks_per_task=1), source=FirestoreSource(conn), repo=repo)
    after = commit(conn, put=[doc(conn, "k/00", v=200)])
    assert before <= p.read_time < after

    entries = _run_all(p, conn, repo, lambda: commit(conn, delete=["k/09"]))
    finalize(p, entries, repo=repo)

    records = backup_records(repo, p.backup_id)
    assert rel_names(conn, records) == [f"k/{i:02d}" for i in range(10)]
    assert Document.FromString(records[0]).fields["v"].integer_value == 100


def test_a_backup_that_fails_leaves_no_manifest_and_no_chunks(conn, repo):
    put_many(conn, [doc(conn, f"x/{i}") for i in range(5)])
    stale = SnapshotReader.server_time(conn) - dt.timedelta(days=8)

    with pytest.raises(SnapshotTooOld):
        run_backup(BackupRequest(project=conn.project), repo=repo, source=FirestoreSource(conn), read_time=stale)

    assert list(repo.storage.list("backups/")) == []


def test_writes_committed_mid_stream_through_run_backup_do_not_appear(conn, repo):
    # More documents than the reader buffers ahead (16 batches of 512), so the first progress
    # call happens while the server is still streaming.
    put_many(conn, [doc(conn, f"big/d{i:05d}", v=i) for i in range(20000)])
    calls = {"n": 0}

    def progress(documents: int = 0, bytes: int = 0) -> None:
        # Called while the RunQuery stream is open: change documents behind and ahead of it.
        calls["n"] += 1
        if calls["n"] <= 3:
            k = calls["n"]
            commit(conn, put=[doc(conn, f"big/d{19999 - k:05d}", v=-k), doc(conn, f"big/new{k}", v=k),
                              doc(conn, f"big/d{k:05d}", v=-k)],
                   delete=[f"big/d{15000 + k:05d}", f"big/d{10 + k:05d}"])

    result = run_backup(BackupRequest(project=conn.project, chunk_docs=5000), repo=repo, source=FirestoreSource(conn),
                        progress=progress)

    assert calls["n"] > 3
    at_read_time = direct_documents(conn, parse_rfc3339(result.read_time))
    assert backup_records(repo, result.backup_id) == at_read_time
    assert result.documents == 20000
    assert direct_documents(conn, SnapshotReader.server_time(conn)) != at_read_time
