"""firebackup.firestore.protos must be wire-identical to the client library's google.firestore.v1 messages."""

from __future__ import annotations

import datetime as dt
import math
import subprocess
import sys

import grpc
import pytest
from google.cloud.firestore_v1.types import (
    AggregationResult,
    BatchGetDocumentsRequest,
    BatchGetDocumentsResponse,
    BatchWriteResponse,
    Cursor,
    Document,
    DocumentMask,
    ListCollectionIdsRequest,
    ListCollectionIdsResponse,
    PartitionQueryRequest,
    PartitionQueryResponse,
    RunAggregationQueryRequest,
    RunAggregationQueryResponse,
    RunQueryRequest,
    StructuredAggregationQuery,
    StructuredQuery,
    Value,
)

from firebackup.firestore import protos
from firebackup.firestore.grpc import FirestoreConnection
from firebackup.firestore.reader import MIN_ID, DocRange, SnapshotReader

PAIRS = [
    (protos.Document, Document.pb()),
    (protos.BatchWriteResponse, BatchWriteResponse.pb()),
    (protos.BatchGetDocumentsRequest, BatchGetDocumentsRequest.pb()),
    (protos.BatchGetDocumentsResponse, BatchGetDocumentsResponse.pb()),
    (protos.DocumentMask, DocumentMask.pb()),
    (protos.Cursor, Cursor.pb()),
    (protos.StructuredQuery, StructuredQuery.pb()),
    (protos.RunQueryRequest, RunQueryRequest.pb()),
    (protos.PartitionQueryRequest, PartitionQueryRequest.pb()),
    (protos.PartitionQueryResponse, PartitionQueryResponse.pb()),
    (protos.ListCollectionIdsRequest, ListCollectionIdsRequest.pb()),
    (protos.ListCollectionIdsResponse, ListCollectionIdsResponse.pb()),
    (protos.StructuredAggregationQuery, StructuredAggregationQuery.pb()),
    (protos.RunAggregationQueryRequest, RunAggregationQueryRequest.pb()),
    (protos.RunAggregationQueryResponse, RunAggregationQueryResponse.pb()),
    (protos.AggregationResult, AggregationResult.pb()),
]
# Query-only expression kinds Firestore never stores in a document (see the module docstring).
NOT_DECLARED = {"field_reference_value", "variable_reference_value", "function_value", "pipeline_value"}


def _v1(full_name: str) -> bool:
    return full_name.startswith("google.firestore.v1.")


def _walk(desc, messages=None, enums=None):
    """(messages, enums): desc and every google.firestore.v1 type reachable from it, by field or nesting."""
    messages = {} if messages is None else messages
    enums = {} if enums is None else enums
    if desc.full_name in messages or not _v1(desc.full_name):
        return messages, enums
    messages[desc.full_name] = desc
    for e in desc.enum_types:
        enums[e.full_name] = e
    for f in desc.fields:
        if f.message_type is not None:
            _walk(f.message_type, messages, enums)
        if f.enum_type is not None and _v1(f.enum_type.full_name):
            enums[f.enum_type.full_name] = f.enum_type
    for nested in desc.nested_types:
        _walk(nested, messages, enums)
    return messages, enums


def _official_types():
    messages, enums = {}, {}
    for _, official in PAIRS:
        _walk(official.DESCRIPTOR, messages, enums)
    return messages, enums


def test_the_descriptor_check_reaches_nested_messages_enums_and_map_entries():
    messages, enums = {}, {}
    for ours, _ in PAIRS:
        _walk(ours.DESCRIPTOR, messages, enums)
    assert {
        "google.firestore.v1.StructuredQuery.CollectionSelector",
        "google.firestore.v1.StructuredQuery.FieldReference",
        "google.firestore.v1.StructuredQuery.Order",
        "google.firestore.v1.StructuredAggregationQuery.Aggregation.Count",
        "google.firestore.v1.AggregationResult.AggregateFieldsEntry",
        "google.firestore.v1.Value",
    } <= set(messages)
    assert set(enums) == {"google.firestore.v1.StructuredQuery.Direction"}


