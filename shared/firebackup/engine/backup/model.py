"""The backup's data: what to back up, the plan its tasks share, one task, and the results."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from firebackup.crypto.keys import DataKey, KeyEncryptionKey
from firebackup.errors import UsageError
from firebackup.firestore.documents import format_rfc3339, parse_rfc3339
from firebackup.firestore.reader import DocRange, check_collection_id
from firebackup.format.manifest import ChunkEntry

DEFAULT_CHUNK_DOCS = 50_000
DEFAULT_CHUNK_BYTES = 64 << 20  # raw record bytes per chunk; bounds restore-side work per task
DEFAULT_PARTITIONS = 16  # PartitionQuery splits per root collection where the server has it
DEFAULT_THREADS = 4
AUTH_CHUNK_USERS = 10_000
AUTH_TASK = "auth"  # the task key of the Auth-users task (document tasks are keyed by their first chunk id)


def docs_chunk_id(partition: int, seq: int) -> str:
    """The id of document chunk `seq` of range `partition`: the one place the format of chunk ids is spelled."""
    return f"d{partition:05d}-{seq:05d}"


def auth_chunk_id(seq: int) -> str:
    return f"a{seq:05d}"


@dataclass
class BackupRequest:
    """What to back up and how; mirrors `firebackup backup` options."""

    project: str
    database: str = "(default)"
    collections: list[str] | None = None
    include_auth: bool = False
    compression: str | None = None
    level: int | None = None
    chunk_docs: int = DEFAULT_CHUNK_DOCS
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    partitions: int = DEFAULT_PARTITIONS
    # A chunk task hands on the rest of its range after this many chunks / seconds (None:
    # never). Locally one stream per range is fastest; a serverless worker sets a budget.
    chunks_per_task: int | None = None
    task_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.collections is not None:
            self.collections = list(dict.fromkeys(check_collection_id(c) for c in self.collections)) or None
        self.database = self.database or "(default)"
        if self.chunk_docs < 1 or self.chunk_bytes < 1:
            raise UsageError("chunk_docs and chunk_bytes must be positive")


@dataclass(frozen=True)
class ChunkTask:
    """One unit of work: documents of `range`, after cursor `after`, into chunk d<partition>-<seq>."""

    backup_id: str
    partition: int
    seq: int
    range: DocRange
    after: str | None = None

    @property
    def chunk_id(self) -> str:
        return docs_chunk_id(self.partition, self.seq)

    @property
    def key(self) -> str:
        """The task's key in a JobStore: its first chunk's id (unique, and the same on redelivery)."""
        return self.chunk_id

    def resumed(self, seq: int, after: str | None) -> "ChunkTask":
        return ChunkTask(self.backup_id, self.partition, seq, self.range, after)

    def to_dict(self) -> dict[str, Any]:
        return {"backup_id": self.backup_id, "partition": self.partition, "seq": self.seq,
                "range": self.range.to_dict(), "after": self.after}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ChunkTask":
        return cls(d["backup_id"], int(d["partition"]), int(d["seq"]), DocRange.from_dict(d["range"]), d.get("after"))


@dataclass
class BackupPlan:
    """Everything a chunk task needs besides its own coordinates (the data key stays in memory)."""

    backup_id: str
    project: str
    database: str
    read_time: dt.datetime
    created_at: dt.datetime
    codec: str
    level: int | None
    data_key: DataKey | None
    requested_collections: list[str] | None
    include_auth: bool
    chunk_docs: int
    chunk_bytes: int
    chunks_per_task: int | None = None
    task_seconds: float | None = None
    tasks: list[ChunkTask] = field(default_factory=list)

    @property
    def read_time_text(self) -> str:
        return format_rfc3339(self.read_time)

    def task_keys(self) -> list[str]:
        """The keys of the plan's first tasks, Auth included."""
        return [t.key for t in self.tasks] + ([AUTH_TASK] if self.include_auth else [])

    def to_dict(self, kek: KeyEncryptionKey | None = None) -> dict[str, Any]:
        """JSON-able form for a task queue or a DB row; the data key travels wrapped by kek."""
        if self.data_key is not None and kek is None:
            raise UsageError("an encrypted plan needs its KEK to be serialized (the data key is never stored in clear)")
        wrapped = None
        if self.data_key is not None and kek is not None:
            wrapped = base64.b64encode(kek.wrap(self.data_key, self.backup_id.encode("ascii"))).decode("ascii")
        return {
            "backup_id": self.backup_id, "project": self.project, "database": self.database,
            "read_time": self.read_time_text, "created_at": format_rfc3339(self.created_at),
            "codec": self.codec, "level": self.level, "wrapped_dek": wrapped,
            "kek_id": kek.key_id if wrapped and kek is not None else None,
            "requested_collections": self.requested_collections, "include_auth": self.include_auth,
            "chunk_docs": self.chunk_docs, "chunk_bytes": self.chunk_bytes,
            "chunks_per_task": self.chunks_per_task, "task_seconds": self.task_seconds,
            "tasks": [t.to_dict() for t in self.tasks],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], kek: KeyEncryptionKey | None = None) -> "BackupPlan":
        data_key = None
        if d.get("wrapped_dek"):
            if kek is None:
                raise UsageError(f"backup {d['backup_id']} is encrypted; its plan needs the KEK")
            data_key = kek.unwrap(base64.b64decode(d["wrapped_dek"]), d["backup_id"].encode("ascii"))
        return cls(
            backup_id=d["backup_id"], project=d["project"], database=d["database"],
            read_time=parse_rfc3339(d["read_time"]), created_at=parse_rfc3339(d["created_at"]),
            codec=d["codec"], level=d.get("level"), data_key=data_key,
            requested_collections=d.get("requested_collections"), include_auth=bool(d.get("include_auth")),
            chunk_docs=int(d["chunk_docs"]), chunk_bytes=int(d["chunk_bytes"]),
            chunks_per_task=d.get("chunks_per_task"), task_seconds=d.get("task_seconds"),
            tasks=[ChunkTask.from_dict(t) for t in d.get("tasks", [])],
        )


@dataclass
class ChunkResult:
    task: ChunkTask
    entries: list[ChunkEntry]  # one per chunk written, in order (empty: nothing left in the range)
    follow_up: ChunkTask | None
    documents: int
    bytes_raw: int


@dataclass
class BackupResult:
    """The CLI's `backup --json` object, key for key (cli.md)."""

    backup_id: str
    read_time: str
    documents: int
    collections: list[str]
    auth_users: int
    chunks: int
    bytes_raw: int
    bytes_stored: int
    compression: str
    encrypted: bool
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


BACKUP_RESULT_KEYS = tuple(f.name for f in dataclasses.fields(BackupResult))
