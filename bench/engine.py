"""Benchmark: FireBackup's backup and restore on the Firestore emulator, side by side in one run with

  * the emulator's own ceiling: raw RunQuery read rate and raw Commit / BatchWrite write rate,
    measured with plain gRPC from Python, several threads, bytes only (no client-library conversion);
  * the client library's stream() + to_dict() read rate (what a naive Python tool gets);
  * two public npm tools doing the same job on the same data: firestore-backfire and
    firestore-export-import (installed in bench/peers, pointed at the emulator).

Every tool runs as its own process; its peak RSS is its own VmHWM. Our backup and restore are
measured in paired rounds, each next to the raw rate (see paired_rounds). Prints a table; never
passes or fails on time.

    .venv/bin/python bench/engine.py --docs 100000          # the full run
    .venv/bin/python bench/engine.py --docs 5000 --no-peers # a quick one
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra.local import stack  # noqa: E402

PEERS = ROOT / "bench" / "peers"
COLLECTIONS = ("users", "orders", "events", "products")
SOURCE = "bench-src"
# Off by default: firestore-backfire 2.6 crashes (stack overflow) on documents with reference fields.
REFERENCES = False
_SVC = "/google.firestore.v1.Firestore/"


@dataclass
class Row:
    tool: str
    operation: str
    documents: int | None = None
    seconds: float | None = None
    rss_mb: float | None = None
    note: str = ""
    ceiling: float | None = field(default=None, repr=False)
    in_process_s: float | None = None  # the tool's own duration_s, start-up excluded

    @property
    def rate(self) -> float | None:
        if self.documents is None or not self.seconds:
            return None
        return self.documents / self.seconds

    @property
    def in_process_rate(self) -> float | None:
        if not self.documents or not self.in_process_s:
            return None
        return self.documents / self.in_process_s


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- raw gRPC

def _pb():
    from google.cloud.firestore_v1.types import document, firestore, query, write

    return document.Document.pb(), firestore.CommitRequest.pb(), firestore.BatchWriteRequest.pb(), \
        firestore.RunQueryRequest.pb(), query.StructuredQuery.pb(), write.Write.pb(), document.Value.pb()


def _channel(host: str):
    import grpc

    return grpc.insecure_channel(host, options=[("grpc.max_send_message_length", -1),
                                                ("grpc.max_receive_message_length", -1)])


_AUTH = (("authorization", "Bearer owner"),)


def db_path(project: str, database: str = "(default)") -> str:
    return f"projects/{project}/databases/{database}"


def generate_documents(n: int, project: str, seed: int = 7) -> list[bytes]:
    """n Firestore-like Document messages (serialized), spread over COLLECTIONS; ~15 fields each."""
    Document, *_ = _pb()
    rnd = random.Random(seed)
    base = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
    prefix = db_path(project) + "/documents/"
    out = []
    for i in range(n):
        coll = COLLECTIONS[i % len(COLLECTIONS)]
        d = Document()
        d.name = f"{prefix}{coll}/d{i:08d}"
        f = d.fields
        f["name"].string_value = f"{rnd.choice(words).title()} {rnd.choice(words).title()}"
        f["email"].string_value = f"user{i}@example.com"
        f["age"].integer_value = rnd.randint(18, 90)
        f["score"].double_value = rnd.random() * 1000
        f["active"].boolean_value = rnd.random() < 0.7
        f["deleted_at"].null_value = 0
        ts = base + rnd.randint(0, 10 ** 8)
        f["created"].timestamp_value.seconds = int(ts)
        f["created"].timestamp_value.nanos = rnd.randint(0, 999_999) * 1000
        f["home"].geo_point_value.latitude = rnd.uniform(-90, 90)
        f["home"].geo_point_value.longitude = rnd.uniform(-180, 180)
        f["avatar"].bytes_value = rnd.randbytes(rnd.randint(16, 64))
        tags = f["tags"].array_value.values
        for _ in range(rnd.randint(1, 5)):
            tags.add().string_value = rnd.choice(words)
        addr = f["address"].map_value.fields
        addr["city"].string_value = rnd.choice(words).title()
        addr["zip"].string_value = f"{rnd.randint(10000, 99999)}"
        geo = addr["geo"].map_value.fields
        geo["lat"].double_value = rnd.uniform(-90, 90)
        geo["lng"].double_value = rnd.uniform(-180, 180)
        f["items"].array_value.SetInParent()  # an empty array is still a value
        items = f["items"].array_value.values
        for k in range(rnd.randint(0, 3)):
            m = items.add().map_value.fields
            m["sku"].string_value = f"sku-{rnd.randint(1, 500)}"
            m["qty"].integer_value = k + 1
            m["price"].double_value = round(rnd.uniform(1, 200), 2)
        f["notes"].string_value = " ".join(rnd.choice(words) for _ in range(rnd.randint(5, 30)))
        if REFERENCES:
            f["friend"].reference_value = f"{prefix}users/d{rnd.randrange(0, n, len(COLLECTIONS)):08d}"
        f["version"].integer_value = rnd.randint(1, 1 << 40)
        out.append(d.SerializeToString())
    return out


def _write_batches(docs: list[bytes], project: str, kind: str, batch: int = 500) -> list[bytes]:
    """Serialized Commit or BatchWrite requests, each writing `batch` whole documents."""
    Document, CommitRequest, BatchWriteRequest, *_ , Write, _v = _pb()
    reqs = []
    for start in range(0, len(docs), batch):
        r = CommitRequest() if kind == "commit" else BatchWriteRequest()
        r.database = db_path(project)
        for raw in docs[start:start + batch]:
            w = r.writes.add()
            w.update.MergeFromString(raw)
        reqs.append(r.SerializeToString())
    return reqs


def raw_write(host: str, docs: list[bytes], project: str, kind: str, threads: int) -> Row:
    """Write docs with raw Commit or BatchWrite calls from `threads` threads; bytes in, bytes out."""
    reqs = _write_batches(docs, project, kind)
    ch = _channel(host)
    call = ch.unary_unary(_SVC + ("Commit" if kind == "commit" else "BatchWrite"))
    it = iter(reqs)
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                req = next(it, None)
            if req is None:
                return
            call(req, metadata=_AUTH, timeout=300)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(worker) for _ in range(threads)]:
            f.result()
    secs = time.perf_counter() - t0
    ch.close()
    name = "Commit" if kind == "commit" else "BatchWrite"
    return Row("emulator (raw gRPC)", f"write: {name} x500, {threads} threads", len(docs), secs)


def _delete_all(host: str, docs: list[bytes]) -> None:
    """Delete the given documents (raw Commit), so the measured runs start from an empty database."""
    Document, CommitRequest, *_ = _pb()
    ch = _channel(host)
    call = ch.unary_unary(_SVC + "Commit")
    for start in range(0, len(docs), 500):
        r = CommitRequest()
        r.database = db_path(SOURCE)
        for raw in docs[start:start + 500]:
            d = Document()
            d.MergeFromString(raw)
            r.writes.add().delete = d.name
        call(r.SerializeToString(), metadata=_AUTH, timeout=300)
    ch.close()


def _range_queries(project: str, splits: int, n: int) -> list[bytes]:
    """One RunQuery per (collection, id range): the whole data set in `splits` ranges per collection."""
    _d, _c, _b, RunQueryRequest, StructuredQuery, _w, _v = _pb()
    prefix = db_path(project) + "/documents/"
    out = []
    bounds = [round(n * k / splits) for k in range(splits + 1)]
    for coll in COLLECTIONS:
        for lo, hi in zip(bounds, bounds[1:]):
            r = RunQueryRequest()
            r.parent = db_path(project) + "/documents"
            q = r.structured_query
            q.from_.add().collection_id = coll
            comp = q.where.composite_filter
            comp.op = StructuredQuery.CompositeFilter.Operator.AND
            for op, idx in ((StructuredQuery.FieldFilter.Operator.GREATER_THAN_OR_EQUAL, lo),
                            (StructuredQuery.FieldFilter.Operator.LESS_THAN, hi)):
                ff = comp.filters.add().field_filter
                ff.field.field_path = "__name__"
                ff.op = op
                ff.value.reference_value = f"{prefix}{coll}/d{idx:08d}"
            o = q.order_by.add()
            o.field.field_path = "__name__"
            out.append(r.SerializeToString())
    return out


def raw_read(host: str, project: str, threads: int, n: int) -> Row:
    """Read every document with raw RunQuery streams from `threads` threads; count, never decode."""
    reqs = _range_queries(project, max(1, threads), n)
    ch = _channel(host)
    call = ch.unary_stream(_SVC + "RunQuery")
    it = iter(reqs)
    lock = threading.Lock()

    def worker() -> int:
        count = 0
        while True:
            with lock:
                req = next(it, None)
            if req is None:
                return count
            for resp in call(req, metadata=_AUTH, timeout=600):
                if resp[:1] == b"\n":  # field 1 (document) comes first when present
                    count += 1

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(f.result() for f in [pool.submit(worker) for _ in range(threads)])
    secs = time.perf_counter() - t0
    ch.close()
    return Row("emulator (raw gRPC)", f"read: RunQuery, {threads} threads", total, secs)


def count_documents(host: str, project: str) -> int:
    """All documents in a project's default database (root collections of the bench), raw."""
    ch = _channel(host)
    call = ch.unary_stream(_SVC + "RunQuery")
    _d, _c, _b, RunQueryRequest, StructuredQuery, _w, _v = _pb()
    total = 0
    for coll in COLLECTIONS:
        r = RunQueryRequest()
        r.parent = db_path(project) + "/documents"
        r.structured_query.from_.add().collection_id = coll
        r.structured_query.select.fields.add().field_path = "__name__"
        total += sum(1 for resp in call(r.SerializeToString(), metadata=_AUTH, timeout=600) if resp[:1] == b"\n")
    ch.close()
    return total