@pytest.mark.parametrize("ours, official", PAIRS, ids=[p[1].DESCRIPTOR.name for p in PAIRS])
def test_every_declared_field_has_the_official_number_type_and_shape(ours, official):
    official_messages, official_enums = _official_types()
    my_messages, my_enums = _walk(ours.DESCRIPTOR)
    for full_name, mine in my_enums.items():
        theirs = official_enums.get(full_name)
        assert theirs is not None, f"{full_name} is not a google.firestore.v1 enum"
        assert {(v.name, v.number) for v in mine.values} <= {(v.name, v.number) for v in theirs.values}, full_name
    for full_name, mine in my_messages.items():
        theirs = official_messages.get(full_name)
        assert theirs is not None, f"{full_name} is not a google.firestore.v1 message"
        assert mine.GetOptions().map_entry == theirs.GetOptions().map_entry, full_name
        for f in mine.fields:
            t = theirs.fields_by_name.get(f.name)
            assert t is not None, f"{full_name}.{f.name} is not in the official message"
            assert (f.number, f.is_repeated, f.json_name) == (t.number, t.is_repeated, t.json_name), \
                f"{full_name}.{f.name}"
            if full_name == "google.firestore.v1.BatchWriteResponse" and f.name in ("write_results", "status"):
                assert f.type == f.TYPE_BYTES and t.type == t.TYPE_MESSAGE  # kept opaque on purpose
                continue
            assert f.type == t.type, f"{full_name}.{f.name}"
            if f.message_type is not None:
                assert f.message_type.full_name == t.message_type.full_name, f"{full_name}.{f.name}"
            if f.enum_type is not None:
                assert f.enum_type.full_name == t.enum_type.full_name, f"{full_name}.{f.name}"
            mine_oneof = f.containing_oneof.name if f.containing_oneof else None
            their_oneof = t.containing_oneof.name if t.containing_oneof else None
            assert mine_oneof == their_oneof, f"{full_name}.{f.name}"


def test_value_declares_every_storable_kind_of_the_official_value():
    ours = {f.name for f in protos.Value.DESCRIPTOR.fields}
    official = {f.name for f in Document.pb().DESCRIPTOR.fields_by_name["fields"].message_type
                .fields_by_name["value"].message_type.fields}
    assert ours == official - NOT_DECLARED


def _every_kind_document() -> bytes:
    d = Document.pb()(name="projects/p/databases/(default)/documents/c/d")
    f = d.fields
    f["null"].null_value = 0
    f["t"].boolean_value = True
    f["i"].integer_value = -(2**63)
    f["x"].double_value = math.nan
    f["neg0"].double_value = -0.0
    f["ts"].timestamp_value.seconds = 253402300799
    f["ts"].timestamp_value.nanos = 999999000
    f["s"].string_value = "é 𝄞 `back` tick"
    f["b"].bytes_value = bytes(range(256))
    f["r"].reference_value = "projects/p/databases/(default)/documents/c/other"
    f["g"].geo_point_value.latitude = -90.0
    f["a"].array_value.values.add().map_value.fields["k"].string_value = "v"
    f["m"].map_value.fields["deep"].map_value.fields["er"].integer_value = 1
    f["fn"].function_value.name = "not storable, kept as unknown bytes"
    d.create_time.seconds = 1
    d.update_time.seconds = 2
    return d.SerializeToString()


def test_a_document_of_every_kind_parses_and_serializes_to_the_same_bytes():
    raw = _every_kind_document()
    ours = protos.Document.FromString(raw)
    # Map entries come out in hash order (the client library's too), so compare sorted encodings.
    official = Document.pb().FromString(raw)
    assert ours.SerializeToString(deterministic=True) == official.SerializeToString(deterministic=True)
    assert ours.fields["i"].integer_value == -(2**63)
    assert ours.fields["r"].WhichOneof("value_type") == "reference_value"
    assert ours.fields["m"].map_value.fields["deep"].map_value.fields["er"].integer_value == 1
    assert ours.fields["fn"].WhichOneof("value_type") is None  # undeclared, yet its bytes survive
    assert Document.pb().FromString(ours.SerializeToString()) == Document.pb().FromString(raw)


