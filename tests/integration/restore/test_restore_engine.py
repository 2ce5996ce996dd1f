"""Restore against the real Firestore emulator: every value type, each mode, dry-run, failures, targets."""

from __future__ import annotations

import math

import pytest
from google.cloud.firestore_v1.types import CommitRequest, Document, RunQueryRequest, RunQueryResponse, StructuredQuery, Write

from firebackup.crypto.keys import LocalKey
from firebackup.engine.backup import BackupRequest, run_backup
from firebackup.engine.repository import Repository
from firebackup.engine.restore import RestoreRequest, RestoreTask, restore_chunk, run_restore, source_database
from firebackup.engine.sources import FirestoreSource
from firebackup.errors import SourceUnavailable
from firebackup.firestore.grpc import open_firestore
from firebackup.firestore.batch_writer import BatchWriter
from firebackup.format.manifest import Manifest
from firebackup.storage import MemoryStorage

pytestmark = pytest.mark.integration

DocPb = Document.pb()
WritePb = Write.pb()
CommitPb = CommitRequest.pb()
ResponsePb = RunQueryResponse.pb()

ONE_MIB_BLOB = 1_048_487 - 200  # a 1 MiB document: the blob fills it up to Firestore's limit


# -- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def emulator(firestore_emulator, monkeypatch):
    return firestore_emulator.apply(monkeypatch)


@pytest.fixture
def conns(emulator, project_id):
    opened = []

    def connect(project: str, database: str = "(default)"):
        c = open_firestore(project, database, emulator_host=emulator.env["FIRESTORE_EMULATOR_HOST"])
        opened.append(c)
        return c

    yield connect
    for c in opened:
        c.close()


def commit(conn, docs: list) -> None:
    """Seed documents with plain Commit requests (independent of the code under test)."""
    for i in range(0, len(docs), 100):
        req = CommitPb(database=conn.database_path, writes=[WritePb(update=d) for d in docs[i : i + 100]])
        conn.commit(req.SerializeToString())


def read_all(conn) -> dict[str, object]:
    """Every document of the database (any depth), by path relative to documents/."""
    q = StructuredQuery(from_=[StructuredQuery.CollectionSelector(all_descendants=True)])
    out = {}
    for raw in conn.run_query(RunQueryRequest(parent=conn.documents_path, structured_query=q)):
        r = ResponsePb.FromString(raw)
        if r.HasField("document"):
            out[r.document.name.split("/documents/", 1)[1]] = r.document
    return out


def fields_bytes(doc) -> bytes:
    d = DocPb()
    d.fields.MergeFrom(doc.fields)
    return d.SerializeToString(deterministic=True)


def remapped(doc, src: str, dst: str):
    """The document as the restore should write it: references into src now point into dst."""
    d = DocPb()
    d.CopyFrom(doc)

    def walk(v):
        k = v.WhichOneof("value_type")
        if k == "reference_value" and v.reference_value.startswith(src + "/documents/"):
            v.reference_value = dst + v.reference_value[len(src) :]
        elif k == "map_value":
            for x in v.map_value.fields.values():
                walk(x)
        elif k == "array_value":
            for x in v.array_value.values:
                walk(x)

    for v in d.fields.values():
        walk(v)
    return d


def doc(conn, path: str, **values):
    d = DocPb(name=f"{conn.documents_path}/{path}")
    for k, v in values.items():
        if isinstance(v, str):
            d.fields[k].string_value = v
        elif isinstance(v, bool):
            d.fields[k].boolean_value = v
        else:
            d.fields[k].integer_value = v
    return d


