"""Chunk tasks: continuation splits a range into ordered chunks; a re-run rewrites the same chunk."""

from __future__ import annotations

import json

import pytest

from firebackup.crypto.keys import LocalKey
from firebackup.engine.sources import FirestoreSource
from firebackup.engine.backup import BackupPlan, BackupRequest, ChunkTask, finalize, plan, run_backup, run_chunk
from firebackup.errors import SourceUnavailable
from firebackup.firestore.grpc import open_firestore

from backup_helpers import backup_records, direct_documents, rel_names, seed_collection

pytestmark = pytest.mark.integration

CLI_KEYS = ["backup_id", "read_time", "documents", "collections", "auth_users", "chunks",
            "bytes_raw", "bytes_stored", "compression", "encrypted", "duration_s"]


def test_continuation_splits_a_collection_into_ordered_chunks_each_task_handing_on_its_cursor(conn, repo):
    paths = seed_collection(conn, 20)  # 25 documents
    p = plan(BackupRequest(project=conn.project, chunk_docs=4, chunks_per_task=1), source=FirestoreSource(conn), repo=repo)
    assert len(p.tasks) == 1

    entries, task, seqs = [], p.tasks[0], []
    while task is not None:
        handed_on = []
        result = run_chunk(p, task, source=FirestoreSource(conn), repo=repo, on_follow_up=handed_on.append)
        assert handed_on == ([result.follow_up] if result.follow_up else [])
        entries.extend(result.entries)
        seqs.append(task.seq)
        task = result.follow_up
    finalize(p, entries, repo=repo)

    assert seqs == list(range(7))  # ceil(25 / 4) tasks, one chunk each
    assert [e.chunk_id for e in entries] == [f"d00000-{s:05d}" for s in range(7)]
    assert [e.records for e in entries] == [4, 4, 4, 4, 4, 4, 1]
    records = backup_records(repo, p.backup_id)
    assert sorted(rel_names(conn, records)) == paths
    assert records == direct_documents(conn, p.read_time)  # in order, each exactly once


def test_one_task_without_a_budget_cuts_the_same_chunks_as_one_task_per_chunk(conn, repo):
    seed_collection(conn, 20)
    per_chunk = plan(BackupRequest(project=conn.project, chunk_docs=4, chunks_per_task=1), source=FirestoreSource(conn), repo=repo)
    whole = plan(BackupRequest(project=conn.project, chunk_docs=4), source=FirestoreSource(conn), repo=repo)
    whole.read_time = per_chunk.read_time

    one = run_chunk(whole, whole.tasks[0], source=FirestoreSource(conn), repo=repo)
    assert one.follow_up is None
    task, split_entries = per_chunk.tasks[0], []
    while task is not None:
        r = run_chunk(per_chunk, task, source=FirestoreSource(conn), repo=repo)
        split_entries.extend(r.entries)
        task = r.follow_up

    assert [(e.chunk_id, e.records, e.bytes_raw) for e in one.entries] == \
           [(e.chunk_id, e.records, e.bytes_raw) for e in split_entries]


def test_running_one_chunk_task_twice_writes_the_same_object_with_the_same_counts(conn, repo):
    seed_collection(conn, 12)
    p = plan(BackupRequest(project=conn.project, chunk_docs=5, chunks_per_task=1), source=FirestoreSource(conn), repo=repo)
    second = run_chunk(p, p.tasks[0], source=FirestoreSource(conn), repo=repo).follow_up
    assert second is not None

    first_run = run_chunk(p, second, source=FirestoreSource(conn), repo=repo)
    stored_once = repo.storage.get(first_run.entries[0].key)
    again = run_chunk(p, ChunkTask.from_dict(second.to_dict()), source=FirestoreSource(conn), repo=repo)  # redelivered
    stored_twice = repo.storage.get(again.entries[0].key)

    a, b = first_run.entries[0], again.entries[0]
    assert (a.chunk_id, a.key, a.records, a.bytes_raw, a.bytes_stored, a.sha256) == \
           (b.chunk_id, b.key, b.records, b.bytes_raw, b.bytes_stored, b.sha256)
    assert stored_once == stored_twice  # unencrypted chunks are byte-identical
    assert first_run.follow_up == again.follow_up
    chunk_keys = [o.key for o in repo.storage.list(f"backups/{p.backup_id}/chunks/")]
    assert chunk_keys == [a.key.replace("-00001", "-00000"), a.key]  # rewritten in place, not duplicated


