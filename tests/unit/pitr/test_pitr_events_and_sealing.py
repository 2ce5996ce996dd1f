"""Reading Eventarc Firestore write events, sealing captured documents, and choosing the last version per document."""

from __future__ import annotations

import pytest
from google.cloud.firestore_v1.types import Document

from firebackup.crypto.keys import DataKey, LocalKey
from firebackup.errors import CorruptData, UsageError, WrongKeyOrTampered
from firebackup.pitr.events import CREATE, DELETE, UPDATE, format_ns, parse_instant, parse_written
from firebackup.pitr.restore import Change, PointInTime, base_filter, check_scope, last_versions
from firebackup.pitr.sealing import ChangeSealer, wrap_context
from firebackup.services.pitr import change_id
from infra.local.function_server import firestore_write_cloudevent

def _doc() -> bytes:
    d = Document.pb()(name="projects/p/databases/(default)/documents/users/u1")
    d.fields["n"].integer_value = 1
    d.update_time.seconds, d.update_time.nanos = 1_800_000_000, 123_456_789
    return bytes(d.SerializeToString())


DOC = _doc()
AT = 1_800_000_000 * 10**9 + 123_456_789


def _attributes(headers: dict[str, str]) -> dict[str, str]:
    return {k[3:]: v for k, v in headers.items() if k.startswith("ce-")}


def _event(value: bytes | None, old: bytes | None, when: str = "2027-01-15T08:00:00.5Z") -> tuple[dict[str, str], bytes]:
    headers, body = firestore_write_cloudevent("p", "(default)", "users/u1", value=value, old_value=old, when=when)
    return _attributes(headers), body


def test_a_create_an_update_and_a_delete_are_told_apart_by_which_documents_the_event_carries() -> None:
    created = parse_written(*_event(DOC, None))
    updated = parse_written(*_event(DOC, DOC))
    deleted = parse_written(*_event(None, DOC))
    assert (created.operation, updated.operation, deleted.operation) == (CREATE, UPDATE, DELETE)
    assert created.version == updated.version == AT, "a write's version is its new update_time, to the nanosecond"
    assert created.document == DOC and deleted.document is None
    assert deleted.version == parse_instant("2027-01-15T08:00:00.5Z"), "a delete's version is the event time"
    assert (created.project, created.database, created.path) == ("p", "(default)", "users/u1")


def test_an_event_without_either_document_asks_to_be_read_at_its_event_time() -> None:
    bare = parse_written(*_event(None, None))
    assert bare.incomplete and bare.document is None and bare.version == parse_instant("2027-01-15T08:00:00.5Z")


def test_an_event_of_another_type_or_without_the_document_attribute_is_refused_in_one_line() -> None:
    attributes, body = _event(DOC, None)
    with pytest.raises(UsageError, match="is not google.cloud.firestore.document.v1.written"):
        parse_written({**attributes, "type": "google.cloud.pubsub.topic.v1.messagePublished"}, body)
    with pytest.raises(UsageError, match="no document attribute"):
        parse_written({k: v for k, v in attributes.items() if k != "document"}, body)
    with pytest.raises(UsageError, match="not a document path"):
        parse_written({**attributes, "document": "users"}, body)
    with pytest.raises(CorruptData, match="runs past the end"):
        parse_written(attributes, b"\x0a\xff\x01garbage")


def test_instants_keep_all_nine_fractional_digits_and_any_offset() -> None:
    assert format_ns(parse_instant("2026-11-29T10:15:00.123456789Z")) == "2026-11-29T10:15:00.123456789Z"
    assert parse_instant("2026-11-29T11:15:00+01:00") == parse_instant("2026-11-29T10:15:00Z")
    with pytest.raises(UsageError, match="not an RFC 3339 instant"):
        parse_instant("yesterday")


def test_a_sealed_document_opens_only_for_its_own_project_path_and_version() -> None:
    dek = DataKey.generate()
    sealer = ChangeSealer("prj_1", dek)
    sealed = sealer.seal("users/u1", AT, DOC)
    assert DOC not in sealed and sealer.open("users/u1", AT, sealed) == DOC
    for project, path, version in (("prj_2", "users/u1", AT), ("prj_1", "users/u2", AT), ("prj_1", "users/u1", AT + 1)):
        with pytest.raises(WrongKeyOrTampered):
            ChangeSealer(project, dek).open(path, version, sealed)


def test_a_project_key_wrapped_by_the_organization_key_unwraps_only_for_that_project() -> None:
    kek = LocalKey(b"k" * 32)
    dek = DataKey.generate()
    wrapped = kek.wrap(dek, wrap_context("prj_1"))
    assert ChangeSealer.unwrap("prj_1", wrapped, kek).key_id == dek.key_id
    with pytest.raises(WrongKeyOrTampered):
        ChangeSealer.unwrap("prj_2", wrapped, kek)


