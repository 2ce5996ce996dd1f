"""The wire-format scanner picks the same fields protobuf itself would, from any field order."""

from __future__ import annotations

import datetime as dt

import pytest
from google.cloud.firestore_v1.types import document as document_pb
from google.cloud.firestore_v1.types import firestore as firestore_pb
from hypothesis import given, strategies as st

from firebackup.errors import CorruptData
from firebackup.firestore.documents import (
    decode_timestamp,
    document_name,
    encode_timestamp,
    format_rfc3339,
    iter_fields,
    parse_rfc3339,
    root_collection,
    run_query_document,
    run_query_read_time,
)
from firebackup.firestore.wire import encode_varint, read_varint

Document = document_pb.Document._meta.pb
RunQueryResponse = firestore_pb.RunQueryResponse._meta.pb
ROOT = "projects/p/databases/(default)/documents"


def _response(name: str, payload: bytes = b"x") -> tuple[bytes, bytes]:
    d = Document(name=name)
    d.fields["blob"].bytes_value = payload
    resp = RunQueryResponse(document=d)
    resp.read_time.seconds = 1_700_000_000
    resp.read_time.nanos = 123_456_000
    return resp.SerializeToString(), d.SerializeToString()


@pytest.mark.parametrize("size", [0, 100, 200, 20_000, 1_048_000])
def test_run_query_document_returns_the_exact_document_bytes_at_any_size(size):
    raw, expected = _response(f"{ROOT}/c/d", b"z" * size)
    assert run_query_document(raw) == expected


def test_run_query_document_finds_the_document_when_it_is_not_the_first_field():
    _, doc = _response(f"{ROOT}/c/d")
    ts = encode_timestamp(5, 6)
    raw = b"\x1a" + encode_varint(len(ts)) + ts + b"\x0a" + encode_varint(len(doc)) + doc
    assert run_query_document(raw) == doc
    assert decode_timestamp(run_query_read_time(raw)) == (5, 6)


def test_a_response_without_a_document_gives_none_and_its_read_time():
    resp = RunQueryResponse(done=True)
    resp.read_time.seconds = 42
    raw = resp.SerializeToString()
    assert run_query_document(raw) is None
    assert decode_timestamp(run_query_read_time(raw)) == (42, 0)


def test_a_truncated_response_is_corrupt_data():
    raw, _ = _response(f"{ROOT}/c/d", b"y" * 300)
    with pytest.raises(CorruptData):
        run_query_document(raw[:50])


def test_document_name_and_root_collection_come_from_field_one():
    _, doc = _response(f"{ROOT}/users/u1/orders/o\u00e9")
    assert document_name(doc) == f"{ROOT}/users/u1/orders/o\u00e9"
    assert root_collection(doc, len(ROOT) + 1) == b"users"


@given(st.integers(min_value=-(2**63), max_value=2**64 - 1))
def test_varints_round_trip(value):
    encoded = encode_varint(value)
    decoded, pos = read_varint(encoded, 0)
    assert pos == len(encoded)
    assert decoded == value % (1 << 64)


@given(st.integers(min_value=-62135596800, max_value=253402300799), st.integers(0, 999_999_999))
def test_timestamps_decode_as_protobuf_encodes_them(seconds, nanos):
    from google.protobuf import timestamp_pb2

    raw = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos).SerializeToString()
    assert decode_timestamp(raw) == (seconds, nanos)
    assert encode_timestamp(seconds, nanos) == raw


def test_iter_fields_walks_every_wire_type():
    resp = RunQueryResponse(skipped_results=7, done=True, transaction=b"t")
    fields = {f: v for f, _, v in iter_fields(resp.SerializeToString())}
    assert fields == {2: b"t", 4: 7, 6: 1}


def test_rfc3339_keeps_microseconds_and_utc():
    when = dt.datetime(2026, 11, 28, 2, 41, 2, 336, tzinfo=dt.timezone.utc)
    text = format_rfc3339(when)
    assert text == "2026-11-28T02:41:02.000336Z"
    assert parse_rfc3339(text) == when
