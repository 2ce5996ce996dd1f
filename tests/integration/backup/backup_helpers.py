"""Helpers for backup tests: seeding the emulator, direct reads, reading a backup back."""

from __future__ import annotations

import datetime as dt
from typing import Iterable

from google.cloud.firestore_v1.types import document as document_pb
from google.cloud.firestore_v1.types import firestore as firestore_pb
from google.cloud.firestore_v1.types import write as write_pb

from firebackup.engine.repository import Repository
from firebackup.firestore.grpc import FirestoreConnection
from firebackup.firestore.reader import DocRange, SnapshotReader

Document = document_pb.Document._meta.pb
Write = write_pb.Write._meta.pb


def doc(conn: FirestoreConnection, path: str, **fields) -> "Document":
    """A Document protobuf at documents/<path>; keyword values become simple fields."""
    d = Document(name=f"{conn.documents_path}/{path}")
    for k, v in fields.items():
        if isinstance(v, bool):
            d.fields[k].boolean_value = v
        elif isinstance(v, int):
            d.fields[k].integer_value = v
        elif isinstance(v, str):
            d.fields[k].string_value = v
        else:
            raise TypeError(v)
    return d


def commit(conn: FirestoreConnection, *, put: Iterable = (), delete: Iterable[str] = ()) -> dt.datetime:
    """Apply writes atomically (documents to set, relative paths to delete); return commit time."""
    req = firestore_pb.CommitRequest._meta.pb(database=conn.database_path)
    for d in put:
        req.writes.append(Write(update=d))
    for path in delete:
        req.writes.append(Write(delete=f"{conn.documents_path}/{path}"))
    resp = firestore_pb.CommitResponse._meta.pb.FromString(conn.commit(req))
    return resp.commit_time.ToDatetime(tzinfo=dt.timezone.utc)


def put_many(conn: FirestoreConnection, docs: list) -> None:
    for i in range(0, len(docs), 400):
        commit(conn, put=docs[i : i + 400])


def seed_collection(conn: FirestoreConnection, n: int) -> list[str]:
    """n documents col/dNNN, every fourth with a subcollection document; their paths, sorted."""
    paths = []
    for i in range(n):
        paths.append(f"col/d{i:03d}")
        if i % 4 == 0:
            paths.append(f"col/d{i:03d}/sub/s")
    put_many(conn, [doc(conn, p, v=i) for i, p in enumerate(paths)])
    return sorted(paths)


def direct_documents(conn: FirestoreConnection, read_time: dt.datetime, rng: DocRange | None = None) -> list[bytes]:
    """What one plain RunQuery returns at read_time: the Document bytes, in order."""
    return list(SnapshotReader(conn, read_time).documents(rng or DocRange()))


def backup_records(repo: Repository, backup_id: str, kek=None, kind: str = "docs") -> list[bytes]:
    manifest, data_key = repo.read_manifest(backup_id, kek)
    out: list[bytes] = []
    for entry in manifest.chunks:
        if entry.kind == kind:
            out.extend(repo.iter_records(backup_id, entry, data_key))
    return out


def rel_names(conn: FirestoreConnection, docs: Iterable[bytes]) -> list[str]:
    from firebackup.firestore.documents import document_name

    prefix = conn.documents_path + "/"
    return [document_name(d)[len(prefix):] for d in docs]
