"""A workload of real Firestore writes on the emulator and the CloudEvents Eventarc would send for them.

Writes go out in rounds: one Commit per round, each document at most once in it, so every write
has the round's commit time as its version instant. After each round the touched documents are
read back at that instant (the bytes Firestore stores, update_time included): the `value` of its
event; the previous version is the `old_value`.
"""

from __future__ import annotations

import datetime as dt
import http.client
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from google.cloud.firestore_v1.types import (
    BatchGetDocumentsRequest,
    BatchGetDocumentsResponse,
    CommitRequest,
    CommitResponse,
    Document,
    RunQueryRequest,
    RunQueryResponse,
    StructuredQuery,
    Value,
    Write,
)

from firebackup.firestore.documents import format_rfc3339
from firebackup.pitr.events import format_ns, version_ns
from infra.local import stack
from infra.local.function_server import FunctionServer, firestore_write_cloudevent

DocPb: Any = Document.pb()
ValuePb: Any = Value.pb()
WritePb: Any = Write.pb()
CommitPb: Any = CommitRequest.pb()
CommitResponsePb: Any = CommitResponse.pb()
GetPb: Any = BatchGetDocumentsRequest.pb()
GotPb: Any = BatchGetDocumentsResponse.pb()
QueryPb: Any = RunQueryRequest.pb()
AnswerPb: Any = RunQueryResponse.pb()


def paths(n: int) -> list[str]:
    """n document paths: root documents, subcollection documents and deeper ones, in three collections."""
    out = []
    for i in range(n):
        root = f"c{i % 3}/d{i // 4:04d}"
        kind = i % 4
        out.append(root if kind == 0 else f"{root}/sub/s{kind}" if kind < 3 else f"{root}/sub/s1/deep/x{i % 7}")
    return sorted(set(out))


def value(rng: random.Random, database: str, depth: int = 0) -> Any:
    """A random Firestore value of any type (maps and arrays nest once)."""
    v = ValuePb()
    kind = rng.randrange(11 if depth == 0 else 9)
    if kind == 0:
        v.null_value = 0
    elif kind == 1:
        v.boolean_value = rng.random() < 0.5
    elif kind == 2:
        v.integer_value = rng.randrange(-2**63, 2**63)
    elif kind == 3:
        v.double_value = rng.uniform(-1e9, 1e9)
    elif kind == 4:
        v.timestamp_value.seconds, v.timestamp_value.nanos = rng.randrange(0, 2**33), rng.randrange(0, 10**6) * 1000
    elif kind == 5:
        v.string_value = "".join(rng.choice("abcé€😀 ") for _ in range(rng.randrange(0, 30)))
    elif kind == 6:
        v.bytes_value = rng.randbytes(rng.randrange(0, 40))
    elif kind == 7:
        v.reference_value = f"{database}/documents/c0/d{rng.randrange(100):04d}"
    elif kind == 8:
        v.geo_point_value.latitude, v.geo_point_value.longitude = rng.uniform(-90, 90), rng.uniform(-180, 180)
    elif kind == 9:
        v.array_value.SetInParent()
        v.array_value.values.extend(value(rng, database, 1) for _ in range(rng.randrange(0, 4)))
    else:
        v.map_value.SetInParent()
        for k in range(rng.randrange(0, 4)):
            v.map_value.fields[f"k{k}"].CopyFrom(value(rng, database, 1))
    return v


@dataclass
class Event:
    """One write's event: path, version instant (ns), the new and previous Document bytes."""

    path: str
    version: int
    value: bytes | None
    old_value: bytes | None
    when: str  # the CloudEvent's time attribute


@dataclass
class Workload:
    """Writes rounds of random creates/updates/deletes to one emulator database and keeps their events."""

    conn: Any  # firebackup.firestore.grpc.FirestoreConnection
    seed: int = 7
    events: list[Event] = field(default_factory=list)
    commits: list[int] = field(default_factory=list)  # each round's commit time (ns)
    current: dict[str, bytes] = field(default_factory=dict)  # path -> stored Document bytes

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def run(self, docs: list[str], ops: int, per_round: int) -> None:
        """`ops` writes over `docs`, `per_round` at a time; creates when absent, else update or delete."""
        while ops > 0:
            take = self.rng.sample(docs, min(per_round, ops, len(docs)))
            self.round(take)
            ops -= len(take)

    def round(self, chosen: list[str]) -> int:
        db = self.conn.database_path
        writes, deleted = [], []
        for path in chosen:
            name = f"{db}/documents/{path}"
            if path in self.current and self.rng.random() < 0.3:
                writes.append(WritePb(delete=name))
                deleted.append(path)
                continue
            doc = DocPb(name=name)
            for f in range(self.rng.randrange(1, 6)):
                doc.fields[f"f{f}"].CopyFrom(value(self.rng, db))
            writes.append(WritePb(update=doc))
        answer = CommitResponsePb.FromString(self.conn.commit(CommitPb(database=db, writes=writes).SerializeToString()))
        at = version_ns(answer.commit_time.seconds, answer.commit_time.nanos)
        self.commits.append(at)
        stored = self.read([p for p in chosen if p not in deleted], at)
        for path in chosen:
            new = stored.get(path)
            if new is not None and new == self.current.get(path):
                continue  # a write that changed nothing keeps its update_time and fires no event
            when = format_ns(at)
            self.events.append(Event(path, at, new, self.current.get(path), when))
            if new is None:
                self.current.pop(path, None)
            else:
                self.current[path] = new
        return at

    def read(self, chosen: list[str], at: int) -> dict[str, bytes]:
        """The stored documents at instant `at` (ns), by path; absent ones left out."""
        if not chosen:
            return {}
        db = self.conn.database_path
        req = GetPb(database=db, documents=[f"{db}/documents/{p}" for p in chosen])
        req.read_time.seconds, req.read_time.nanos = divmod(at, 10**9)
        out = {}
        for raw in self.conn.batch_get_documents(req.SerializeToString()):
            got = GotPb.FromString(raw)
            if got.HasField("found"):
                out[got.found.name.split("/documents/", 1)[1]] = got.found.SerializeToString()
        return out


