"""verify(): every chunk read, hashed, authenticated and decoded; every problem reported."""

from __future__ import annotations

import json

import pytest
from google.cloud.firestore_v1.types.document import Document

from firebackup.crypto.keys import DataKey, LocalKey
from firebackup.engine.repository import Repository
from firebackup.engine.verify import verify
from firebackup.errors import BackupNotFound, WrongKeyOrTampered
from firebackup.format.manifest import Manifest
from firebackup.storage.memory import MemoryStorage

DocPb = Document.pb()


def doc_bytes(i: int, prefix: str = "users") -> bytes:
    d = DocPb()
    d.name = f"projects/p/databases/(default)/documents/{prefix}/u{i:05d}"
    d.fields["n"].integer_value = i
    d.fields["s"].string_value = "x" * (i % 50)
    return d.SerializeToString()


def make_backup(repo: Repository, kek=None, *, chunks: int = 3, per_chunk: int = 40, auth_users: int = 0,
                doc_records=None, manifest_documents: int | None = None, manifest_auth_users: int | None = None):
    backup_id = repo.new_backup_id()
    dek = DataKey.generate() if kek is not None else None
    entries = []
    for c in range(chunks):
        recs = doc_records(c) if doc_records else [doc_bytes(c * per_chunk + i) for i in range(per_chunk)]
        entries.append(repo.write_chunk(backup_id, f"d00000-{c:05d}", recs, kind="docs", data_key=dek))
    if auth_users:
        users = [json.dumps({"localId": f"u{i}", "email": f"u{i}@example.com"}).encode() for i in range(auth_users)]
        entries.append(repo.write_chunk(backup_id, "a00000", users, kind="auth", data_key=dek))
    docs = sum(e.records for e in entries if e.kind == "docs")
    manifest = Manifest(
        backup_id=backup_id, created_at="2026-11-28T02:00:00Z", read_time="2026-11-28T02:00:00Z",
        source={"project": "p", "database": "(default)"}, collections=["users"],
        documents=docs if manifest_documents is None else manifest_documents,
        auth_users=auth_users if manifest_auth_users is None else manifest_auth_users,
        compression="zstd", level=None, encrypted=dek is not None, chunks=entries,
    )
    repo.write_manifest(manifest, dek, kek)
    return backup_id, entries


@pytest.fixture
def repo() -> Repository:
    return Repository(MemoryStorage())


@pytest.fixture
def kek() -> LocalKey:
    return LocalKey.from_text(LocalKey.generate_text())


def flip_byte(repo: Repository, key: str, offset: int) -> None:
    data = bytearray(repo.storage.get(key))
    data[offset % len(data)] ^= 0x01
    repo.storage.put(key, bytes(data))


def test_an_intact_encrypted_backup_verifies_with_counts(repo, kek):
    backup_id, entries = make_backup(repo, kek, auth_users=7)
    report = verify(repo, backup_id, kek)
    assert report.ok is True
    assert report.problems == []
    assert report.chunks_checked == 4
    assert report.documents == 120
    assert report.auth_users == 7
    assert report.bytes_checked == sum(e.bytes_stored for e in entries)
    assert report.to_dict()["backup_id"] == backup_id


def test_an_intact_unencrypted_backup_verifies(repo):
    backup_id, _ = make_backup(repo, None)
    report = verify(repo, backup_id, None)
    assert (report.ok, report.documents, report.encrypted) == (True, 120, False)


@pytest.mark.parametrize("encrypted", [True, False])
def test_verify_rejects_a_flipped_byte_in_a_chunk_naming_the_chunk_and_frame(repo, kek, encrypted):
    backup_id, entries = make_backup(repo, kek if encrypted else None)
    flip_byte(repo, entries[1].key, -10)
    report = verify(repo, backup_id, kek if encrypted else None)
    assert report.ok is False
    assert report.problems, report
    assert all("d00000-00001" in p for p in report.problems if "documents readable" not in p)
    assert any("frame" in p for p in report.problems)
    assert any("sha256" in p for p in report.problems)
    assert all("\n" not in p for p in report.problems)


def test_verify_reports_every_damaged_chunk_not_just_the_first(repo, kek):
    backup_id, entries = make_backup(repo, kek, chunks=4)
    flip_byte(repo, entries[0].key, -5)
    flip_byte(repo, entries[3].key, -5)
    report = verify(repo, backup_id, kek)
    named = {cid for cid in ("d00000-00000", "d00000-00001", "d00000-00002", "d00000-00003")
             if any(cid in p for p in report.problems)}
    assert named == {"d00000-00000", "d00000-00003"}
    assert report.chunks_checked == 4