def edge_corpus(conn) -> list:
    """One document per edge case of the value model, plus awkward ids, names and depths."""
    p = conn.documents_path
    d = DocPb(name=f"{p}/types/all")
    f = d.fields
    f["null"].null_value = 0
    f["true"].boolean_value = True
    f["false"].boolean_value = False
    f["int_min"].integer_value = -(2**63)
    f["int_max"].integer_value = 2**63 - 1
    f["nan"].double_value = math.nan
    f["neg_zero"].double_value = -0.0
    f["inf"].double_value = math.inf
    f["ninf"].double_value = -math.inf
    f["ts_min"].timestamp_value.seconds = -62135596800  # 0001-01-01T00:00:00.000001Z
    f["ts_min"].timestamp_value.nanos = 1000
    f["ts_max"].timestamp_value.seconds = 253402300799  # 9999-12-31T23:59:59.999999Z
    f["ts_max"].timestamp_value.nanos = 999_999_000
    f["text"].string_value = "ünïcødé 😀 \u0000 nul"
    f["empty_bytes"].bytes_value = b""
    f["bytes"].bytes_value = bytes(range(256))
    f["ref"].reference_value = f"{p}/types/other"
    f["ref_deep"].reference_value = f"{p}/a/1/b/2/c/3/d/4/e/5"
    f["ref_foreign"].reference_value = "projects/elsewhere/databases/(default)/documents/x/1"
    f["geo"].geo_point_value.latitude = -33.8688
    f["geo"].geo_point_value.longitude = 151.2093
    arr = f["array_of_maps"].array_value.values
    for i in range(3):
        m = arr.add().map_value.fields
        m["i"].integer_value = i
        m["r"].reference_value = f"{p}/types/other"
    f["empty_array"].array_value.SetInParent()
    f["empty_map"].map_value.SetInParent()
    v = f["nested"]
    for level in range(20):
        v = v.map_value.fields[f"level{level}"]
    v.string_value = "bottom"
    vec = f["vector"].map_value.fields
    vec["__type__"].string_value = "__vector__"
    for x in (0.5, -1.25, 3.0):
        vec["value"].array_value.values.add().double_value = x
    for name in ("a.b", "with space", "back`tick", "ünïcødé", "1starts_with_digit", "x-y", "`"):
        f[name].string_value = f"field named {name}"
    big = DocPb(name=f"{p}/types/one_mib")
    big.fields["blob"].bytes_value = b"\xab" * ONE_MIB_BLOB
    docs = [
        d,
        big,
        doc(conn, "types/other", x=1),
        doc(conn, "ids/ünïcødé id 😀", x=1),
        doc(conn, "ids/ spaces and .dots. ", x=2),
        doc(conn, "a/1/b/2/c/3/d/4/e/5", deep=True),  # every parent is missing
        doc(conn, "a/1/b/2/sibling/s", x=3),
    ]
    assert big.ByteSize() > 1_040_000
    return docs


def backup(src, *, kek=None, collections=None):
    repo = Repository(MemoryStorage())
    result = run_backup(BackupRequest(project=src.project, database=src.database, collections=collections),
                        repo=repo, source=FirestoreSource(src), kek=kek)
    return repo, result.backup_id


def assert_restored(src, dst, *, remap: bool = True, only=None):
    want = {k: v for k, v in read_all(src).items() if only is None or k.split("/")[0] in only}
    got = read_all(dst)
    assert sorted(got) == sorted(want)
    for path, d in want.items():
        expect = remapped(d, src.database_path, dst.database_path) if remap else d
        assert fields_bytes(got[path]) == fields_bytes(expect), path


# -- the value model and targets --------------------------------------------------------------


def test_restore_copies_every_value_type_exactly_into_another_project(conns, project_id):
    src, dst = conns(project_id), conns(project_id + "-to")
    commit(src, edge_corpus(src))
    repo, backup_id = backup(src)
    result = run_restore(RestoreRequest(backup_id=backup_id, project=dst.project), repo=repo, target=dst)
    assert (result.documents_written, result.documents_skipped, result.documents_failed) == (7, 0, 0)
    assert_restored(src, dst)
    got = read_all(dst)["types/all"].fields
    assert got["ref"].reference_value == f"{dst.documents_path}/types/other"
    assert got["array_of_maps"].array_value.values[1].map_value.fields["r"].reference_value.startswith(dst.documents_path)
    assert got["ref_foreign"].reference_value.startswith("projects/elsewhere/")
    assert math.isnan(got["nan"].double_value) and math.copysign(1, got["neg_zero"].double_value) == -1
    assert len(read_all(dst)["types/one_mib"].fields["blob"].bytes_value) == ONE_MIB_BLOB
    assert result.to_dict().keys() == {
        "backup_id", "documents_written", "documents_skipped", "documents_failed", "auth_users", "dry_run", "duration_s"
    }


def test_restore_keeps_references_pointing_at_the_source_when_asked(conns, project_id):
    src, dst = conns(project_id), conns(project_id + "-keep")
    commit(src, edge_corpus(src))
    repo, backup_id = backup(src)
    result = run_restore(RestoreRequest(backup_id=backup_id, project=dst.project, keep_references=True), repo=repo, target=dst)
    assert result.documents_written == 7 and result.documents_failed == 0
    assert_restored(src, dst, remap=False)
    assert read_all(dst)["types/all"].fields["ref"].reference_value == f"{src.documents_path}/types/other"