def test_a_write_is_identified_by_database_path_and_version_not_by_its_delivery() -> None:
    assert change_id("(default)", "a/b", 5) == change_id("(default)", "a/b", 5)
    assert len({change_id("(default)", "a/b", 5), change_id("(default)", "a/b", 6), change_id("other", "a/b", 5),
                change_id("(default)", "a/c", 5)}) == 4


def test_the_last_version_in_the_window_wins_whatever_the_order_and_deletes_count() -> None:
    changes = [Change("a/1", 30, UPDATE, b"3"), Change("a/1", 10, CREATE, b"1"), Change("a/1", 20, UPDATE, b"2"),
               Change("a/2", 15, DELETE, None), Change("a/2", 5, CREATE, b"x"), Change("b/1", 12, CREATE, b"y"),
               Change("a/1/s/1", 12, CREATE, b"z")]
    latest = last_versions(changes, after=5, upto=25)
    assert {p: c.version for p, c in latest.items()} == {"a/1": 20, "a/2": 15, "b/1": 12, "a/1/s/1": 12}
    assert latest["a/2"].operation == DELETE
    assert set(last_versions(changes, after=0, upto=100, scope="a/1")) == {"a/1"}, "one document, not its children"
    assert set(last_versions(changes, after=0, upto=100, scope="a/1/s")) == {"a/1/s/1"}
    assert set(last_versions(changes, after=0, upto=100, scope="a")) == {"a/1", "a/2", "a/1/s/1"}


def test_a_scope_with_an_empty_segment_is_refused() -> None:
    assert check_scope("/users/") == "users" and check_scope(None) is None
    with pytest.raises(UsageError, match="empty path segment"):
        check_scope("users//u1")


def _fields(**values: int | str | dict[str, int]) -> bytes:
    d = Document.pb()(name="projects/p/databases/(default)/documents/a/b")
    for k, v in values.items():
        if isinstance(v, dict):
            for kk, vv in v.items():
                d.fields[k].map_value.fields[kk].integer_value = vv
        elif isinstance(v, int):
            d.fields[k].integer_value = v
        else:
            d.fields[k].string_value = v
    return bytes(d.SerializeToString())


def test_a_diff_names_added_removed_and_changed_fields_down_into_maps() -> None:
    from firebackup.pitr.history import diff

    before, after = _fields(a=1, b="x", m={"k": 1, "j": 2}), _fields(a=2, c="y", m={"k": 1, "j": 3})
    assert [(c["field"], c["change"]) for c in diff(before, after)] == [
        ("a", "changed"), ("b", "removed"), ("c", "added"), ("m.j", "changed")]
    assert diff(None, after)[0]["change"] == "added" and diff(before, before) == []


def test_a_documents_state_at_an_instant_is_its_last_change_else_the_base_copy() -> None:
    from firebackup.pitr.history import history, state_at

    changes = [Change("a/b", 20, UPDATE, b"v20"), Change("a/b", 30, DELETE, None), Change("a/c", 25, CREATE, b"x")]
    assert state_at("a/b", 15, changes, (10, b"base")) == b"base"
    assert state_at("a/b", 25, changes, (10, b"base")) == b"v20"
    assert state_at("a/b", 35, changes, (10, b"base")) is None
    assert [(v.at, v.source) for v in history("a/b", changes, [("bk1", 10, b"base")])] == [
        (10, "bk1"), (20, "capture"), (30, "capture")]


def _named(path: str) -> bytes:
    return bytes(Document.pb()(name=f"projects/p/databases/(default)/documents/{path}").SerializeToString())


def test_a_base_chunk_keeps_only_what_lies_in_scope_and_no_change_replaces() -> None:
    prefix = len("projects/p/databases/(default)/documents/")
    records = [_named(p) for p in ("a/1", "a/2", "a/1/s/1", "b/1", "ab/1")]
    assert base_filter(prefix, None, {}) is None, "nothing to drop: the records go through untouched"
    keep = base_filter(prefix, "a", {"a/2": Change("a/2", 9, DELETE, None)})
    assert keep is not None and keep(records) == [records[0], records[2]]
    one = base_filter(prefix, "a/1", {})
    assert one is not None and one(records) == [records[0]], "one document, not its subcollections"


def test_a_point_in_time_job_reads_its_changes_once_and_keeps_the_last_version_in_its_window() -> None:
    reads = []

    def changes() -> list[Change]:
        reads.append(1)
        return [Change("a/1", 10, CREATE, b"1"), Change("a/1", 20, UPDATE, b"2"), Change("a/1", 40, UPDATE, b"4"),
                Change("b/1", 15, CREATE, b"b"), Change("a/2", 5, CREATE, b"old")]

    def paths() -> list[str]:
        reads.append(2)
        return ["a/1", "a/1"]

    pit = PointInTime(at=30, base_read_time=5, scope="a", changes=changes, paths=paths)
    assert {p: c.version for p, c in pit.latest().items()} == {"a/1": 20}
    assert pit.latest() is pit.latest() and reads == [1]
    assert pit.replaced() == frozenset({"a/1"}) and pit.replaced() is pit.replaced() and reads == [1, 2]
