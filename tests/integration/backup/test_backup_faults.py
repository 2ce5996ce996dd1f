"""Faults injected into the gRPC channel to the real Firestore emulator, in the middle of a backup read.

A transient UNAVAILABLE mid-stream is retried from the cursor and the backup holds every
document exactly once, in order; a PERMISSION_DENIED is raised at once, in one line, not retried.
"""

from __future__ import annotations

from typing import Iterator

import grpc
import pytest

from firebackup.engine.backup import BackupRequest, run_backup
from firebackup.engine.sources import FirestoreSource
from firebackup.errors import SourceAccessDenied
from firebackup.firestore.documents import parse_rfc3339
from firebackup.firestore.grpc import FirestoreConnection

from tests.integration.grpc_faults import FaultInjector
from backup_helpers import backup_records, direct_documents, rel_names, seed_collection

pytestmark = pytest.mark.integration


@pytest.fixture
def faulty(emulator_host: str, project_id: str) -> Iterator[tuple[FirestoreConnection, FaultInjector]]:
    """A connection to the real emulator whose RunQuery streams the test can cut."""
    injector = FaultInjector({})
    channel = grpc.intercept_channel(grpc.insecure_channel(emulator_host), injector)
    conn = FirestoreConnection(channel, project=project_id, host=emulator_host, emulator=True)
    yield conn, injector
    conn.close()


def test_an_unavailable_stream_mid_backup_is_resumed_from_its_cursor_with_exact_counts(conn, faulty, repo):
    paths = seed_collection(conn, 40)  # 50 documents
    source, injector = faulty
    # The backup's RunQuery streams break twice: after 7 documents, then 11 more (the resumed query).
    injector.faults = {1: (7, grpc.StatusCode.UNAVAILABLE), 2: (11, grpc.StatusCode.UNAVAILABLE)}
    result = run_backup(BackupRequest(project=conn.project, chunk_docs=10), repo=repo, source=FirestoreSource(source))

    assert injector.injected == 2 and injector.run_queries >= 3
    assert result.documents == len(paths) == 50
    records = backup_records(repo, result.backup_id)
    assert rel_names(conn, records) == paths  # every document once, in name order
    assert records == direct_documents(conn, parse_rfc3339(result.read_time))


def test_permission_denied_mid_backup_is_raised_at_once_in_one_line(conn, faulty, repo):
    seed_collection(conn, 20)
    source, injector = faulty
    injector.faults = {1: (5, grpc.StatusCode.PERMISSION_DENIED)}
    with pytest.raises(SourceAccessDenied) as e:
        run_backup(BackupRequest(project=conn.project, chunk_docs=10), repo=repo, source=FirestoreSource(source))

    assert injector.run_queries == 1, "a permanent error is not retried"
    message = str(e.value)
    assert "\n" not in message and "permission denied" in message and e.value.exit_code == 2
    assert not list(repo.storage.list("backups/"))