def test_restore_of_an_encrypted_backup_into_a_named_database(conns, project_id, tmp_path):
    src, dst = conns(project_id), conns(project_id + "-named", "restored-db")
    commit(src, edge_corpus(src))
    key_file = tmp_path / "key"
    key_file.write_text(LocalKey.generate_text())
    kek = LocalKey.from_file(key_file)
    repo, backup_id = backup(src, kek=kek)
    result = run_restore(RestoreRequest(backup_id=backup_id, project=dst.project, database="restored-db"), repo=repo, kek=kek, target=dst)
    assert result.documents_written == 7 and result.documents_failed == 0
    assert_restored(src, dst)
    assert read_all(dst)["types/all"].fields["ref"].reference_value.startswith(
        f"projects/{project_id}-named/databases/restored-db/documents/")
    assert read_all(conns(project_id + "-named")) == {}  # the (default) database stays empty


def test_restore_into_the_same_database_rewrites_it_unchanged(conns, project_id):
    src = conns(project_id)
    commit(src, edge_corpus(src))
    before = {k: fields_bytes(v) for k, v in read_all(src).items()}
    repo, backup_id = backup(src)
    commit(src, [doc(src, "types/other", x=999)])
    result = run_restore(RestoreRequest(backup_id=backup_id, project=project_id), repo=repo, target=src)
    assert result.documents_written == 7
    assert {k: fields_bytes(v) for k, v in read_all(src).items()} == before


# -- modes ------------------------------------------------------------------------------------


def seeded(conns, project_id, n: int = 30):
    src, dst = conns(project_id), conns(project_id + "-dst")
    commit(src, [doc(src, f"items/i{i:03d}", n=i, keep="backup") for i in range(n)])
    commit(src, [doc(src, "items/i000/sub/s", deep=True)])
    repo, backup_id = backup(src)
    return src, dst, repo, backup_id


def test_overwrite_mode_replaces_documents_entirely(conns, project_id):
    src, dst, repo, backup_id = seeded(conns, project_id)
    commit(dst, [doc(dst, "items/i001", n=-1, extra="only in target"), doc(dst, "items/zzz", x=1)])
    result = run_restore(RestoreRequest(backup_id=backup_id, project=dst.project, mode="overwrite"), repo=repo, target=dst)
    assert (result.documents_written, result.documents_skipped, result.documents_failed) == (31, 0, 0)
    got = read_all(dst)
    assert dict(got["items/i001"].fields) == dict(read_all(src)["items/i001"].fields)  # "extra" is gone
    assert "items/zzz" in got  # documents not in the backup are left alone


def test_skip_mode_leaves_existing_documents_untouched_and_counts_them(conns, project_id):
    src, dst, repo, backup_id = seeded(conns, project_id)
    commit(dst, [doc(dst, f"items/i{i:03d}", n=-i, mine=True) for i in (1, 5, 7)])
    result = run_restore(RestoreRequest(backup_id=backup_id, project=dst.project, mode="skip"), repo=repo, target=dst)
    assert (result.documents_written, result.documents_skipped, result.documents_failed) == (28, 3, 0)
    got = read_all(dst)
    assert len(got) == 31
    for i in (1, 5, 7):
        assert got[f"items/i{i:03d}"].fields["mine"].boolean_value is True
        assert got[f"items/i{i:03d}"].fields["n"].integer_value == -i
    assert got["items/i002"].fields["keep"].string_value == "backup"


def test_merge_mode_keeps_fields_that_are_not_in_the_backup(conns, project_id):
    src, dst = conns(project_id), conns(project_id + "-merge")
    odd = DocPb(name=f"{src.documents_path}/m/doc")
    for name in ("a.b", "with space", "back`tick", "ünïcødé", "plain"):
        odd.fields[name].string_value = "from backup"
    odd.fields["map"].map_value.fields["x"].integer_value = 1
    commit(src, [odd, doc(src, "m/new", n=1)])
    repo, backup_id = backup(src)
    existing = DocPb(name=f"{dst.documents_path}/m/doc")
    existing.fields["plain"].string_value = "old"
    existing.fields["target_only"].string_value = "kept"
    existing.fields["map"].map_value.fields["y"].integer_value = 2
    existing.fields["a"].map_value.fields["b"].string_value = "nested a.b, not the field named a.b"
    commit(dst, [existing])
    result = run_restore(RestoreRequest(backup_id=backup_id, project=dst.project, mode="merge"), repo=repo, target=dst)
    assert (result.documents_written, result.documents_failed) == (2, 0)
    got = read_all(dst)["m/doc"].fields
    for name in ("a.b", "with space", "back`tick", "ünïcødé", "plain"):
        assert got[name].string_value == "from backup", name
    assert got["target_only"].string_value == "kept"
    assert got["a"].map_value.fields["b"].string_value == "nested a.b, not the field named a.b"
    assert dict(got["map"].map_value.fields) == {"x": odd.fields["map"].map_value.fields["x"]}  # top-level field replaced whole
    assert read_all(dst)["m/new"].fields["n"].integer_value == 1