def test_verify_reports_a_missing_chunk(repo, kek):
    backup_id, entries = make_backup(repo, kek)
    repo.storage.delete(entries[2].key)
    report = verify(repo, backup_id, kek)
    assert report.ok is False
    assert any("d00000-00002" in p and "missing" in p for p in report.problems)
    assert report.documents == 80


def test_verify_reports_a_truncated_chunk(repo, kek):
    backup_id, entries = make_backup(repo, kek)
    data = repo.storage.get(entries[0].key)
    repo.storage.put(entries[0].key, data[: len(data) - 7])
    report = verify(repo, backup_id, kek)
    assert report.ok is False
    assert any("d00000-00000" in p and "size" in p for p in report.problems)
    assert any("d00000-00000" in p and ("truncat" in p.lower() or "end" in p.lower()) for p in report.problems)


def test_verify_reports_an_extra_object_among_the_chunks(repo):
    backup_id, _ = make_backup(repo)
    repo.storage.put(f"backups/{backup_id}/chunks/d00009-00000.fbc", b"stray")
    report = verify(repo, backup_id, None)
    assert report.ok is False
    assert report.problems == [f"extra object backups/{backup_id}/chunks/d00009-00000.fbc: not in the manifest"]


def test_verify_reports_a_chunk_swapped_in_from_another_position(repo, kek):
    backup_id, entries = make_backup(repo, kek)
    repo.storage.put(entries[0].key, repo.storage.get(entries[1].key))
    report = verify(repo, backup_id, kek)
    assert report.ok is False
    assert any("d00000-00000" in p for p in report.problems)


def test_verify_decodes_every_record_as_a_firestore_document(repo):
    def recs(c):
        good = [doc_bytes(i) for i in range(5)]
        return good[:2] + [b"\xff\xff\xff not a protobuf"] + good[2:] if c == 1 else good

    backup_id, _ = make_backup(repo, None, doc_records=recs)
    report = verify(repo, backup_id, None)
    assert report.ok is False
    assert report.problems == [
        "chunk d00000-00001: record 2: not a valid Firestore Document "
        + report.problems[0].split("Firestore Document ", 1)[1]
    ]
    assert report.documents == 16


def test_verify_compares_the_document_count_with_the_manifest(repo):
    backup_id, _ = make_backup(repo, None, manifest_documents=999)
    report = verify(repo, backup_id, None)
    assert report.ok is False
    assert report.problems == [f"backup {backup_id}: 120 documents readable, manifest says 999"]


def test_verify_compares_the_auth_user_count_with_the_manifest_and_counts_users_apart_from_documents(repo, kek):
    intact, _ = make_backup(repo, kek, auth_users=7)
    wrong, _ = make_backup(repo, kek, auth_users=7, manifest_auth_users=9)

    good, bad = verify(repo, intact, kek), verify(repo, wrong, kek)

    assert (good.ok, good.documents, good.auth_users) == (True, 120, 7)
    assert bad.problems == [f"backup {wrong}: 7 auth users readable, manifest says 9"]


def test_verify_of_an_unknown_backup_raises_backup_not_found(repo):
    with pytest.raises(BackupNotFound):
        verify(repo, "20260102T030405Z-0123abcd", None)


def test_verify_with_the_wrong_key_raises_wrong_key(repo, kek):
    backup_id, _ = make_backup(repo, kek)
    with pytest.raises(WrongKeyOrTampered, match="wrong key, or the data was altered"):
        verify(repo, backup_id, LocalKey.from_text(LocalKey.generate_text()))


def test_verify_reports_progress_in_documents_and_bytes(repo, kek):
    backup_id, entries = make_backup(repo, kek)
    seen = {"documents": 0, "bytes": 0, "totals": None}

    class Recorder:
        def __call__(self, documents=0, bytes=0):
            seen["documents"] += documents
            seen["bytes"] += bytes

        def set_total(self, documents=None, bytes=None):
            seen["totals"] = (documents, bytes)

    verify(repo, backup_id, kek, progress=Recorder())
    assert seen["documents"] == 120
    assert seen["bytes"] == sum(e.bytes_stored for e in entries)
    assert seen["totals"] == (120, sum(e.bytes_stored for e in entries))


def test_a_damaged_unencrypted_manifest_is_reported_as_a_problem(repo):
    backup_id, _ = make_backup(repo, None)
    flip_byte(repo, Repository.manifest_key(backup_id), 30)
    report = verify(repo, backup_id, None)
    assert report.ok is False
    assert len(report.problems) == 1
    assert report.problems[0].startswith("manifest: ")
    assert backup_id in report.problems[0]
