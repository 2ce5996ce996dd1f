"""Benchmark: FireBackup's backup and restore peak RSS at 1,000,000 documents (issue 3: < 300 MB).

The Firestore emulator cannot hold a million documents (it needs ~5 GB at 400k), so this runs the
real CLI against a minimal fake Firestore: a gRPC server in a separate process implementing only
what the engine calls, with bytes-in/bytes-out handlers:

  BatchGetDocuments  the snapshot's server time (answers "missing" + read_time)
  PartitionQuery     UNIMPLEMENTED, like the emulator (so the backup reads one kindless stream);
                     with --partition-query (bench/fanout.py) evenly spaced cut points, like Firestore
  ListCollectionIds  the generated root collections
  RunQuery           streams generated documents in name order, honouring start_at / end_at / limit
  BatchWrite         OK for every write, counted

Documents are generated on the fly (~740 bytes: 14-22 fields, nested map, array, timestamp,
bytes, plus per-document unique values), so the server's memory is flat too. Each CLI run is its
own process; peak RSS comes from wait4() on that process. Prints a table; never passes or fails.
Rates against a fake server on the same cores are NOT Firestore rates; the point is memory.

    .venv/bin/python bench/scale.py                        # 200,000 and 1,000,000 documents
    .venv/bin/python bench/scale.py --docs 20000 --docs 100000
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / ".venv" / "bin" / "firebackup"
_SVC = "/google.firestore.v1.Firestore/"
_STATS = "/bench.FakeFirestore/Stats"
COLLECTIONS = 4
POOL = 256
TEXT_WORDS = 2_000_000


# --------------------------------------------------------------------------------------------
# the fake server (runs in its own process: `scale.py --serve N`)
# --------------------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ld(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _timestamp(seconds: int, nanos: int) -> bytes:
    return b"\x08" + _varint(seconds) + (b"\x10" + _varint(nanos) if nanos else b"")


def _entry(key: str, value: bytes) -> bytes:
    """One Document.fields map entry (field 2 of Document): key 1, Value 2."""
    return _ld(2, _ld(1, key.encode()) + _ld(2, value))


class Corpus:
    """N documents coll<k>/doc<i> (names in Firestore order), built on demand from a pool of bodies."""

    def __init__(self, n: int, project: str = "P"):
        from google.cloud.firestore_v1.types import document as document_pb
        from google.protobuf import struct_pb2, timestamp_pb2

        self.n = n
        self.per = -(-n // COLLECTIONS)
        self.prefix = f"projects/{project}/databases/(default)/documents/"
        V = document_pb.Value._meta.pb
        rnd = random.Random(7)
        words = [
            "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(3, 9))) for _ in range(400)
        ]

        def text(k: int) -> str:
            return " ".join(rnd.choice(words) for _ in range(k))

        def value(depth: int = 0):
            kind = rnd.randrange(9 if depth < 1 else 7)
            if kind == 0:
                return V(string_value=text(rnd.randint(1, 3)))
            if kind == 1:
                return V(integer_value=rnd.randint(-(10**9), 10**12))
            if kind == 2:
                return V(double_value=rnd.random() * 1e4)
            if kind == 3:
                return V(boolean_value=rnd.random() < 0.5)
            if kind == 4:
                return V(timestamp_value=timestamp_pb2.Timestamp(seconds=rnd.randint(1.5e9, 1.8e9), nanos=rnd.randrange(10**9) // 1000 * 1000))
            if kind == 5:
                return V(null_value=struct_pb2.NULL_VALUE)
            if kind == 6:
                return V(bytes_value=rnd.randbytes(rnd.randint(4, 16)))
            if kind == 7:
                return V(map_value=document_pb.MapValue._meta.pb(fields={w: value(depth + 1) for w in rnd.sample(words, rnd.randint(2, 4))}))
            return V(array_value=document_pb.ArrayValue._meta.pb(values=[value(depth + 1) for _ in range(rnd.randint(1, 4))]))

        self.bodies: list[bytes] = []
        for _ in range(POOL):
            doc = document_pb.Document._meta.pb()
            for w in rnd.sample(words, rnd.randint(10, 18)):
                doc.fields[w].CopyFrom(value())
            # always a nested map, an array, a timestamp and bytes (issue 3's "realistic" shape)
            doc.fields["profile"].CopyFrom(V(map_value=document_pb.MapValue._meta.pb(
                fields={"name": V(string_value=text(2)), "age": V(integer_value=rnd.randint(1, 99)),
                        "tags": V(array_value=document_pb.ArrayValue._meta.pb(values=[V(string_value=w) for w in rnd.sample(words, 3)]))})))
            self.bodies.append(doc.SerializeToString())
        # Free text sliced from a long generated stream, so documents do not repeat within a
        # compressor's window and "bytes stored" is not flattered by the pool.
        self.text = " ".join(rnd.choices(words, k=TEXT_WORDS)).encode()
        self.mean_doc = sum(len(self.document(g, 1_700_000_000)) for g in range(2000)) / 2000
        self.names = [f"coll{k}" for k in range(COLLECTIONS)]

    def name(self, g: int) -> str:
        return f"{self.prefix}coll{g // self.per}/doc{g % self.per:07d}"

    def document(self, g: int, t: int) -> bytes:
        # Unique per document: its name, a sequence number, a random token and timestamps, so the
        # stored stream does not collapse into repeats of the pool.
        uniq = (
            _entry("seq", b"\x10" + _varint(g))
            + _entry("token", _ld(18, os.urandom(16)))
            + _entry("note", _ld(17, self.text[(off := g * 7_919_011 % (len(self.text) - 200)) : off + 30 + g % 90]))
            + _entry("updatedAt", _ld(10, _timestamp(t - g % 100000, (g * 7919) % 1000000 * 1000)))
        )
        ts = _timestamp(t - 86400 + g % 86400, 0)
        return _ld(1, self.name(g).encode()) + self.bodies[g % POOL] + uniq + _ld(3, ts) + _ld(4, ts)

    def position(self, name: str) -> int:
        """Index of the first generated document whose name sorts at or after `name`."""
        from firebackup.firestore.reader import name_sort_key

        key = name_sort_key(name)

        class _View:
            def __len__(_self):
                return self.n

            def __getitem__(_self, g):
                return name_sort_key(self.name(g))

        return bisect.bisect_left(_View(), key)

    def cuts(self, collection_id: str, count: int) -> list[str]:
        """Up to `count` evenly spaced document names splitting root collection `collection_id`."""
        if collection_id not in self.names:
            return []
        first = self.names.index(collection_id) * self.per
        size = min(self.per, self.n - first)
        return list(dict.fromkeys(self.name(first + i * size // (count + 1)) for i in range(1, count + 1)
                                  if i * size // (count + 1) > 0))


def serve(n: int, partition_query: bool = False) -> None:
    import grpc
    from google.cloud.firestore_v1.types import firestore as firestore_pb
    from google.cloud.firestore_v1.types import document as document_pb
    from google.cloud.firestore_v1.types import query as query_pb

    RunQueryRequest = firestore_pb.RunQueryRequest._meta.pb
    BatchWriteRequest = firestore_pb.BatchWriteRequest._meta.pb
    BatchGetRequest = firestore_pb.BatchGetDocumentsRequest._meta.pb
    corpus = Corpus(n)
    stats = {"writes": 0, "queries": 0, "streamed": 0, "calls": {}}

    def now() -> tuple[int, int]:
        t = time.time()
        return int(t), int(t % 1 * 1e6) * 1000

    def count(method: str) -> None:
        stats["calls"][method] = stats["calls"].get(method, 0) + 1

    def cursor_pos(cursor) -> int | None:
        if not cursor.values:
            return None
        g = corpus.position(cursor.values[0].reference_value)
        # before=True: at the name; before=False: just after it
        if not cursor.before and g < n and corpus.name(g) == cursor.values[0].reference_value:
            g += 1
        return g

    def run_query(request: bytes, context):
        count("RunQuery")
        req = RunQueryRequest.FromString(request)
        sq = req.structured_query
        start = cursor_pos(sq.start_at) if sq.HasField("start_at") else 0
        end = cursor_pos(sq.end_at) if sq.HasField("end_at") else n
        if sq.HasField("limit"):
            end = min(end, start + sq.limit.value)
        stats["queries"] += 1
        s, ns = now()
        read_time = _ld(3, _timestamp(s, ns))
        for g in range(start, end):
            stats["streamed"] += 1
            yield _ld(1, corpus.document(g, s)) + read_time
        if start >= end:
            yield read_time

    def batch_get(request: bytes, context):
        count("BatchGetDocuments")
        req = BatchGetRequest.FromString(request)
        s, ns = now()
        for name in req.documents:
            yield _ld(2, name.encode()) + _ld(4, _timestamp(s, ns))

    def batch_write(request: bytes, context) -> bytes:
        count("BatchWrite")
        k = len(BatchWriteRequest.FromString(request).writes)
        stats["writes"] += k
        s, ns = now()
        return (_ld(1, _ld(1, _timestamp(s, ns))) + b"\x12\x00") * k if k else b""

    def list_collection_ids(request: bytes, context) -> bytes:
        count("ListCollectionIds")
        return b"".join(_ld(1, c.encode()) for c in corpus.names)

    def partition(request: bytes, context) -> bytes:
        count("PartitionQuery")
        req = firestore_pb.PartitionQueryRequest._meta.pb.FromString(request)
        selectors = req.structured_query.from_
        cuts = corpus.cuts(selectors[0].collection_id, req.partition_count) if len(selectors) == 1 else []
        Cursor, Value = query_pb.Cursor._meta.pb, document_pb.Value._meta.pb
        resp = firestore_pb.PartitionQueryResponse._meta.pb(
            partitions=[Cursor(values=[Value(reference_value=c)]) for c in cuts])
        return resp.SerializeToString()

    def unimplemented(name: str):
        def handler(request: bytes, context):
            count(name)
            context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{name} is not implemented by the fake server")

        return handler

    def stats_rpc(request: bytes, context) -> bytes:
        return json.dumps(stats).encode()

    ident = {"request_deserializer": None, "response_serializer": None}
    handlers = {
        "RunQuery": grpc.unary_stream_rpc_method_handler(run_query, **ident),
        "BatchGetDocuments": grpc.unary_stream_rpc_method_handler(batch_get, **ident),
        "BatchWrite": grpc.unary_unary_rpc_method_handler(batch_write, **ident),
        "ListCollectionIds": grpc.unary_unary_rpc_method_handler(list_collection_ids, **ident),
        "PartitionQuery": grpc.unary_unary_rpc_method_handler(
            partition if partition_query else unimplemented("PartitionQuery"), **ident),
    }

    class Generic(grpc.GenericRpcHandler):
        def service(self, details):
            m = details.method
            if m == _STATS:
                return grpc.unary_unary_rpc_method_handler(stats_rpc, **ident)
            if m.startswith(_SVC):
                name = m[len(_SVC):]
                if name in handlers:
                    return handlers[name]
                return grpc.unary_unary_rpc_method_handler(unimplemented(name), **ident)
            return None

    opts = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=opts)
    server.add_generic_rpc_handlers((Generic(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(json.dumps({"port": port, "mean_doc": corpus.mean_doc}), flush=True)
    sys.stdin.read()  # the parent closes stdin to stop us
    server.stop(0)


# --------------------------------------------------------------------------------------------
# the benchmark driver
# --------------------------------------------------------------------------------------------


def fetch_stats(port: int) -> dict:
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = ch.unary_unary(_STATS, request_serializer=None, response_deserializer=None)
        return json.loads(call(b"", timeout=30))


def run_cli(args: list[str], env: dict) -> tuple[float, float, dict, str, int]:
    """Run the CLI as its own process: (seconds, peak RSS MB from wait4, JSON out, stderr tail, rc)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = subprocess.Popen([str(CLI), *args], stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        secs = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = out.read().decode(errors="replace")
        tail = err.read().decode(errors="replace")[-800:]
    try:
        result = json.loads(text) if text.strip() else {}
    except ValueError:
        result = {"raw": text[-400:]}
    return secs, usage.ru_maxrss / 1024, result, tail, proc.returncode


def one_size(n: int, work: Path, key: Path) -> dict:
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        hello = json.loads(server.stdout.readline())
        port = hello["port"]
        env = {**os.environ, "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{port}"}
        env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
        repo = work / f"repo-{n}"
        url = f"file://{repo}"
        b_secs, b_rss, b_out, b_err, b_rc = run_cli(
            ["backup", "--project", "P", "--to", url, "--key-file", str(key), "--json"], env
        )
        if b_rc != 0:
            raise SystemExit(f"backup of {n} documents failed (rc {b_rc}): {b_err}")
        after_backup = fetch_stats(port)
        backup_id = b_out.get("backup_id") or b_out.get("id")
        stored = sum(f.stat().st_size for f in repo.rglob("*") if f.is_file())
        r_secs, r_rss, r_out, r_err, r_rc = run_cli(
            ["restore", backup_id, "--from", url, "--project", "P2", "--key-file", str(key), "--json"], env
        )
        if r_rc != 0:
            raise SystemExit(f"restore of {n} documents failed (rc {r_rc}): {r_err}")
        after_restore = fetch_stats(port)
        with open(f"/proc/{server.pid}/status") as f:
            srv_rss = next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
        shutil.rmtree(repo, ignore_errors=True)
        backed = b_out.get("documents", after_backup["streamed"])
        return {
            "docs": n,
            "backed_up": backed,
            "written": after_restore["writes"],
            "backup_s": b_secs,
            "backup_rss": b_rss,
            "restore_s": r_secs,
            "restore_rss": r_rss,
            "stored": stored,
            "server_rss": srv_rss,
            "calls": after_restore["calls"],
            "mean_doc": hello["mean_doc"],
        }
    finally:
        if server.stdin:
            server.stdin.close()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, action="append", help="document counts (repeatable; default 200000 and 1000000)")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--partition-query", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve is not None:
        serve(a.serve, a.partition_query)
        return
    sizes = a.docs or [200_000, 1_000_000]
    work = Path(tempfile.mkdtemp(prefix="fb-scale-"))
    key = work / "key"
    subprocess.run([str(CLI), "keygen", "--out", str(key)], check=True, capture_output=True)
    rows = []
    try:
        for n in sizes:
            print(f"... {n:,} documents", file=sys.stderr, flush=True)
            rows.append(one_size(n, work, key))
            r = rows[-1]
            print(f"    backup {r['backup_s']:.1f}s, restore {r['restore_s']:.1f}s, calls {r['calls']}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print("FireBackup at scale: real CLI (encrypted, default codec) against a fake Firestore gRPC server")
    print(f"(generated documents, ~{rows[0]['mean_doc']:.0f} bytes each; peak RSS = wait4 ru_maxrss of the CLI process)")
    print()
    hdr = f"{'docs':>10} {'backup docs/s':>14} {'backup RSS MB':>14} {'restore docs/s':>15} {'restore RSS MB':>15} {'bytes stored':>14} {'backed up':>10} {'written':>10}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(
            f"{r['docs']:>10,} {r['docs'] / r['backup_s']:>14,.0f} {r['backup_rss']:>14.1f} "
            f"{r['written'] / r['restore_s']:>15,.0f} {r['restore_rss']:>15.1f} {r['stored']:>14,} "
            f"{r['backed_up']:>10,} {r['written']:>10,}"
        )
    print()
    print("Rates include process start-up and are against a fake server in Python sharing the same cores:")
    print("they are NOT Firestore rates. The point is memory: peak RSS should not grow with the document count.")
    print(f"(fake server peak RSS at the largest size: {rows[-1]['server_rss']:.0f} MB)")


if __name__ == "__main__":
    main()