def client_library_read(host: str, project: str, limit: int) -> Row:
    """The client library's stream() + to_dict() over one collection, one thread (reference point)."""
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    from google.cloud import firestore

    db = firestore.Client(project=project)
    n = 0
    t0 = time.perf_counter()
    for snap in db.collection(COLLECTIONS[0]).limit(limit).stream():
        snap.to_dict()
        n += 1
    secs = time.perf_counter() - t0
    db.close()
    return Row("google-cloud-firestore", "read: stream() + to_dict(), 1 thread", n, secs)


# ----------------------------------------------------------------------------- tools as processes

def run_measured(argv: list[str], *, env: dict[str, str], cwd: Path, timeout: float) -> tuple[float, float, str, str, int]:
    """Run a command; return (seconds, peak RSS MB of the process (VmHWM), stdout, stderr tail, status)."""
    t0 = time.perf_counter()
    out_f = tempfile.TemporaryFile()
    err_f = tempfile.TemporaryFile()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out_f, stderr=err_f, stdin=subprocess.DEVNULL)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    peak = [0]
    poller = threading.Thread(target=_poll_hwm, args=(proc.pid, peak), daemon=True)
    poller.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    poller.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    secs = time.perf_counter() - t0
    out_f.seek(0)
    err_f.seek(0)
    out = out_f.read().decode(errors="replace")
    err = err_f.read().decode(errors="replace")
    tail = " | ".join(err.strip().splitlines()[-3:])[-400:]
    # ru_maxrss is no good here: Linux starts a forked child's high-water mark at the parent's RSS,
    # and this parent holds the generated corpus. VmHWM is reset by exec, so it is the tool's own.
    return secs, (peak[0] or usage.ru_maxrss) / 1024, out, tail, proc.returncode


