"""A point-in-time restore's chunk tasks: what they leave out of the base backup, and what they never read."""

from __future__ import annotations

from typing import Any

import grpc
from google.cloud.firestore_v1.types import BatchWriteRequest, BatchWriteResponse

from firebackup.engine.demo import backup_generated
from firebackup.engine.jobs import MemoryJobStore, OneJob
from firebackup.engine.repository import Repository
from firebackup.engine.restore import RestoreHandlers, RestoreJob, RestoreRequest
from firebackup.engine.tasks import RESTORE_CHUNK, RESTORE_PLAN
from firebackup.firestore.grpc import FirestoreConnection
from firebackup.pitr.restore import Change, PointInTime
from firebackup.storage.memory import MemoryStorage

RequestPb: Any = BatchWriteRequest.pb()
ResponsePb: Any = BatchWriteResponse.pb()
DOCS = "projects/dst/databases/(default)/documents/"
REPLACED = frozenset({"a/doc0000002", "a/doc0000010", "a/doc0000038"})  # one in each of three chunks


class RecordingTarget(FirestoreConnection):
    """Accepts every BatchWrite and keeps the written documents' paths (no network)."""

    def __init__(self) -> None:
        super().__init__(grpc.insecure_channel("127.0.0.1:1"), project="dst", host="fake", emulator=False)
        self.written: list[str] = []

    def batch_write(self, request: Any, *, timeout: float | None = None) -> bytes:
        response = ResponsePb()
        for w in RequestPb.FromString(request).writes:
            self.written.append(w.update.name.removeprefix(DOCS))
            response.write_results.add()
            response.status.add(code=0)
        return bytes(response.SerializeToString())


class HeldTasks:
    """A queue the test plays: it keeps tasks until the test runs them."""

    def __init__(self) -> None:
        self.tasks: list[tuple[str, dict[str, Any]]] = []

    def enqueue(self, name: str, payload: dict[str, Any], *, delay_seconds: float = 0.0) -> None:
        self.tasks.append((name, payload))


def test_a_point_in_time_chunk_task_leaves_out_exactly_the_changed_paths_in_scope_and_never_opens_a_change() -> None:
    repo = Repository(MemoryStorage())
    backup = backup_generated(repo, documents=40, chunk_docs=10, collections=["a", "b"])
    paths_read: list[int] = []

    def changes() -> list[Change]:  # what unsealing captured rows would take: a chunk task must not get here
        raise AssertionError("a chunk task read the captured changes' documents")

    def paths() -> frozenset[str]:
        paths_read.append(1)
        return REPLACED

    pit = PointInTime(at=20, base_read_time=10, scope="a", changes=changes, paths=paths)
    target, queue = RecordingTarget(), HeldTasks()
    job = RestoreJob(RestoreRequest(backup_id=backup.backup_id, project="dst"), target, repo, point_in_time=pit)
    handlers = RestoreHandlers(store=MemoryJobStore(), queue=queue, jobs=OneJob(job)).handlers()
    handlers[RESTORE_PLAN]({"job": "j"})
    chunk_tasks = [payload for name, payload in queue.tasks if name == RESTORE_CHUNK]
    for payload in chunk_tasks:
        handlers[RESTORE_CHUNK](payload)

    every = [f"{c}/doc{i:07d}" if i % 10 != 9 else f"{c}/doc{i // 10 * 10:07d}/items/sub{i:07d}"
             for i, c in ((i, "ab"[i % 2]) for i in range(40))]
    expected = sorted(p for p in every if p.startswith("a/") and p not in REPLACED)
    assert len(chunk_tasks) == 4 and sorted(target.written) == expected
    assert "a/doc0000004" in target.written and "b/doc0000001" not in target.written
    assert len(paths_read) == 1, "the paths are read once per opened job, not once per chunk"
