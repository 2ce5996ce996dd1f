"""One backup flow for every entry point: a backup run the CLI's way (run_backup on a LocalQueue, the job
in memory) and one run through the control plane (the API, the job in the database, a worker per task)
execute the same handler functions and lay their chunks out identically."""

from __future__ import annotations

import sys
from types import CodeType
from typing import Any

from firebackup.engine.backup import BackupHandlers, BackupRequest, run_backup
from firebackup.engine.jobs import Claim, MemoryJobStore
from firebackup.engine.repository import Repository
from firebackup.engine.sources import FirestoreSource
from firebackup.firestore.grpc import open_firestore
from firebackup.services.job_store import DbJobStore
from firebackup.storage import open_storage
from tests.integration.controlplane.jobs_world import World, seed

CHUNK_DOCS = 5


def _claimant() -> CodeType:
    """The handler that asked for a lease: claim() <- TaskRunner.run() <- the handler."""
    return sys._getframe(3).f_code


class RecordingMemoryStore(MemoryJobStore):
    def __init__(self) -> None:
        super().__init__()
        self.claims: list[tuple[CodeType, str]] = []

    def claim(self, job_id: str, task_key: str) -> Claim:
        self.claims.append((_claimant(), task_key))
        return super().claim(job_id, task_key)


class RecordingDbStore(DbJobStore):
    claims: list[tuple[CodeType, str]]

    def claim(self, job_id: str, task_key: str) -> Claim:
        self.claims.append((_claimant(), task_key))
        return super().claim(job_id, task_key)


def _chunks(repo: Repository, backup_id: str, kek: Any) -> list[tuple[str, str, list[bytes]]]:
    manifest, data_key = repo.read_manifest(backup_id, kek)
    return [(e.chunk_id, e.kind, list(repo.iter_records(backup_id, e, data_key))) for e in manifest.chunks]


def test_the_cli_and_the_control_plane_run_the_same_handlers_and_write_the_same_chunks(
        engine, firestore_emulator, monkeypatch, tmp_path, project_id):
    firestore_emulator.apply(monkeypatch)
    count = seed(project_id)

    # The CLI's way: one process, a LocalQueue, the job in memory, one stream per range.
    cli_store = RecordingMemoryStore()
    source = FirestoreSource(open_firestore(project_id, emulator_host=firestore_emulator.env["FIRESTORE_EMULATOR_HOST"]))
    cli_repo = Repository(open_storage((tmp_path / "cli").as_uri()))
    try:
        cli = run_backup(BackupRequest(project=project_id, chunk_docs=CHUNK_DOCS), source=source, repo=cli_repo,
                         store=cli_store)
    finally:
        source.close()

    # The control plane's way: the API starts it, the job lives in the database, one chunk per task.
    world = World(engine, tmp_path / "plane", chunk_docs=CHUNK_DOCS)
    store = world.workers.backups.store
    recording = RecordingDbStore(store.factory, store.ports, store.model, clock=store.clock,
                                 lease_seconds=store.lease.total_seconds())
    recording.claims = []
    world.workers.backups.store = recording
    backup_id = world.start(project_id)
    world.drain()
    row = world.row(backup_id)
    assert row.state == "completed", row.error

    handlers = {BackupHandlers.plan.__code__: "plan", BackupHandlers.chunk.__code__: "chunk",
                BackupHandlers.finalize.__code__: "finalize"}
    cli_ran = [handlers.get(code, code.co_name) for code, _ in cli_store.claims]
    plane_ran = [handlers.get(code, code.co_name) for code, _ in recording.claims]
    assert set(cli_ran) == set(plane_ran) == {"plan", "chunk", "finalize"}
    assert cli_ran[0] == plane_ran[0] == "plan" and cli_ran[-1] == plane_ran[-1] == "finalize"
    # The CLI streams its one range in one task; the control plane hands on after every chunk.
    assert cli_ran.count("chunk") == 1 and plane_ran.count("chunk") == row.chunks_done > 1

    cli_chunks = _chunks(cli_repo, cli.backup_id, None)
    plane_repo = Repository(open_storage((world.org.tmp / "loc").as_uri()))
    plane_chunks = _chunks(plane_repo, row.repo_backup_id, world.workers.kek(row.org_id))
    assert [c[:2] for c in cli_chunks] == [c[:2] for c in plane_chunks]  # the same chunk ids, in order
    assert [c[2] for c in cli_chunks] == [c[2] for c in plane_chunks]  # ... holding the same documents
    assert cli.documents == row.documents == count
    assert sorted(p.name for p in (tmp_path / "cli" / "backups" / cli.backup_id).rglob("*.fbc")) == \
        sorted(p.name for p in (world.org.tmp / "loc" / "backups" / row.repo_backup_id).rglob("*.fbc"))