def _poll_hwm(pid: int, peak: list[int]) -> None:
    """Keep peak[0] at the process's VmHWM (KiB) until it exits."""
    path = f"/proc/{pid}/status"
    while True:
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
                        break
                else:
                    return  # a zombie has no memory lines: it has exited
        except OSError:
            return
        time.sleep(0.05)


def _json_tail(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return {}


def clear_database(host: str, project: str) -> None:
    """Delete every document of a project's default database (the emulator's own reset endpoint)."""
    import urllib.request

    url = f"http://{host}/emulator/v1/projects/{project}/databases/(default)/documents"
    urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=600).read()


def our_backup(work: Path, env: dict[str, str], key: Path, loc: str, timeout: float) -> tuple[Row, str | None]:
    """One `firebackup backup` process; (row, backup id or None)."""
    py = sys.executable
    secs, rss, out, err, rc = run_measured(
        [py, "-m", "firebackup.cli", "backup", "--project", SOURCE, "--to", loc, "--key-file", str(key), "--json"],
        env=env, cwd=ROOT, timeout=timeout)
    res = _json_tail(out)
    if rc != 0 or not res:
        return Row("firebackup", "backup", None, secs, rss, f"FAILED (exit {rc}): {err}"), None
    return Row("firebackup", "backup (zstd, AES-GCM, file://)", res.get("documents"), secs, rss,
               f"in-process {res.get('duration_s')} s; {res.get('bytes_stored')} bytes stored",
               in_process_s=res.get("duration_s")), res["backup_id"]


