"""Prove a backup is intact: every chunk read, hashed, authenticated and decoded, counts compared.

verify() reports every problem it finds (one line each, naming the chunk and, where the
format can tell, the frame), not just the first. It raises only when it cannot start:
unknown backup (BackupNotFound), a key that does not open the manifest (WrongKeyOrTampered),
an unreadable key (BadKey).
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable

from firebackup.crypto.keys import DataKey, KeyEncryptionKey
from firebackup.engine.ports import BackupRepository
from firebackup.errors import (
    FireBackupError,
    IntegrityError,
    ObjectNotFound,
    StorageError,
    UnsupportedFormat,
    WrongKeyOrTampered,
)
from firebackup.format.manifest import ChunkEntry
from firebackup.progress import NoProgress, ProgressBar, ProgressCallback
from firebackup.storage.base import iter_bytes

DOCS = "docs"
AUTH = "auth"


@dataclass
class VerifyReport:
    backup_id: str
    ok: bool
    chunks_checked: int
    documents: int
    problems: list[str] = field(default_factory=list)
    auth_users: int = 0
    bytes_checked: int = 0
    encrypted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "ok": self.ok,
            "chunks_checked": self.chunks_checked,
            "documents": self.documents,
            "problems": list(self.problems),
            "auth_users": self.auth_users,
            "bytes_checked": self.bytes_checked,
            "encrypted": self.encrypted,
        }


@dataclass
class _ChunkResult:
    records: int = 0
    bytes_read: int = 0
    problems: list[str] = field(default_factory=list)


class _HashingReader:
    """Hashes and counts the bytes the chunk reader pulls, so the object is read only once."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        if data:
            self.sha.update(data)
            self.size += len(data)
        return data

    def readinto(self, buf: bytearray | memoryview) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        """Read whatever the chunk reader left (after an error, or trailing bytes)."""
        for piece in iter_bytes(self._stream):
            self.sha.update(piece)
            self.size += len(piece)

    def close(self) -> None:
        self._stream.close()


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _document_parser() -> Callable[[bytes], object]:
    from firebackup.firestore.protos import Document

    parse: Callable[[bytes], object] = Document.FromString  # a class generated at run time (protos.py)
    return parse


def _check_chunk(repo: BackupRepository, backup_id: str, entry: ChunkEntry, data_key: DataKey | None,
                 parse_doc: Callable[[bytes], object], progress: ProgressCallback) -> _ChunkResult:
    from firebackup.format.chunk import read_chunk

    result = _ChunkResult()
    cid, key, kind = entry.chunk_id, entry.key, entry.kind
    try:
        raw = repo.storage.open_read(key)
    except ObjectNotFound:
        result.problems.append(f"chunk {cid}: missing (no object at {key})")
        return result
    except StorageError as e:
        result.problems.append(_one_line(f"chunk {cid}: cannot read {key}: {e}"))
        return result

    reader = _HashingReader(raw)
    index = -1
    try:
        records = read_chunk(reader, backup_id=backup_id, chunk_id=cid, data_key=data_key, where=key)
        pending = 0
        for index, record in enumerate(records):
            if kind == AUTH:
                try:
                    user = json.loads(record)
                    if not isinstance(user, dict):
                        raise ValueError("not a JSON object")
                except ValueError as e:
                    result.problems.append(_one_line(
                        f"chunk {cid}: record {index}: not a valid auth user record ({e})"))
            else:
                try:
                    parse_doc(record)
                except Exception as e:  # protobuf's DecodeError; any failure is the record's fault
                    result.problems.append(_one_line(
                        f"chunk {cid}: record {index}: not a valid Firestore Document ({e})"))
            pending += 1
            if pending >= 1000:
                progress(documents=pending if kind != AUTH else 0)
                pending = 0
        if pending and kind != AUTH:
            progress(documents=pending)
        result.records = index + 1
    except IntegrityError as e:
        result.records = index + 1
        msg = _one_line(e)
        result.problems.append(msg if cid in msg else f"chunk {cid}: {msg}")
    except StorageError as e:
        result.records = index + 1
        result.problems.append(_one_line(f"chunk {cid}: reading {key} failed: {e}"))
    try:
        reader.drain()
    except StorageError as e:
        result.problems.append(_one_line(f"chunk {cid}: reading {key} failed: {e}"))
    finally:
        reader.close()
    result.bytes_read = reader.size
    progress(bytes=reader.size)

    if reader.size != entry.bytes_stored:
        result.problems.append(
            f"chunk {cid}: size {reader.size} bytes, manifest says {entry.bytes_stored}")
    digest = reader.sha.hexdigest()
    if digest != entry.sha256:
        result.problems.append(f"chunk {cid}: sha256 {digest} does not match the manifest's {entry.sha256}")
    if result.records != entry.records:
        result.problems.append(
            f"chunk {cid}: {result.records} records readable, manifest says {entry.records}")
    return result