def test_an_encrypted_chunk_task_run_twice_yields_the_same_records_and_counts(conn, repo):
    seed_collection(conn, 6)
    kek = LocalKey.from_text(LocalKey.generate_text())
    p = plan(BackupRequest(project=conn.project, chunk_docs=3), source=FirestoreSource(conn), repo=repo, kek=kek)

    once = run_chunk(p, p.tasks[0], source=FirestoreSource(conn), repo=repo)
    records_once = [list(repo.iter_records(p.backup_id, e, p.data_key)) for e in once.entries]
    twice = run_chunk(p, p.tasks[0], source=FirestoreSource(conn), repo=repo)
    records_twice = [list(repo.iter_records(p.backup_id, e, p.data_key)) for e in twice.entries]

    assert [(e.chunk_id, e.records, e.bytes_raw) for e in once.entries] == \
           [(e.chunk_id, e.records, e.bytes_raw) for e in twice.entries]
    assert records_once == records_twice
    assert [len(r) for r in records_once] == [3, 3, 2]


def test_run_backup_returns_exactly_the_cli_keys_and_reports_progress(conn, repo):
    seed_collection(conn, 10)
    seen = {"documents": 0, "bytes": 0}

    def progress(documents: int = 0, bytes: int = 0) -> None:
        seen["documents"] += documents
        seen["bytes"] += bytes

    result = run_backup(BackupRequest(project=conn.project, collections=["col"], compression="gzip", chunk_docs=5),
                        repo=repo, source=FirestoreSource(conn), threads=2, progress=progress)

    out = result.to_dict()
    assert list(out) == CLI_KEYS
    assert out["documents"] == 13 == seen["documents"]
    assert out["bytes_raw"] == seen["bytes"]
    assert out["chunks"] == 3 and out["compression"] == "gzip" and out["encrypted"] is False
    assert out["collections"] == ["col"] and out["auth_users"] == 0
    assert out["read_time"].endswith("Z")


def test_an_unreachable_emulator_is_source_unavailable_in_one_line_naming_the_host(project_id, repo):
    conn = open_firestore(project_id, emulator_host="127.0.0.1:9")  # discard port: nothing listens
    try:
        with pytest.raises(SourceUnavailable) as info:
            run_backup(BackupRequest(project=project_id), repo=repo, source=FirestoreSource(conn))
    finally:
        conn.close()
    message = str(info.value)
    assert "\n" not in message and "127.0.0.1:9" in message
    assert not list(repo.storage.list("backups/"))


def test_a_plan_survives_serialization_so_another_process_can_run_its_tasks(conn, repo):
    seed_collection(conn, 8)
    kek = LocalKey.from_text(LocalKey.generate_text())
    p = plan(BackupRequest(project=conn.project, chunk_docs=4), source=FirestoreSource(conn), repo=repo, kek=kek)

    text = json.dumps(p.to_dict(kek))
    assert p.data_key.key.hex() not in text  # the data key only travels wrapped
    elsewhere = BackupPlan.from_dict(json.loads(text), kek)
    entries = run_chunk(elsewhere, elsewhere.tasks[0], source=FirestoreSource(conn), repo=repo).entries
    finalize(elsewhere, entries, repo=repo, kek=kek)

    assert elsewhere.read_time == p.read_time and elsewhere.data_key == p.data_key
    assert backup_records(repo, p.backup_id, kek) == direct_documents(conn, p.read_time)
