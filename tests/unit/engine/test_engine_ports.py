"""The concrete adapters satisfy the engine's ports.

mypy checks this file strictly (pyproject.toml): each assignment to a port-typed variable is
a structural check of the adapter against the port's signatures; isinstance repeats the
member check at run time. No server is contacted: gRPC channels connect lazily.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from firebackup.crypto import keys
from firebackup.crypto.keys import DataKey, KmsClient, KmsKey, LocalKey
from firebackup.engine import ports
from firebackup.engine.ports import (
    BackupRepository,
    ChunkUploadHandle,
    DocumentSource,
    SourceConnection,
    DocumentTarget,
    KeyEncryptionKey,
)
from firebackup.engine.repository import Repository
from firebackup.firestore.grpc import FirestoreConnection, open_firestore
from firebackup.format.manifest import Manifest
from firebackup.storage.memory import MemoryStorage

KMS_KEY = "projects/p/locations/l/keyRings/r/cryptoKeys/k"


class UnusedKms(KmsClient):
    """A KMS client for building a KmsKey that these tests never call."""

    def encrypt(self, request: dict[str, Any], *, retry: Any = None, timeout: float | None = None) -> Any:
        raise AssertionError("not called")

    def decrypt(self, request: dict[str, Any], *, retry: Any = None, timeout: float | None = None) -> Any:
        raise AssertionError("not called")


@pytest.fixture
def conn() -> Iterator[FirestoreConnection]:
    c = open_firestore("p", "db", emulator_host="127.0.0.1:9")
    yield c
    c.close()


def test_a_firestore_connection_is_a_source_connection_and_a_document_target(conn: FirestoreConnection) -> None:
    source: SourceConnection = conn
    target: DocumentTarget = conn
    assert isinstance(source, SourceConnection) and isinstance(target, DocumentTarget)
    assert source.documents_path == "projects/p/databases/db/documents"
    assert (target.database_path, target.emulator) == ("projects/p/databases/db", True)


def test_other_adapters_are_not_taken_for_a_source_connection_or_a_repository(conn: FirestoreConnection) -> None:
    assert not isinstance(MemoryStorage(), SourceConnection)
    assert not isinstance(MemoryStorage(), DocumentTarget)
    assert not isinstance(conn, BackupRepository)


def test_the_repository_is_a_backup_repository_whose_chunk_uploads_round_trip_through_the_port() -> None:
    repo: BackupRepository = Repository(MemoryStorage())
    assert isinstance(repo, BackupRepository)
    kek: KeyEncryptionKey = LocalKey(bytes(range(32)))
    dek = DataKey.generate()
    backup_id = repo.new_backup_id()
    upload: ChunkUploadHandle = repo.open_chunk_writer(backup_id, "c1", data_key=dek)
    with upload as writer:
        writer.add_many([b"one", b"two"])
    assert upload.entry is not None and upload.entry.records == 2
    assert upload.entry.key == repo.chunk_key(backup_id, "c1")
    assert upload.entry.key.startswith(repo.chunks_prefix(backup_id))
    repo.write_manifest(Manifest(backup_id=backup_id, chunks=[upload.entry], documents=2), dek, kek)
    manifest, data_key = repo.read_manifest(backup_id, kek)
    assert data_key == dek
    assert list(repo.iter_records(backup_id, manifest.chunks[0], data_key)) == [b"one", b"two"]
    assert repo.manifest_key(backup_id) in {info.key for info in repo.storage.list()}


def test_local_and_kms_keys_are_the_key_encryption_keys_the_ports_re_export() -> None:
    assert ports.KeyEncryptionKey is keys.KeyEncryptionKey
    local: KeyEncryptionKey = LocalKey(bytes(32))
    kms: KeyEncryptionKey = KmsKey(KMS_KEY, UnusedKms())
    assert isinstance(local, KeyEncryptionKey) and isinstance(kms, KeyEncryptionKey)
    assert kms.key_id == f"kms:{KMS_KEY}"


def test_the_firestore_and_the_generated_sources_are_document_sources(conn: FirestoreConnection) -> None:
    from firebackup.engine.demo import GeneratedSource
    from firebackup.engine.sources import FirestoreSource
    from firebackup.firestore.reader import DocRange

    firestore: DocumentSource = FirestoreSource(conn)
    generated: DocumentSource = GeneratedSource(3, collections=["c"])
    assert firestore.documents_path == conn.documents_path
    snapshot = generated.snapshot(generated.server_time())
    assert len(list(snapshot.responses(DocRange()))) == 3 == snapshot.count_documents()
    assert len(list(snapshot.responses(DocRange(), limit=2))) == 2