def verify(repo: BackupRepository, backup_id: str, kek: KeyEncryptionKey | None, *,
           progress: ProgressCallback | None = None, workers: int = 4, allow_unencrypted: bool = False) -> VerifyReport:
    """Read every chunk of the backup and check it against its manifest; see the module docstring."""
    on_progress: ProgressCallback = progress if progress is not None else NoProgress()
    try:
        manifest, data_key = repo.read_manifest(backup_id, kek, allow_unencrypted=allow_unencrypted)
    except (WrongKeyOrTampered, UnsupportedFormat):
        raise  # a wrong key looks exactly like tampering; the caller must decide (exit 2)
    except IntegrityError as e:
        # A damaged manifest is a finding, not a usage error: report it like any other problem.
        return VerifyReport(backup_id=backup_id, ok=False, chunks_checked=0, documents=0,
                            problems=[_one_line(f"manifest: {e}")])
    entries = list(manifest.chunks)
    manifest_docs, manifest_auth = manifest.documents, manifest.auth_users
    if isinstance(on_progress, ProgressBar):
        on_progress.set_total(documents=manifest_docs, bytes=sum(e.bytes_stored for e in entries))

    problems: list[str] = []
    try:
        listed = repo.list_chunk_objects(backup_id)
    except FireBackupError as e:
        listed = None
        problems.append(_one_line(f"cannot list the chunks of {backup_id}: {e}"))

    seen_ids: set[str] = set()
    expected_keys: set[str] = set()
    for entry in entries:
        if entry.chunk_id in seen_ids:
            problems.append(f"chunk {entry.chunk_id}: listed twice in the manifest")
        seen_ids.add(entry.chunk_id)
        expected_keys.add(entry.key)
        if entry.key != repo.chunk_key(backup_id, entry.chunk_id):
            problems.append(f"chunk {entry.chunk_id}: manifest points at {entry.key}, outside this backup's layout")

    parse_doc = _document_parser()

    def check(entry: ChunkEntry) -> _ChunkResult:
        if listed is not None and entry.key not in listed:
            return _ChunkResult(problems=[f"chunk {entry.chunk_id}: missing (no object at {entry.key})"])
        return _check_chunk(repo, backup_id, entry, data_key, parse_doc, on_progress)

    # Chunks are independent; a few threads overlap storage latency with decoding.
    if workers > 1 and len(entries) > 1:
        with ThreadPoolExecutor(max_workers=min(workers, len(entries))) as pool:
            results = list(pool.map(check, entries))
    else:
        results = [check(e) for e in entries]

    documents = auth_users = bytes_checked = 0
    for entry, res in zip(entries, results):
        problems.extend(res.problems)
        bytes_checked += res.bytes_read
        if entry.kind == AUTH:
            auth_users += res.records
        else:
            documents += res.records

    if listed is not None:
        for key in sorted(set(listed) - expected_keys):
            problems.append(f"extra object {key}: not in the manifest")

    if documents != manifest_docs:
        problems.append(f"backup {backup_id}: {documents} documents readable, manifest says {manifest_docs}")
    if auth_users != manifest_auth:
        problems.append(f"backup {backup_id}: {auth_users} auth users readable, manifest says {manifest_auth}")

    return VerifyReport(
        backup_id=backup_id,
        ok=not problems,
        chunks_checked=len(entries),
        documents=documents,
        problems=problems,
        auth_users=auth_users,
        bytes_checked=bytes_checked,
        encrypted=data_key is not None,
    )