def test_dry_run_reads_everything_and_writes_nothing(conns, project_id):
    src, dst, repo, backup_id = seeded(conns, project_id)
    result = run_restore(RestoreRequest(backup_id=backup_id, project=dst.project, dry_run=True), repo=repo, target=dst)
    assert result.dry_run is True
    assert (result.documents_written, result.documents_failed) == (31, 0)
    assert read_all(dst) == {}


def test_dry_run_in_skip_mode_counts_the_documents_that_would_be_skipped(conns, project_id):
    src, dst, repo, backup_id = seeded(conns, project_id)
    commit(dst, [doc(dst, f"items/i{i:03d}", mine=True) for i in (2, 4)])
    result = run_restore(RestoreRequest(backup_id=backup_id, project=dst.project, mode="skip", dry_run=True), repo=repo, target=dst)
    assert (result.documents_written, result.documents_skipped, result.documents_failed) == (29, 2, 0)
    assert sorted(read_all(dst)) == ["items/i002", "items/i004"]
    assert all(d.fields["mine"].boolean_value for d in read_all(dst).values())


def test_collection_filter_restores_only_the_named_root_collections(conns, project_id):
    src, dst = conns(project_id), conns(project_id + "-filter")
    commit(src, [doc(src, "keep/1", x=1), doc(src, "keep/1/sub/2", x=2), doc(src, "drop/1", x=3),
                 doc(src, "drop/1/keep/3", x=4)])
    repo, backup_id = backup(src)
    result = run_restore(RestoreRequest(backup_id=backup_id, project=dst.project, collections=["keep"]), repo=repo, target=dst)
    assert (result.documents_written, result.documents_failed) == (2, 0)
    assert sorted(read_all(dst)) == ["keep/1", "keep/1/sub/2"]


# -- failures ---------------------------------------------------------------------------------


def handmade_backup(src_project: str, records: list[bytes]):
    """A backup whose chunk holds exactly `records` (so it can carry documents Firestore refuses)."""
    repo = Repository(MemoryStorage())
    backup_id = Repository.new_backup_id()
    entry = repo.write_chunk(backup_id, "d00000-00000", records, kind="docs")
    manifest = Manifest(backup_id=backup_id, source={"project": src_project, "database": "(default)"},
                        chunks=[entry], documents=len(records), collections=["c"])
    repo.write_manifest(manifest, None, None)
    return repo, backup_id


def test_failed_writes_are_counted_exactly_and_the_rest_is_written(conns, project_id):
    src, dst = conns(project_id), conns(project_id + "-fail")
    good = [doc(src, f"c/ok{i:03d}", n=i).SerializeToString() for i in range(40)]
    bad = [doc(src, f"c/__reserved{i}__", n=i).SerializeToString() for i in range(3)]  # ids Firestore refuses
    records = good[:10] + bad[:1] + good[10:30] + bad[1:] + good[30:]
    repo, backup_id = handmade_backup(project_id, records)
    result = run_restore(RestoreRequest(backup_id=backup_id, project=dst.project), repo=repo, target=dst)
    assert (result.documents_written, result.documents_skipped, result.documents_failed) == (40, 0, 3)
    assert sorted(e.split(":")[0] for e in result.errors) == [f"c/__reserved{i}__" for i in range(3)]
    assert len(read_all(dst)) == 40


def test_a_damaged_chunk_counts_its_unread_documents_as_failed(conns, project_id):
    src, dst = conns(project_id), conns(project_id + "-damaged")
    records = [doc(src, f"c/d{i:04d}", pad="x" * 200).SerializeToString() for i in range(2000)]
    repo, backup_id = handmade_backup(project_id, records)
    key = repo.chunk_key(backup_id, "d00000-00000")
    data = bytearray(repo.storage.get(key))
    data[-100] ^= 0xFF  # flip a byte near the end: the last frame fails its check
    repo.storage.put(key, bytes(data))
    result = run_restore(RestoreRequest(backup_id=backup_id, project=dst.project), repo=repo, target=dst)
    assert result.documents_written + result.documents_failed == 2000
    assert result.documents_failed > 0 and len(read_all(dst)) == result.documents_written
    assert any("d00000-00000" in e for e in result.errors)


