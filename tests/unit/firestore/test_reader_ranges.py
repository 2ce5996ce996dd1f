"""Range planning: collection bounds, whole-database tiling and PartitionQuery cut points (fake server)."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from google.cloud.firestore_v1.types import firestore as firestore_pb

from firebackup.errors import UsageError
from firebackup.firestore.grpc import FirestoreConnection, translate_error
from firebackup.firestore.reader import MIN_ID, DocRange, SnapshotReader, name_sort_key

READ_TIME = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


class _Rpc(grpc.RpcError):
    def __init__(self, code, details):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


class FakeFirestore(FirestoreConnection):
    """A FirestoreConnection whose RPCs answer from canned data (no network)."""

    def __init__(self, *, roots, cuts=None):
        super().__init__(grpc.insecure_channel("127.0.0.1:1"), project="p", host="fake", emulator=True)
        self.roots, self.cuts, self.requests = roots, cuts, []

    def list_collection_ids(self, request, *, timeout=None):
        return firestore_pb.ListCollectionIdsResponse._meta.pb(collection_ids=self.roots).SerializeToString()

    def partition_query(self, request, *, timeout=None):
        self.requests.append(request)
        if self.cuts is None:
            raise translate_error(_Rpc(grpc.StatusCode.UNIMPLEMENTED, "unimplemented"), host="fake", what="PartitionQuery")
        group = request.structured_query.from_[0].collection_id
        pages = self.cuts.get(group, [[]])  # a list of pages, each in the server's order
        page = int(request.page_token or 0)
        resp = firestore_pb.PartitionQueryResponse._meta.pb()
        for name in pages[page]:
            resp.partitions.add().values.add().reference_value = f"{self.documents_path}/{name}"
        if page + 1 < len(pages):
            resp.next_page_token = str(page + 1)
        return resp.SerializeToString()


def _rel(conn, name):
    return None if name is None else name[len(conn.documents_path) + 1:]


def test_without_partition_query_the_whole_database_is_one_range():
    conn = FakeFirestore(roots=["b", "a"])
    assert SnapshotReader(conn, READ_TIME).plan_ranges(None, partitions=8) == [DocRange()]


def test_collection_bounds_hold_the_collection_and_its_descendants_only():
    conn = FakeFirestore(roots=[])
    rng = SnapshotReader(conn, READ_TIME).collection_bounds("users")
    assert _rel(conn, rng.lo) == f"users/{MIN_ID}"
    assert _rel(conn, rng.hi) == f"users\0/{MIN_ID}"
    assert name_sort_key("users/zzz/sub/x") < name_sort_key(f"users\0/{MIN_ID}") < name_sort_key("users0/a")


def test_partition_cut_points_split_each_root_collection_and_tile_the_key_space():
    conn = FakeFirestore(roots=["users", "orders"],
                         cuts={"users": [["elsewhere/users/x", "users/f", "users/m"]], "orders": [[]]})
    ranges = SnapshotReader(conn, READ_TIME).plan_ranges(None, partitions=4)
    got = [(r.collection, _rel(conn, r.lo), _rel(conn, r.hi)) for r in ranges]
    assert got == [
        ("orders", None, f"users/{MIN_ID}"),
        ("users", f"users/{MIN_ID}", "users/f"),
        ("users", "users/f", "users/m"),
        ("users", "users/m", None),
    ]
    assert all(r.read_time.seconds == int(READ_TIME.timestamp()) for r in conn.requests)


def test_cut_points_from_several_pages_are_merged_in_name_order_without_duplicates():
    conn = FakeFirestore(roots=["users"], cuts={"users": [["users/m", "users/x"], ["users/f", "users/m"]]})
    ranges = SnapshotReader(conn, READ_TIME).plan_ranges(["users"], partitions=4)
    assert [(_rel(conn, r.lo), _rel(conn, r.hi)) for r in ranges] == [
        (f"users/{MIN_ID}", "users/f"), ("users/f", "users/m"), ("users/m", "users/x"), ("users/x", f"users\0/{MIN_ID}"),
    ]


def test_collections_keep_their_own_bounds_when_the_server_cannot_partition():
    conn = FakeFirestore(roots=["users"])
    ranges = SnapshotReader(conn, READ_TIME).plan_ranges(["users", "orders"], partitions=4)
    assert [r.collection for r in ranges] == ["orders", "users"]


@pytest.mark.parametrize("bad", ["", "a/b", ".."])
def test_a_collection_id_that_cannot_be_a_root_collection_is_a_usage_error(bad):
    conn = FakeFirestore(roots=[])
    with pytest.raises(UsageError):
        SnapshotReader(conn, READ_TIME).plan_ranges([bad])
