"""The backup's progress total: a server COUNT at read_time, given only to a bar someone watches."""

from __future__ import annotations

import threading

import pytest

from firebackup.engine.sources import FirestoreSource
from firebackup.engine.backup import BackupRequest, run_backup
from firebackup.firestore.reader import SnapshotReader
from firebackup.progress import NoProgress

from backup_helpers import commit, doc, put_many

pytestmark = pytest.mark.integration


def _seed(conn) -> None:
    """17 documents: root docs, subcollections, numeric ids, and documents under missing parents."""
    put_many(conn, [doc(conn, f"users/u{i}", v=i) for i in range(6)]
             + [doc(conn, f"users/u2/orders/o{i}", v=i) for i in range(3)]
             + [doc(conn, "users/u2/orders/o0/lines/l0", v=0)]
             + [doc(conn, f"ghosts/missing/items/x{i}", v=i) for i in range(2)]  # ghosts/missing does not exist
             + [doc(conn, "deep/a/b/c/d/e", v=1)]  # nor deep/a, nor deep/a/b/c
             + [doc(conn, f"zeta/__id{n}__", v=n) for n in (-7, 3, 12)]
             + [doc(conn, "zeta\u00e9/z", v=1)])


def _write_after_read_time(conn) -> None:
    """6 creates, 5 deletes and an update, at every depth and in new root collections."""
    commit(conn,
           put=[doc(conn, "users/u9", v=9), doc(conn, "users/u2/orders/o7", v=7),
                doc(conn, "users/u2/orders/o8", v=8), doc(conn, "aaa/first", v=1),
                doc(conn, "ghosts/missing/items/x9", v=9), doc(conn, "users/u0", v=-1),
                doc(conn, "newroot/p/q/r", v=1)],
           delete=["users/u1", "users/u2/orders/o1", "ghosts/missing/items/x0", "deep/a/b/c/d/e", "zeta/__id3__"])


class _Recording:
    """A progress bar that records its totals; its first update waits for the total, so a
    small backup cannot finish before the count has been delivered."""

    def __init__(self) -> None:
        self.totals: list[dict] = []
        self.documents = 0
        self._got_total = threading.Event()

    def __call__(self, documents: int = 0, bytes: int = 0) -> None:
        self._got_total.wait(timeout=120)  # a safety net, not a measurement
        self.documents += documents

    def set_total(self, documents: int | None = None, bytes: int | None = None) -> None:
        self.totals.append({"documents": documents, "bytes": bytes})
        self._got_total.set()


class _CountingConnection:
    """The real connection, counting the aggregation queries made through it."""

    def __init__(self, conn) -> None:
        self._conn = conn
        self.aggregation_queries = 0

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def run_aggregation_query(self, request, **kwargs):
        self.aggregation_queries += 1
        return self._conn.run_aggregation_query(request, **kwargs)


def test_the_count_at_read_time_equals_the_documents_then_despite_later_writes_and_deletes(conn):
    _seed(conn)
    reader = SnapshotReader.at_server_time(conn)
    _write_after_read_time(conn)

    assert reader.count_documents() == 17
    assert reader.count_documents() == len(list(reader.all_documents()))
    assert SnapshotReader.at_server_time(conn).count_documents() == 18  # the later writes did happen


def test_the_count_of_a_collections_subset_covers_their_subcollections_and_missing_parents_only(conn):
    _seed(conn)
    reader = SnapshotReader.at_server_time(conn)
    _write_after_read_time(conn)

    assert reader.count_documents(["users"]) == 10
    assert reader.count_documents(["ghosts", "deep"]) == 3
    assert reader.count_documents(["zeta"]) == 3  # not zeta\u00e9, whose id only starts the same
    assert reader.count_documents(["nothing-here"]) == 0
    for subset in (["users"], ["ghosts", "deep"], ["zeta", "aaa", "newroot"]):
        assert reader.count_documents(subset) == len(list(reader.all_documents(subset)))


def test_the_count_of_an_empty_database_is_zero(conn):
    assert SnapshotReader.at_server_time(conn).count_documents() == 0


def test_a_watching_progress_bar_gets_the_exact_document_count_at_read_time_as_its_total(conn, repo):
    _seed(conn)
    read_time = SnapshotReader.server_time(conn)
    _write_after_read_time(conn)
    bar = _Recording()

    result = run_backup(BackupRequest(project=conn.project), source=FirestoreSource(conn), repo=repo, progress=bar,
                        read_time=read_time)

    assert bar.totals == [{"documents": 17, "bytes": None}]
    assert result.documents == bar.documents == 17


def test_a_watching_progress_bar_of_a_collections_backup_gets_the_count_of_those_collections(conn, repo):
    _seed(conn)
    read_time = SnapshotReader.server_time(conn)
    _write_after_read_time(conn)
    bar = _Recording()

    result = run_backup(BackupRequest(project=conn.project, collections=["users", "ghosts"]), source=FirestoreSource(conn), repo=repo,
                        progress=bar, read_time=read_time)

    assert bar.totals == [{"documents": 12, "bytes": None}]
    assert result.documents == 12


def test_a_backup_nobody_watches_makes_no_count_query(conn, repo):
    _seed(conn)
    counting = _CountingConnection(conn)

    silent = run_backup(BackupRequest(project=conn.project), source=FirestoreSource(counting), repo=repo, progress=NoProgress())
    without = run_backup(BackupRequest(project=conn.project), source=FirestoreSource(counting), repo=repo, progress=None)
    assert counting.aggregation_queries == 0
    assert silent.documents == without.documents == 17

    run_backup(BackupRequest(project=conn.project), source=FirestoreSource(counting), repo=repo, progress=_Recording())
    assert counting.aggregation_queries == 1  # the proxy does see a count when someone watches