def test_a_batch_write_response_is_read_as_the_official_statuses():
    official = BatchWriteResponse.pb()()
    official.write_results.add().update_time.seconds = 5
    official.status.add(code=0)
    official.status.add(code=6, message="already exists")
    official.status.add(code=0, message="fine")
    ours = protos.BatchWriteResponse.FromString(official.SerializeToString())
    statuses = [protos.Status.FromString(s) for s in ours.status]
    assert [(s.code, s.message) for s in statuses] == [(0, ""), (6, "already exists"), (0, "fine")]
    assert [bool(s) for s in ours.status] == [False, True, True]  # only a bare OK is empty: the writer's fast check
    assert len(ours.write_results) == 1


def test_a_names_only_batch_get_request_matches_the_official_encoding():
    ours = protos.BatchGetDocumentsRequest(database="projects/p/databases/d", documents=["a", "b"])
    ours.mask.SetInParent()
    official = BatchGetDocumentsRequest.pb()(database="projects/p/databases/d", documents=["a", "b"])
    official.mask.SetInParent()
    assert ours.SerializeToString() == official.SerializeToString()
    found = BatchGetDocumentsResponse.pb()()
    found.found.name = "projects/p/databases/d/documents/c/x"
    assert protos.BatchGetDocumentsResponse.FromString(found.SerializeToString()).HasField("found")
    missing = BatchGetDocumentsResponse.pb()(missing="projects/p/databases/d/documents/c/y")
    assert not protos.BatchGetDocumentsResponse.FromString(missing.SerializeToString()).HasField("found")


READ_TIME = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone.utc)
DOCS = "projects/p/databases/(default)/documents"


class _Stream(list):
    def cancel(self):
        pass


class _CapturingFirestore(FirestoreConnection):
    """Keeps every request the reader sends and answers from canned client-library responses."""

    def __init__(self, **answers):
        super().__init__(grpc.insecure_channel("127.0.0.1:1"), project="p", host="fake", emulator=True)
        self.answers, self.requests = answers, []

    def _answer(self, request, name):
        self.requests.append(request)
        return self.answers[name]

    def partition_query(self, request, *, timeout=None):
        return self._answer(request, "partition")

    def list_collection_ids(self, request, *, timeout=None):
        return self._answer(request, "list")

    def run_aggregation_query(self, request, *, timeout=None):
        return _Stream(self._answer(request, "aggregate"))


def _official_read_time():
    ts = RunQueryRequest.pb()().read_time
    ts.seconds, ts.nanos = int(READ_TIME.timestamp()), 678901000
    return ts


def _official_query(lo=None, hi=None, after=None, limit=None, collection_id=None):
    """The range query as reader.query() built it with the client library's types."""
    sq = StructuredQuery.pb()(
        from_=[StructuredQuery.CollectionSelector.pb()(collection_id=collection_id, all_descendants=True)],
        order_by=[StructuredQuery.Order.pb()(field=StructuredQuery.FieldReference.pb()(field_path="__name__"),
                                             direction=1)],
    )
    ref = Value.pb()
    if after is not None:
        sq.start_at.CopyFrom(Cursor.pb()(values=[ref(reference_value=after)], before=False))
    elif lo is not None:
        sq.start_at.CopyFrom(Cursor.pb()(values=[ref(reference_value=lo)], before=True))
    if hi is not None:
        sq.end_at.CopyFrom(Cursor.pb()(values=[ref(reference_value=hi)], before=True))
    if limit is not None:
        sq.limit.value = limit
    return sq