def read_all(conn: Any, at: int | None = None) -> dict[str, Any]:
    """Every document of the database (any depth) by path, as of instant `at` (ns) or now."""
    q = QueryPb(parent=conn.documents_path)
    q.structured_query.from_.add(all_descendants=True)
    if at is not None:
        q.read_time.seconds, q.read_time.nanos = divmod(at, 10**9)
    out = {}
    for raw in conn.run_query(q.SerializeToString()):
        r = AnswerPb.FromString(raw)
        if r.HasField("document"):
            out[r.document.name.split("/documents/", 1)[1]] = r.document
    return out


def fields_of(doc: Any) -> bytes:
    """A document's fields alone, serialized deterministically (names and timestamps differ after a restore)."""
    d = DocPb()
    d.fields.MergeFrom(doc.fields)
    return bytes(d.SerializeToString(deterministic=True))


def cloudevents(project: str, database: str, events: list[Event], *, duplicate: float, seed: int
                ) -> list[tuple[dict[str, str], bytes]]:
    """Each event as Eventarc sends it, a fraction of them twice (half under a new event id), shuffled."""
    rng = random.Random(seed)
    out = []
    for e in events:
        one = firestore_write_cloudevent(project, database, e.path, value=e.value, old_value=e.old_value, when=e.when)
        out.append(one)
        if rng.random() < duplicate:
            again = dict(one[0])
            if rng.random() < 0.5:
                again["ce-id"] = again["ce-id"] + "-redelivered"
            out.append((again, one[1]))
    rng.shuffle(out)
    return out


def post_all(server: FunctionServer, events: list[tuple[dict[str, str], bytes]], *, threads: int = 16) -> list[int]:
    """Deliver the events concurrently, each thread over one kept-alive connection; the status of each, in order."""
    local = threading.local()
    host, port = stack.HOST, server.service.port

    def send(event: tuple[dict[str, str], bytes]) -> int:
        for attempt in (1, 2):  # the server may close an idle kept-alive connection: open another once
            conn = getattr(local, "conn", None) or http.client.HTTPConnection(host, port, timeout=60)
            local.conn = conn
            try:
                conn.request("POST", "/", event[1], event[0])
                answer = conn.getresponse()
                answer.read()
                return answer.status
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(send, events))


def rfc3339(ns: int) -> str:
    return format_rfc3339(dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=ns // 1000))


def seed_project(plane: Any, source: str, location: str, key_text: str) -> tuple[str, str]:
    """An organization whose backup key is `key_text`, a project reading `source` with PITR on, writing segments
    to `location`; returns (org id, project row id)."""
    from firebackup.crypto.keys import LocalKey
    from firebackup.db.models import BackupKey, Organization, Project, StorageDestination, new_id
    from firebackup.services import pitr
    from firebackup.services.context import system_transactions

    tx = system_transactions(plane.factory, plane.ports)
    kek = LocalKey.from_text(key_text)
    with tx() as ctx:
        org = Organization(name="pitr")
        ctx.session.add(org)
        ctx.session.flush()
        kid = new_id("bkk")
        project = Project(org_id=org.id, name="source", gcp_project_id=source, auth_kind="service_account")
        dest = StorageDestination(org_id=org.id, name="location", kind="local", url=location)
        ctx.session.add_all([project, dest, BackupKey(id=kid, org_id=org.id, key_id=kek.key_id, key_sealed=(
            plane.ports.sealer.seal(key_text.strip().encode(), f"backup_keys.key_sealed:{kid}")))])
        ctx.session.flush()
        org_id, project_id, dest_id = org.id, project.id, dest.id
    assert plane.workers.kek(org_id).key_id == kek.key_id
    with tx() as ctx:
        pitr.enable(ctx, org_id, project_id, destination_id=dest_id, retention_days=7, enabled=True, kek=kek)
    return org_id, project_id
