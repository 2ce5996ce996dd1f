"""The few google.firestore.v1 messages backup, restore and verify use, without the client library.

Importing google.cloud.firestore_v1 (for its proto-plus types) costs ~0.35 s of start-up, most
of a restore worker's cold start and ~5% of a 100k-document restore run from the CLI. These
are the same messages, same package, names and field numbers, built here into a private
descriptor pool (so they never clash with the client library's, if both are loaded):

    restore, verify, cat:  Document, Value, ArrayValue, MapValue, DocumentMask,
                           BatchWriteResponse, BatchGetDocumentsRequest, BatchGetDocumentsResponse
    backup (the reader):   StructuredQuery (.CollectionSelector, .FieldReference, .Order,
                           .Direction), Cursor, RunQueryRequest, PartitionQueryRequest/Response,
                           ListCollectionIdsRequest/Response, StructuredAggregationQuery
                           (.Aggregation, .Aggregation.Count), RunAggregationQueryRequest/Response,
                           AggregationResult; Timestamp (this pool's, for read_time fields)
    restore's hot path:    DocumentSkeleton (ours, not Firestore's: name and timestamps only),
                           WritesSkeleton (ours: a batch of writes down to each name)

Only what the code sets or reads is declared. Value omits the query-only expression kinds (field and
variable references, functions, pipelines), which Firestore never stores in a document; a
field this module does not declare is kept as an unknown field, so parse + serialize still
returns every byte. tests/unit/firestore/test_protos.py checks each declared field against
the client library's own descriptors.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf import struct_pb2, timestamp_pb2, wrappers_pb2
from google.rpc import status_pb2
from google.type import latlng_pb2

_F = descriptor_pb2.FieldDescriptorProto
_TYPES = {
    "string": _F.TYPE_STRING, "bytes": _F.TYPE_BYTES, "bool": _F.TYPE_BOOL, "int64": _F.TYPE_INT64,
    "double": _F.TYPE_DOUBLE, "int32": _F.TYPE_INT32,
}
_PACKAGE = "google.firestore.v1"

# name -> [(field, number, type, repeated, oneof)]; a type starting with "." is a message by
# full name, "enum .x.Y" an enum, "map<.x.Y>" a map<string, Y>. A dotted name is a nested type
# ("StructuredQuery.Order" is declared inside StructuredQuery, which must come first).
_V1 = ".google.firestore.v1"
_MESSAGES: dict[str, list[tuple[str, int, str, bool, str | None]]] = {
    "Document": [
        ("name", 1, "string", False, None),
        ("fields", 2, "map<.google.firestore.v1.Value>", True, None),
        ("create_time", 3, ".google.protobuf.Timestamp", False, None),
        ("update_time", 4, ".google.protobuf.Timestamp", False, None),
    ],
    "Value": [
        ("null_value", 11, "enum .google.protobuf.NullValue", False, "value_type"),
        ("boolean_value", 1, "bool", False, "value_type"),
        ("integer_value", 2, "int64", False, "value_type"),
        ("double_value", 3, "double", False, "value_type"),
        ("timestamp_value", 10, ".google.protobuf.Timestamp", False, "value_type"),
        ("string_value", 17, "string", False, "value_type"),
        ("bytes_value", 18, "bytes", False, "value_type"),
        ("reference_value", 5, "string", False, "value_type"),
        ("geo_point_value", 8, ".google.type.LatLng", False, "value_type"),
        ("array_value", 9, ".google.firestore.v1.ArrayValue", False, "value_type"),
        ("map_value", 6, ".google.firestore.v1.MapValue", False, "value_type"),
    ],
    "ArrayValue": [("values", 1, ".google.firestore.v1.Value", True, None)],
    "MapValue": [("fields", 1, "map<.google.firestore.v1.Value>", True, None)],
    "DocumentMask": [("field_paths", 1, "string", True, None)],
    # Both stay opaque bytes: the writer needs only the statuses, and an OK one (code 0, no
    # message) is empty, so a whole batch is checked at C speed (any()) and only the rare
    # other statuses are parsed (Status, below).
    "BatchWriteResponse": [
        ("write_results", 1, "bytes", True, None),
        ("status", 2, "bytes", True, None),
    ],
    "BatchGetDocumentsRequest": [
        ("database", 1, "string", False, None),
        ("documents", 2, "string", True, None),
        ("mask", 3, ".google.firestore.v1.DocumentMask", False, None),
    ],
    "BatchGetDocumentsResponse": [
        ("found", 1, ".google.firestore.v1.Document", False, "result"),
        ("missing", 2, "string", False, "result"),
        ("transaction", 3, "bytes", False, None),
        ("read_time", 4, ".google.protobuf.Timestamp", False, None),
    ],
    # -- the backup path: kindless all-descendants range queries, their partitions and counts --
    "Cursor": [
        ("values", 1, f"{_V1}.Value", True, None),
        ("before", 2, "bool", False, None),
    ],
    "StructuredQuery": [
        # from_, as the client library names it: `from` is a Python keyword (json name "from").
        ("from_", 2, f"{_V1}.StructuredQuery.CollectionSelector", True, None),
        ("order_by", 4, f"{_V1}.StructuredQuery.Order", True, None),
        ("start_at", 7, f"{_V1}.Cursor", False, None),
        ("end_at", 8, f"{_V1}.Cursor", False, None),
        ("limit", 5, ".google.protobuf.Int32Value", False, None),
    ],
    "StructuredQuery.CollectionSelector": [
        ("collection_id", 2, "string", False, None),
        ("all_descendants", 3, "bool", False, None),
    ],
    "StructuredQuery.FieldReference": [("field_path", 2, "string", False, None)],
    "StructuredQuery.Order": [
        ("field", 1, f"{_V1}.StructuredQuery.FieldReference", False, None),
        ("direction", 2, f"enum {_V1}.StructuredQuery.Direction", False, None),
    ],
    "RunQueryRequest": [
        ("parent", 1, "string", False, None),
        ("structured_query", 2, f"{_V1}.StructuredQuery", False, "query_type"),
        ("read_time", 7, ".google.protobuf.Timestamp", False, "consistency_selector"),
    ],
    "PartitionQueryRequest": [
        ("parent", 1, "string", False, None),
        ("structured_query", 2, f"{_V1}.StructuredQuery", False, "query_type"),
        ("partition_count", 3, "int64", False, None),
        ("page_token", 4, "string", False, None),
        ("page_size", 5, "int32", False, None),
        ("read_time", 6, ".google.protobuf.Timestamp", False, "consistency_selector"),
    ],
    "PartitionQueryResponse": [
        ("partitions", 1, f"{_V1}.Cursor", True, None),
        ("next_page_token", 2, "string", False, None),
    ],
    "ListCollectionIdsRequest": [
        ("parent", 1, "string", False, None),
        ("page_size", 2, "int32", False, None),
        ("page_token", 3, "string", False, None),
        ("read_time", 4, ".google.protobuf.Timestamp", False, "consistency_selector"),
    ],
    "ListCollectionIdsResponse": [
        ("collection_ids", 1, "string", True, None),
        ("next_page_token", 2, "string", False, None),
    ],
    "StructuredAggregationQuery": [
        ("structured_query", 1, f"{_V1}.StructuredQuery", False, "query_type"),
        ("aggregations", 3, f"{_V1}.StructuredAggregationQuery.Aggregation", True, None),
    ],
    "StructuredAggregationQuery.Aggregation": [
        ("count", 1, f"{_V1}.StructuredAggregationQuery.Aggregation.Count", False, "operator"),
        ("alias", 7, "string", False, None),
    ],
    "StructuredAggregationQuery.Aggregation.Count": [],  # up_to is never set: count everything
    "RunAggregationQueryRequest": [
        ("parent", 1, "string", False, None),
        ("structured_aggregation_query", 2, f"{_V1}.StructuredAggregationQuery", False, "query_type"),
        ("read_time", 6, ".google.protobuf.Timestamp", False, "consistency_selector"),
    ],
    "RunAggregationQueryResponse": [("result", 1, f"{_V1}.AggregationResult", False, None)],
    "AggregationResult": [("aggregate_fields", 2, f"map<{_V1}.Value>", True, None)],
    # Not a Firestore message: a Document seen through its name and timestamps only (kept as
    # opaque bytes). Its fields map stays unknown bytes, passed through untouched, which is
    # what makes the restore's per-document rewrite cheap (firestore/rewrite.py).
    "DocumentSkeleton": [
        ("name", 1, "string", False, None),
        ("create_time", 3, "bytes", False, None),
        ("update_time", 4, "bytes", False, None),
    ],
    # Not Firestore's either: BatchWriteRequest.writes (field 2) seen down to each Write's
    # update (field 1) name. One parse of a whole batch of writes checks, in C, that every
    # Document built by the restore's byte-level path is well formed (rewrite.py).
    "WriteSkeleton": [("update", 1, f"{_V1}.DocumentSkeleton", False, None)],
    "WritesSkeleton": [("writes", 2, f"{_V1}.WriteSkeleton", True, None)],
}

# name -> [(value, number)]; dotted names nest as in _MESSAGES.
_ENUMS: dict[str, list[tuple[str, int]]] = {
    "StructuredQuery.Direction": [("DIRECTION_UNSPECIFIED", 0), ("ASCENDING", 1), ("DESCENDING", 2)],
}


def _add_field(msg: descriptor_pb2.DescriptorProto, msg_name: str, name: str, number: int, kind: str,
               repeated: bool, oneof: str | None) -> None:
    f = msg.field.add(name=name, number=number, json_name=_json_name(name))
    f.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if kind.startswith("map<"):
        # A map is a repeated nested XxxEntry message {key = 1, value = 2} flagged map_entry.
        entry_name = "".join(p.title() for p in name.split("_")) + "Entry"
        entry = msg.nested_type.add(name=entry_name)
        entry.options.map_entry = True
        entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL, json_name="key")
        entry.field.add(name="value", number=2, type=_F.TYPE_MESSAGE, label=_F.LABEL_OPTIONAL,
                        type_name=kind[4:-1], json_name="value")
        f.type, f.type_name = _F.TYPE_MESSAGE, f".{_PACKAGE}.{msg_name}.{entry_name}"
    elif kind.startswith("enum "):
        f.type, f.type_name = _F.TYPE_ENUM, kind[5:]
    elif kind.startswith("."):
        f.type, f.type_name = _F.TYPE_MESSAGE, kind
    else:
        f.type = _TYPES[kind]
    if oneof is not None:
        names = [o.name for o in msg.oneof_decl]
        if oneof not in names:
            msg.oneof_decl.add(name=oneof)
            names.append(oneof)
        f.oneof_index = names.index(oneof)


def _json_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


# The generated classes are made at run time, so to a type checker they are Any.
def _build() -> tuple[dict[str, Any], Any]:
    pool = descriptor_pool.DescriptorPool()
    deps = (timestamp_pb2, struct_pb2, wrappers_pb2, latlng_pb2, status_pb2)
    for dep in deps:
        _add_with_deps(pool, dep.DESCRIPTOR)
    fdp = descriptor_pb2.FileDescriptorProto(
        name="firebackup/firestore_v1_subset.proto", package=_PACKAGE, syntax="proto3",
        dependency=[dep.DESCRIPTOR.name for dep in deps],
    )
    declared: dict[str, descriptor_pb2.DescriptorProto] = {}
    for name, fields in _MESSAGES.items():
        parent, _, short = name.rpartition(".")
        msg = (declared[parent].nested_type if parent else fdp.message_type).add(name=short)
        declared[name] = msg
        for field in fields:
            _add_field(msg, name, *field)
    for name, values in _ENUMS.items():
        parent, _, short = name.rpartition(".")
        enum = (declared[parent].enum_type if parent else fdp.enum_type).add(name=short)
        for value, number in values:
            enum.value.add(name=value, number=number)
    pool.Add(fdp)
    classes = {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
               for name in _MESSAGES}
    return classes, message_factory.GetMessageClass(pool.FindMessageTypeByName("google.protobuf.Timestamp"))


def _add_with_deps(pool: descriptor_pool.DescriptorPool, file_desc: Any) -> None:
    for dep in file_desc.dependencies:
        _add_with_deps(pool, dep)
    try:
        pool.FindFileByName(file_desc.name)
    except KeyError:
        pool.AddSerializedFile(file_desc.serialized_pb)


_classes, Timestamp = _build()
Document = _classes["Document"]
Value = _classes["Value"]
ArrayValue = _classes["ArrayValue"]
MapValue = _classes["MapValue"]
DocumentMask = _classes["DocumentMask"]
BatchWriteResponse = _classes["BatchWriteResponse"]
BatchGetDocumentsRequest = _classes["BatchGetDocumentsRequest"]
BatchGetDocumentsResponse = _classes["BatchGetDocumentsResponse"]
Cursor = _classes["Cursor"]
StructuredQuery = _classes["StructuredQuery"]  # .CollectionSelector, .FieldReference, .Order, .ASCENDING
RunQueryRequest = _classes["RunQueryRequest"]
PartitionQueryRequest = _classes["PartitionQueryRequest"]
PartitionQueryResponse = _classes["PartitionQueryResponse"]
ListCollectionIdsRequest = _classes["ListCollectionIdsRequest"]
ListCollectionIdsResponse = _classes["ListCollectionIdsResponse"]
StructuredAggregationQuery = _classes["StructuredAggregationQuery"]  # .Aggregation, .Aggregation.Count
RunAggregationQueryRequest = _classes["RunAggregationQueryRequest"]
RunAggregationQueryResponse = _classes["RunAggregationQueryResponse"]
AggregationResult = _classes["AggregationResult"]
DocumentSkeleton = _classes["DocumentSkeleton"]
Status = status_pb2.Status
WritesSkeleton = _classes["WritesSkeleton"]