def test_many_one_mib_documents_are_split_into_requests_the_server_accepts(conns, project_id):
    src, dst = conns(project_id), conns(project_id + "-big")
    docs = []
    for i in range(9):
        d = DocPb(name=f"{src.documents_path}/big/b{i}")
        d.fields["blob"].bytes_value = bytes([i]) * ONE_MIB_BLOB
        docs.append(d.SerializeToString())
    w = BatchWriter(dst, source_database=src.database_path)
    w.add_many(docs)
    stats = w.close()
    assert (stats.written, stats.failed) == (9, 0)
    got = read_all(dst)
    assert [got[f"big/b{i}"].fields["blob"].bytes_value[:1] for i in range(9)] == [bytes([i]) for i in range(9)]


def test_one_restore_chunk_written_twice_leaves_the_same_documents_and_counts(conns, project_id):
    src, dst, repo, backup_id = seeded(conns, project_id)
    manifest, data_key = repo.read_manifest(backup_id, None)
    entry = manifest.chunks[0]
    task = RestoreTask(backup_id=backup_id, chunk_id=entry.chunk_id, project=dst.project,
                       source_database=source_database(manifest))
    first = restore_chunk(task, entry, repo=repo, data_key=data_key, conn=dst)
    snapshot = {k: fields_bytes(v) for k, v in read_all(dst).items()}
    second = restore_chunk(task, entry, repo=repo, data_key=data_key, conn=dst)
    assert first.written == second.written == manifest.chunks[0].records
    assert {k: fields_bytes(v) for k, v in read_all(dst).items()} == snapshot


def test_an_unreachable_target_is_reported_in_one_line(emulator, project_id):
    repo, backup_id = handmade_backup(project_id, [DocPb(name=f"projects/{project_id}/databases/(default)/documents/c/1").SerializeToString()])
    dead = open_firestore("dead", emulator_host="127.0.0.1:9")
    try:
        with pytest.raises(SourceUnavailable) as e:
            run_restore(RestoreRequest(backup_id=backup_id, project="dead"), repo=repo, target=dead)
    finally:
        dead.close()
    assert "\n" not in str(e.value) and "127.0.0.1:9" in str(e.value)


# -- the edge corpus through every real backend -----------------------------------------------


@pytest.fixture(params=["file", "s3", "gs"])
def location(request, tmp_path, monkeypatch):
    """A fresh backup location on a real backend: a folder, a moto S3 bucket, a fake-gcs bucket."""
    import secrets

    bucket = f"rt-{secrets.token_hex(4)}"
    if request.param == "file":
        return f"file://{tmp_path}/backups"
    if request.param == "s3":
        import boto3

        env = request.getfixturevalue("s3_server").apply(monkeypatch).env
        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                     aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=bucket)
        return f"s3://{bucket}/team/backups"
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    env = request.getfixturevalue("gcs_server").apply(monkeypatch).env
    storage.Client(project="test", credentials=AnonymousCredentials(),
                   client_options={"api_endpoint": env["STORAGE_EMULATOR_HOST"]}).create_bucket(bucket)
    return f"gs://{bucket}/team/backups"


def test_every_value_type_round_trips_exactly_through_each_backend_into_another_database(
        conns, project_id, location):
    from firebackup.storage import open_storage

    src, dst = conns(project_id), conns(project_id, "copy")
    commit(src, edge_corpus(src))
    kek = LocalKey.from_text(LocalKey.generate_text())
    storage = open_storage(location)
    try:
        repo = Repository(storage)
        result = run_backup(BackupRequest(project=src.project, database=src.database), repo=repo,
                            source=FirestoreSource(src), kek=kek)
        assert result.documents == 7
        # A second Repository over a new connection: nothing is carried over in memory.
        restored = run_restore(RestoreRequest(backup_id=result.backup_id, project=dst.project, database=dst.database), repo=Repository(open_storage(location)), target=dst, kek=kek)
    finally:
        storage.close()
    assert (restored.documents_written, restored.documents_skipped, restored.documents_failed) == (7, 0, 0)
    assert_restored(src, dst)
