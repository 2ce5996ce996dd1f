"""firebackup.firestore.protos must be wire-identical to the client library's google.firestore.v1 messages."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from google.cloud.firestore_v1.types import (
    BatchGetDocumentsRequest,
    BatchGetDocumentsResponse,
    BatchWriteResponse,
    Document,
    DocumentMask,
)

from firebackup.firestore import protos

PAIRS = [
    (protos.Document, Document.pb()),
    (protos.BatchWriteResponse, BatchWriteResponse.pb()),
    (protos.BatchGetDocumentsRequest, BatchGetDocumentsRequest.pb()),
    (protos.BatchGetDocumentsResponse, BatchGetDocumentsResponse.pb()),
    (protos.DocumentMask, DocumentMask.pb()),
]
# Query-only expression kinds Firestore never stores in a document (see the module docstring).
NOT_DECLARED = {"field_reference_value", "variable_reference_value", "function_value", "pipeline_value"}


def _messages(desc, seen=None):
    """desc and every message type reachable from it inside google.firestore.v1."""
    seen = {} if seen is None else seen
    if desc.full_name in seen or not desc.full_name.startswith("google.firestore.v1."):
        return seen
    seen[desc.full_name] = desc
    for f in desc.fields:
        if f.message_type is not None:
            _messages(f.message_type, seen)
    return seen


def _ours_by_name():
    out = {}
    for ours, _ in PAIRS:
        _messages(ours.DESCRIPTOR, out)
    return out


@pytest.mark.parametrize("ours, official", PAIRS, ids=[p[1].DESCRIPTOR.name for p in PAIRS])
def test_every_declared_field_has_the_official_number_type_and_shape(ours, official):
    official_all = _messages(official.DESCRIPTOR)
    for full_name, mine in _messages(ours.DESCRIPTOR).items():
        theirs = official_all.get(full_name) or _messages(Document.pb().DESCRIPTOR).get(full_name)
        assert theirs is not None, f"{full_name} is not a google.firestore.v1 message"
        assert mine.GetOptions().map_entry == theirs.GetOptions().map_entry, full_name
        for f in mine.fields:
            t = theirs.fields_by_name.get(f.name)
            assert t is not None, f"{full_name}.{f.name} is not in the official message"
            assert (f.number, f.is_repeated) == (t.number, t.is_repeated), f"{full_name}.{f.name}"
            if full_name == "google.firestore.v1.BatchWriteResponse" and f.name == "write_results":
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
    ours = protos.BatchWriteResponse.FromString(official.SerializeToString())
    assert [(s.code, s.message) for s in ours.status] == [(0, ""), (6, "already exists")]
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


def test_the_restore_path_does_not_import_the_firestore_client_library():
    code = (
        "import sys, firebackup.cli, firebackup.engine.restore, firebackup.engine.verify, "
        "firebackup.firestore.writer, firebackup.firestore.grpc\n"
        "print(sorted(m for m in sys.modules if m.startswith('google.cloud.firestore')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