@pytest.mark.parametrize("rng, after, limit", [
    (DocRange(), None, None),
    (DocRange("users", f"{DOCS}/users/{MIN_ID}", f"{DOCS}/users\0/{MIN_ID}"), None, None),
    (DocRange("users", f"{DOCS}/users/{MIN_ID}", f"{DOCS}/users\0/{MIN_ID}"), f"{DOCS}/users/a/sub/b", 500),
    (DocRange(None, None, f"{DOCS}/orders/{MIN_ID}"), None, 0),
], ids=["whole-database", "one-collection", "resumed-with-limit", "upper-bound-limit-zero"])
def test_a_range_query_is_the_run_query_request_the_client_library_built(rng, after, limit):
    reader = SnapshotReader(_CapturingFirestore(), READ_TIME)
    ours = reader.query(rng, after=after, limit=limit)
    expected = RunQueryRequest.pb()(
        parent=DOCS, structured_query=_official_query(rng.lo, rng.hi, after, limit), read_time=_official_read_time()
    )
    assert RunQueryRequest.pb().FromString(ours.SerializeToString()) == expected
    assert ours.SerializeToString() == expected.SerializeToString()


def test_a_count_request_is_the_official_one_and_its_result_is_read():
    result = RunAggregationQueryResponse.pb()()
    result.result.aggregate_fields["n"].integer_value = 123456
    conn = _CapturingFirestore(aggregate=[RunAggregationQueryResponse.pb()().SerializeToString(),
                                          result.SerializeToString()])
    assert SnapshotReader(conn, READ_TIME).count_documents() == 123456
    saq = StructuredAggregationQuery.pb()(
        structured_query=_official_query(),
        aggregations=[StructuredAggregationQuery.Aggregation.pb()(
            alias="n", count=StructuredAggregationQuery.Aggregation.Count.pb()())],
    )
    expected = RunAggregationQueryRequest.pb()(parent=DOCS, structured_aggregation_query=saq,
                                                read_time=_official_read_time())
    [sent] = conn.requests
    assert sent.SerializeToString() == expected.SerializeToString()


def test_partition_and_collection_listing_requests_are_the_official_ones():
    cuts = PartitionQueryResponse.pb()()
    cuts.partitions.add().values.add().reference_value = f"{DOCS}/users/m"
    roots = ListCollectionIdsResponse.pb()(collection_ids=["users", "orders"])
    conn = _CapturingFirestore(partition=cuts.SerializeToString(), list=roots.SerializeToString())
    reader = SnapshotReader(conn, READ_TIME)
    assert reader.root_collections() == ["orders", "users"]
    rng = reader.collection_bounds("users")
    assert [(r.lo, r.hi) for r in reader.split(rng, 3)] == [(rng.lo, f"{DOCS}/users/m"), (f"{DOCS}/users/m", rng.hi)]
    listing, partition = conn.requests
    assert listing.SerializeToString() == ListCollectionIdsRequest.pb()(
        parent=DOCS, page_size=1000, read_time=_official_read_time()).SerializeToString()
    order = StructuredQuery.Order.pb()(field=StructuredQuery.FieldReference.pb()(field_path="__name__"), direction=1)
    sq = StructuredQuery.pb()(
        from_=[StructuredQuery.CollectionSelector.pb()(collection_id="users", all_descendants=True)], order_by=[order])
    assert partition.SerializeToString() == PartitionQueryRequest.pb()(
        parent=DOCS, structured_query=sq, partition_count=2, page_size=2, read_time=_official_read_time()
    ).SerializeToString()


def test_the_restore_path_does_not_import_the_firestore_client_library():
    code = (
        "import sys, firebackup.cli, firebackup.engine.restore, firebackup.engine.verify, "
        "firebackup.firestore.batch_writer, firebackup.firestore.grpc\n"
        "print(sorted(m for m in sys.modules if m.startswith('google.cloud.firestore')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_backup_path_does_not_import_the_firestore_client_library():
    code = (
        "import sys, firebackup.engine.backup, firebackup.firestore.reader, firebackup.cli\n"
        "print(sorted(m for m in sys.modules if m.startswith('google.cloud.firestore')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