def our_restore(host: str, env: dict[str, str], key: Path, loc: str, backup_id: str, target: str, n: int,
                timeout: float) -> Row:
    """One `firebackup restore` process into an empty database; the documents that landed are counted."""
    py = sys.executable
    secs, rss, out, err, rc = run_measured(
        [py, "-m", "firebackup.cli", "restore", backup_id, "--from", loc, "--project", target,
         "--key-file", str(key), "--json"], env=env, cwd=ROOT, timeout=timeout)
    res = _json_tail(out)
    if rc != 0 or not res:
        return Row("firebackup", "restore", None, secs, rss, f"FAILED (exit {rc}): {err}")
    landed = count_documents(host, target)
    return Row("firebackup", "restore", res.get("documents_written"), secs, rss,
               f"in-process {res.get('duration_s')} s; {landed}/{n} documents in target",
               in_process_s=res.get("duration_s"))


def raw_create(host: str, docs: list[bytes], project: str, threads: int) -> Row:
    """The write ceiling: raw BatchWrite of pre-built requests creating docs in an empty database."""
    row = raw_write(host, docs, project, "batchwrite", threads)
    landed = count_documents(host, project)
    row.operation = f"write: BatchWrite x500 into an empty database, {threads} threads"
    row.note = f"{landed}/{len(docs)} documents in target"
    return row


def paired_rounds(host: str, work: Path, env: dict[str, str], n: int, rounds: int, threads: int,
                  timeout: float, warm_bursts: int) -> tuple[list[Row], list[Row], list[Row], list[Row]]:
    """Our backup and restore, each right next to the emulator's raw rate, `rounds` times.

    The emulator's own speed drifts by up to 2x within a run (JIT, garbage collection as its
    heap grows), so a ceiling measured minutes away from the tool says little. Each round
    measures the raw rate and ours back to back under the same conditions: reads of the same
    source, and writes of the same documents into an empty database (a restore creates
    documents), cleared afterwards. The order alternates between rounds so drift cannot
    favour one side. Before each half, unmeasured raw bursts warm the emulator's read and
    write paths up: its JIT takes a few hundred thousand writes to settle (measured: 6-9k
    docs/s for the first 100k, 20-30k from ~400k on). Returns (raw reads, our backups, raw
    writes, our restores), one per round.
    """
    py = sys.executable
    key = work / "bench.key"
    subprocess.run([py, "-m", "firebackup.cli", "keygen", "--out", str(key)], env=env, cwd=ROOT,
                   check=True, capture_output=True)
    loc = (work / "ours").resolve().as_uri()
    raw_reads: list[Row] = []
    backups: list[Row] = []
    backup_id = None
    say(f"warming the emulator's read path up ({warm_bursts} unmeasured reads of the source) ...")
    for _ in range(warm_bursts):
        raw_read(host, SOURCE, threads, n)
    for r in range(rounds):
        say(f"round {r + 1}/{rounds}: raw RunQuery and firebackup backup ...")
        for side in (("raw", "ours") if r % 2 == 0 else ("ours", "raw")):
            if side == "raw":
                one, many = raw_read(host, SOURCE, 1, n), raw_read(host, SOURCE, threads, n)
                raw_reads.append(max(one, many, key=lambda x: x.rate or 0))
            else:
                row, bid = our_backup(work, env, key, loc, timeout)
                backups.append(row)
                backup_id = bid or backup_id
    raw_writes: list[Row] = []
    restores: list[Row] = []
    if backup_id is None:
        return raw_reads, backups, raw_writes, restores
    raw_docs = generate_documents(n, "bench-raw")
    say(f"warming the emulator's write path up ({warm_bursts} unmeasured bursts of {n} writes) ...")
    for _ in range(warm_bursts):
        raw_create(host, raw_docs, "bench-raw", threads)
        clear_database(host, "bench-raw")
    for r in range(rounds):
        say(f"round {r + 1}/{rounds}: raw BatchWrite and firebackup restore ...")
        for side in (("raw", "ours") if r % 2 == 0 else ("ours", "raw")):
            if side == "raw":
                raw_writes.append(raw_create(host, raw_docs, "bench-raw", threads))
                clear_database(host, "bench-raw")
            else:
                restores.append(our_restore(host, env, key, loc, backup_id, "bench-ours", n, timeout))
                clear_database(host, "bench-ours")
    return raw_reads, backups, raw_writes, restores


