"""task_seconds: a chunk task hands the rest of its range on at a chunk boundary once its time is up."""

from __future__ import annotations

import pytest

import firebackup.engine.backup.chunk as backup_mod
from firebackup.engine.sources import FirestoreSource
from firebackup.engine.backup import BackupRequest, finalize, plan, run_chunk

from backup_helpers import backup_records, direct_documents, doc, put_many

pytestmark = pytest.mark.integration


class _Clock:
    """A monotonic clock that moves one second each time it is read (no real waiting)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        self.now += 1.0
        return self.now


def test_a_task_out_of_time_hands_on_at_a_chunk_boundary_and_the_tasks_together_hold_every_document_once(
    conn, repo, monkeypatch
):
    put_many(conn, [doc(conn, f"col/d{i:03d}", v=i) for i in range(30)])
    clock = _Clock()
    monkeypatch.setattr(backup_mod, "time", clock)  # only chunk.py's clock: it reads time.monotonic alone
    # No chunk-count budget: only the (fake) time can make a task hand on.
    p = plan(BackupRequest(project=conn.project, chunk_docs=4, chunks_per_task=None, task_seconds=2.5),
             source=FirestoreSource(conn), repo=repo)
    entries, task, chunks_per_run = [], p.tasks[0], []
    while task is not None:
        result = run_chunk(p, task, source=FirestoreSource(conn), repo=repo)
        chunks_per_run.append(len(result.entries))
        entries.extend(result.entries)
        task = result.follow_up
    finalize(p, entries, repo=repo)

    # A run reads the clock to set its deadline (t+1 -> deadline t+3.5), then once at each chunk
    # boundary: t+2 and t+3 are in time, t+4 is not, so a run closes its third chunk and hands on.
    # 8 chunks: 3 + 3 + 2.
    assert chunks_per_run == [3, 3, 2]
    assert [e.chunk_id for e in entries] == [f"d00000-{s:05d}" for s in range(8)]  # ceil(30 / 4)
    assert all(e.records == 4 for e in entries[:-1]) and entries[-1].records == 2
    assert backup_records(repo, p.backup_id) == direct_documents(conn, p.read_time)  # in order, each once
