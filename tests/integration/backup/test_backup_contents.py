"""What a backup contains: every value type byte-exact, every depth, exactly the collections asked for."""

from __future__ import annotations

import math

import pytest

from firebackup.crypto.keys import LocalKey
from firebackup.engine.sources import FirestoreSource
from firebackup.engine.backup import BackupRequest, run_backup
from firebackup.firestore.grpc import open_firestore
from firebackup.firestore.documents import parse_rfc3339

from backup_helpers import Document, backup_records, commit, direct_documents, doc, put_many, rel_names

pytestmark = pytest.mark.integration


def _edge_documents(conn) -> list:
    """One document per edge of the Firestore value space (issue 3, item 10)."""
    docs = []

    d = Document(name=f"{conn.documents_path}/values/scalars")
    f = d.fields
    f["null"].null_value = 0
    f["true"].boolean_value = True
    f["false"].boolean_value = False
    f["int_min"].integer_value = -(2**63)
    f["int_max"].integer_value = 2**63 - 1
    f["zero"].integer_value = 0
    f["nan"].double_value = math.nan
    f["neg_zero"].double_value = -0.0
    f["inf"].double_value = math.inf
    f["neg_inf"].double_value = -math.inf
    f["tiny"].double_value = 5e-324
    f["ts_year1"].timestamp_value.seconds = -62135596800
    f["ts_year1"].timestamp_value.nanos = 1000
    f["ts_year9999"].timestamp_value.seconds = 253402300799
    f["ts_year9999"].timestamp_value.nanos = 999999000
    f["string"].string_value = "h\u00e9llo \u6f22\u5b57 \U0001f600 \x00 nul"
    f["empty_string"].string_value = ""
    f["empty_bytes"].bytes_value = b""
    f["bytes"].bytes_value = bytes(range(256))
    f["ref"].reference_value = f"{conn.documents_path}/values/other"
    f["geo"].geo_point_value.latitude = -90.0
    f["geo"].geo_point_value.longitude = 180.0
    f["field.with dots"].string_value = "dots"
    f["field with spaces"].string_value = "spaces"
    f["field`with`backticks"].string_value = "backticks"
    f["ch\u00e4mp \u6f22"].string_value = "unicode name"
    docs.append(d)

    d = Document(name=f"{conn.documents_path}/values/nested")
    m = d.fields["deep"].map_value
    for level in range(19):  # with the empty innermost map: 20 levels, the Firestore maximum
        m.fields["level"].integer_value = level
        m = m.fields["next"].map_value
    m.SetInParent()  # the innermost map is empty, not unset
    arr = d.fields["array_of_maps"].array_value
    for i in range(3):
        item = arr.values.add().map_value
        item.fields["i"].integer_value = i
        item.fields["tags"].array_value.values.add().string_value = f"t{i}"
    d.fields["empty_array"].array_value.SetInParent()
    d.fields["empty_map"].map_value.SetInParent()
    vec = d.fields["embedding"].map_value
    vec.fields["__type__"].string_value = "__vector__"
    for x in (0.25, -1.5, 3.0):
        vec.fields["value"].array_value.values.add().double_value = x
    docs.append(d)

    d = Document(name=f"{conn.documents_path}/values/big")
    d.fields["blob"].bytes_value = bytes(i % 251 for i in range(1_048_000))
    docs.append(d)

    d = Document(name=f"{conn.documents_path}/values/\u6587\u66f8 id \U0001f680")
    d.fields["unicode_id"].boolean_value = True
    docs.append(d)
    return docs


def test_every_value_type_round_trips_byte_exact_into_chunks(conn, repo):
    edge = _edge_documents(conn)
    for d in edge:
        commit(conn, put=[d])
    kek = LocalKey.from_text(LocalKey.generate_text())

    result = run_backup(BackupRequest(project=conn.project, chunk_docs=2), repo=repo, kek=kek, source=FirestoreSource(conn))

    stored = backup_records(repo, result.backup_id, kek)
    direct = direct_documents(conn, parse_rfc3339(result.read_time))
    assert stored == direct  # the exact bytes the server sends, in the same order
    assert len(stored) == len(edge) == result.documents
    assert result.encrypted is True
    assert result.chunks == 2  # 4 documents, 2 per chunk


def test_subcollections_five_deep_and_under_missing_parents_are_included(conn, repo):
    paths = [
        "a/1",
        "a/1/b/2",
        "a/1/b/2/c/3",
        "a/1/b/2/c/3/d/4",
        "a/1/b/2/c/3/d/4/e/5",
        "a/1/b/2/c/3/d/4/e/5/f/6",
        "ghost/missing/kids/k1",  # no document at ghost/missing
        "ghost/missing/kids/k1/more/m1",
        "a/absent/sub/s1",  # a's parent doc "absent" does not exist
    ]
    put_many(conn, [doc(conn, p, n=i) for i, p in enumerate(paths)])

    result = run_backup(BackupRequest(project=conn.project), repo=repo, source=FirestoreSource(conn))

    names = rel_names(conn, backup_records(repo, result.backup_id))
    assert sorted(names) == sorted(paths)
    assert result.collections == ["a", "ghost"]
    assert result.documents == len(paths)


def test_collections_option_restricts_to_those_roots_with_all_their_descendants(conn, repo):
    paths = [
        "users/u1", "users/u1/orders/o1", "users/missing/x/y",
        "users2/v1",  # shares a prefix with "users": must not leak in
        "user/w1",  # is a prefix of "users": must not leak in
        "orders/o1", "orders/o1/items/i1",
        "other/z",
    ]
    put_many(conn, [doc(conn, p) for p in paths])

    result = run_backup(BackupRequest(project=conn.project, collections=["users", "orders"], chunk_docs=2),
                        repo=repo, source=FirestoreSource(conn))

    names = rel_names(conn, backup_records(repo, result.backup_id))
    assert sorted(names) == sorted(["users/u1", "users/u1/orders/o1", "users/missing/x/y",
                                    "orders/o1", "orders/o1/items/i1"])
    assert sorted(result.collections) == ["orders", "users"]
    manifest, _ = repo.read_manifest(result.backup_id, None)
    assert manifest.extra["collection_documents"] == {"users": 3, "orders": 2}


def test_a_named_database_is_backed_up_apart_from_the_default_one(emulator_host, project_id, repo):
    default = open_firestore(project_id, emulator_host=emulator_host)
    named = open_firestore(project_id, "second-db", emulator_host=emulator_host)
    try:
        commit(default, put=[doc(default, "only/default")])
        commit(named, put=[doc(named, "only/named"), doc(named, "only/named/sub/child")])

        result = run_backup(BackupRequest(project=project_id, database="second-db"), repo=repo, source=FirestoreSource(named))

        records = backup_records(repo, result.backup_id)
        assert rel_names(named, records) == ["only/named", "only/named/sub/child"]
        manifest, _ = repo.read_manifest(result.backup_id, None)
        assert manifest.source == {"project": project_id, "database": "second-db"}
    finally:
        default.close()
        named.close()


def test_an_empty_database_gives_a_complete_backup_with_no_chunks(conn, repo):
    result = run_backup(BackupRequest(project=conn.project), repo=repo, source=FirestoreSource(conn))

    assert (result.documents, result.chunks, result.collections) == (0, 0, [])
    manifest, _ = repo.read_manifest(result.backup_id, None)
    assert manifest.chunks == [] and manifest.read_time == result.read_time