def emulator_jvm_options(n: int, rounds: int, warm: int, peers: bool) -> str:
    """JVM options for the emulator: a fixed heap with room for the whole run, throughput GC.

    The emulator keeps every version of every document it has written, deletes included
    (~5 KB per write, measured with jcmd GC.heap_info after a full GC), so its heap only
    grows. With the default G1 collector its concurrent marking over that heap cost 105-150 us
    of CPU per written document, swinging 1.5-2x between bursts; the parallel collector with a
    large young generation cost 64-86 us, steadier. When the old generation fills up, every
    collection is a full one and the rate collapses (to ~2k docs/s), so the heap is sized for
    the run's writes. Both the raw ceiling and the tools run on this same JVM.
    """
    writes = n * (1 + warm + 2 * rounds + (2 if peers else 0))
    old_gb = -(-writes * 5_500 // 2**30) + 2
    young_gb = 4
    total_kb = _mem_total_kb()
    heap_gb = old_gb + young_gb
    if total_kb and heap_gb * 2**20 > total_kb * 0.7:
        say(f"bench: the emulator would need a ~{heap_gb} GB heap for {writes:,} writes; this machine has "
            f"{total_kb // 2**20} GB: expect the last rounds to slow down (use fewer --rounds or --docs)")
        heap_gb = max(young_gb + 2, int(total_kb * 0.7) // 2**20)
    return f"-XX:+UseParallelGC -Xms{heap_gb}g -Xmx{heap_gb}g -Xmn{young_gb}g"


def _mem_total_kb() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def median(values: list[float]) -> float | None:
    values = sorted(v for v in values if v)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def pairing_report(kind: str, raw: list[Row], ours: list[Row]) -> list[str]:
    """Per round and median: our rate over the raw rate measured next to it."""
    lines = [f"{kind}: round  raw docs/s  ours docs/s (wall / in-process)  ratio (wall / in-process)"]
    ratios_wall, ratios_proc = [], []
    for i, (a, b) in enumerate(zip(raw, ours), 1):
        wall, proc = b.rate, b.in_process_rate
        rw = wall / a.rate if wall and a.rate else None
        rp = proc / a.rate if proc and a.rate else None
        ratios_wall.append(rw)
        ratios_proc.append(rp)
        lines.append(f"  {i}  {a.rate or 0:10,.0f}  {wall or 0:10,.0f} / {proc or 0:,.0f}"
                     f"  {rw or 0:.2f}x / {rp or 0:.2f}x")
    mw, mp = median(ratios_wall), median(ratios_proc)
    lines.append(f"  median ratio {mw or 0:.2f}x wall / {mp or 0:.2f}x in-process"
                 f" (min {min((x for x in ratios_wall if x), default=0):.2f}x wall)")
    return lines


def backfire(host: str, work: Path, env: dict[str, str], n: int, timeout: float) -> list[Row]:
    cli = PEERS / "node_modules" / ".bin" / "backfire"
    if not cli.exists():
        return [Row("firestore-backfire", "backup", note="not installed (npm ci --prefix bench/peers)")]
    out_path = work / "backfire" / "data.ndjson"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    secs, rss, out, err, rc = run_measured(
        ["node", str(cli), "export", str(out_path), "-P", SOURCE, "-E", host, "--overwrite"],
        env=env, cwd=PEERS, timeout=timeout)
    exported = sum(1 for _ in open(out_path)) if out_path.exists() else None
    if rc != 0:
        return [Row("firestore-backfire", "backup (NDJSON file)", exported, secs, rss, f"FAILED (exit {rc}): {err}")]
    rows.append(Row("firestore-backfire", "backup (NDJSON file)", exported, secs, rss,
                    f"{out_path.stat().st_size} bytes"))
    target = "bench-backfire"
    secs, rss, out, err, rc = run_measured(
        ["node", str(cli), "import", str(out_path), "-P", target, "-E", host, "--mode", "overwrite"],
        env=env, cwd=PEERS, timeout=timeout)
    landed = count_documents(host, target)
    rows.append(Row("firestore-backfire", "restore", landed, secs, rss,
                    (f"FAILED (exit {rc}): {err}; " if rc else "") + f"{landed}/{n} documents in target"))
    return rows


def export_import(host: str, work: Path, env: dict[str, str], n: int, timeout: float) -> list[Row]:
    if not (PEERS / "node_modules" / "firestore-export-import").exists():
        return [Row("firestore-export-import", "backup", note="not installed (npm ci --prefix bench/peers)")]
    out_path = work / "fei" / "data.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    script = str(PEERS / "fei.js")
    rows = []
    # Its best setting for this data (no subcollections): with subcollection discovery on it makes one
    # listCollections() call per document and times out on the emulator from ~20k documents.
    env = {**env, "FEI_INCLUDE_SUBCOLLECTIONS": "0"}
    secs, rss, out, err, rc = run_measured(["node", script, "export", SOURCE, str(out_path)],
                                           env=env, cwd=PEERS, timeout=timeout)
    res = _json_tail(out)
    if rc != 0:
        return [Row("firestore-export-import", "backup (JSON file)", None, secs, rss, f"FAILED (exit {rc}): {err}")]
    rows.append(Row("firestore-export-import", "backup (JSON file)", res.get("documents"), secs, rss,
                    f"{out_path.stat().st_size} bytes; includeSubcollections=false"))
    target = "bench-fei"
    secs, rss, out, err, rc = run_measured(["node", script, "import", target, str(out_path)],
                                           env=env, cwd=PEERS, timeout=timeout)
    landed = count_documents(host, target)
    rows.append(Row("firestore-export-import", "restore", landed, secs, rss,
                    (f"FAILED (exit {rc}): {err}; " if rc else "") + f"{landed}/{n} documents in target"))
    return rows


# ----------------------------------------------------------------------------- report

def table(rows: list[Row], read_ceiling: float | None, write_ceiling: float | None) -> str:
    head = ["tool", "operation", "docs", "seconds", "docs/s", "vs ceiling", "peak RSS MB", "note"]
    lines = []
    for r in rows:
        rate = r.rate
        ceiling = r.ceiling
        if rate and ceiling is None:
            if r.operation.startswith(("backup", "read")):
                ceiling = read_ceiling
            elif r.operation.startswith(("restore", "write")):
                ceiling = write_ceiling
        lines.append([
            r.tool, r.operation, "-" if r.documents is None else str(r.documents),
            "-" if r.seconds is None else f"{r.seconds:.2f}",
            "-" if rate is None else f"{rate:,.0f}",
            f"{rate / ceiling:.2f}x" if rate and ceiling else "-",
            "-" if r.rss_mb is None else f"{r.rss_mb:.0f}",
            r.note,
        ])
    widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(head[:-1])]
    fmt = "  ".join(f"{{:{'>' if i in (2, 3, 4, 5, 6) else '<'}{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*head[:-1]) + "  " + head[-1], "-" * (sum(widths) + 2 * len(widths) + 4)]
    out += [fmt.format(*l[:-1]) + "  " + l[-1] for l in lines]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=100_000, help="documents to generate (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=8, help="threads for the raw gRPC ceiling (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="paired rounds of raw rate + ours, for backup and for restore (default: %(default)s)")
    ap.add_argument("--warm", type=int, default=4,
                    help="unmeasured raw bursts of --docs reads, then writes, before the rounds (default: %(default)s)")
    ap.add_argument("--no-peers", action="store_true", help="skip the npm peer tools")
    ap.add_argument("--timeout", type=float, default=3600, help="per tool run, seconds (default: %(default)s)")
    ap.add_argument("--references", action="store_true",
                    help="give every document a reference field (firestore-backfire then fails)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    ap.add_argument("--pin-emulator", action="store_true",
                    help="run the emulator on the first CPU and every client on the others (Linux): "
                         "shows the rates when the clients do not compete with the emulator for CPU")
    args = ap.parse_args(argv)
    n = args.docs
    global REFERENCES
    REFERENCES = args.references

    if not args.no_peers and not (PEERS / "node_modules" / ".bin" / "backfire").exists():
        say("installing the peer tools (npm ci in bench/peers) ...")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PEERS, check=True)
    work = Path(tempfile.mkdtemp(prefix="firebackup-bench-"))
    say(f"bench: {n} documents, {args.rounds} paired rounds; work folder {work}")
    os.environ.setdefault("JAVA_TOOL_OPTIONS", emulator_jvm_options(n, args.rounds, args.warm, not args.no_peers))
    client_cpus = None
    if args.pin_emulator:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            say("bench: --pin-emulator needs at least 2 CPUs")
            return 2
        client_cpus = set(cpus[1:])
        # Children inherit the affinity of the thread that starts them: the emulator gets
        # the first CPU, then this thread (and every client it starts) the others.
        os.sched_setaffinity(0, {cpus[0]})
    try:
        with stack.start_firestore_emulator() as fs:
            if client_cpus is not None:
                os.sched_setaffinity(0, client_cpus)
            host = fs.host
            env = {**os.environ, **fs.env, "GOOGLE_CLOUD_PROJECT": SOURCE}
            say("warming the emulator up ...")
            # The JVM compiles its hot paths during the first few thousand writes and reads.
            warm = generate_documents(3000, SOURCE, seed=1)
            raw_write(host, warm, SOURCE, "commit", args.threads)
            raw_read(host, SOURCE, args.threads, 3000)
            _delete_all(host, warm)
            del warm
            say("generating documents ...")
            docs = generate_documents(n, SOURCE)
            avg = sum(map(len, docs)) / max(1, n)
            info: list[Row] = []
            say("raw Commit (seeds the source) ...")
            info.append(raw_write(host, docs, SOURCE, "commit", args.threads))
            del docs
            have = count_documents(host, SOURCE)
            if have != n:
                say(f"bench: source has {have} documents, expected {n}")
                return 1
            say("client library read ...")
            info.append(client_library_read(host, SOURCE, min(n // len(COLLECTIONS), 20_000)))
            raw_reads, backups, raw_writes, restores = paired_rounds(
                host, work, env, n, max(1, args.rounds), args.threads, args.timeout, max(0, args.warm))
            read_ceiling = median([r.rate for r in raw_reads])
            write_ceiling = median([r.rate for r in raw_writes])
            peers: list[Row] = []
            if not args.no_peers:
                say("firestore-backfire export + import ...")
                peers += backfire(host, work, env, n, args.timeout)
                say("firestore-export-import backup + restore ...")
                peers += export_import(host, work, env, n, args.timeout)
    except stack.StackError as e:
        say(f"bench: {e}")
        return 2
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows: list[Row] = []
    for i, (a, b) in enumerate(zip(raw_reads, backups), 1):
        a.tool, b.ceiling = f"emulator (raw gRPC), round {i}", a.rate
        rows += [a, b]
        b.tool = f"firebackup, round {i}"
    for i, (a, b) in enumerate(zip(raw_writes, restores), 1):
        a.tool, b.ceiling = f"emulator (raw gRPC), round {i}", a.rate
        rows += [a, b]
        b.tool = f"firebackup, round {i}"
    for r in info:
        r.ceiling = None
    print(f"\nFirestore emulator, {n} documents in {len(COLLECTIONS)} root collections, "
          f"~{avg:.0f} bytes each as protobuf{', with a reference field' if REFERENCES else ''}; "
          f"{os.cpu_count()} CPUs{' (emulator pinned to 1, clients on the rest)' if args.pin_emulator else ''}; "
          f"median ceiling over {args.rounds} rounds: "
          f"read {read_ceiling or 0:,.0f} docs/s, write {write_ceiling or 0:,.0f} docs/s\n")
    print(table(info + rows + peers, read_ceiling, write_ceiling))
    print()
    for line in pairing_report("backup vs raw RunQuery", raw_reads, backups) + \
            pairing_report("restore vs raw BatchWrite", raw_writes, restores):
        print(line)
    print("\nseconds = wall time of the whole process (start-up included) for the tools; "
          "peak RSS = the process's own VmHWM (polled); a round's \"vs ceiling\" is against the raw rate "
          "measured next to it, the peers' against the median")
    if args.json:
        args.json.write_text(json.dumps([{**r.__dict__, "rate": r.rate} for r in info + rows + peers], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
