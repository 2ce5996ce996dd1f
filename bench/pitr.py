"""Benchmark: PITR capture and compaction with PostgreSQL as the store.

  * capture: synthetic Firestore write events (binary CloudEvents with a protobuf
    DocumentEventData, as Eventarc sends them) posted to ONE `pitr_capture` function process
    (functions-framework from its built folder) over --concurrency kept-alive connections at once:
    events/s recorded, with the function's CPU per event; and the same through GroupCommit
    in-process (no HTTP);
  * compaction: captured rows moved into encrypted segments in a local folder (written, read back,
    rows deleted): changes/s;
  * sustained: capture for --seconds while maintenance compacts every --compact-every seconds:
    the row count sampled, to show it stays bounded.

Prints a table; never passes or fails on time. The machine may be shared: say so with the figures.

    .venv/bin/python bench/pitr.py --events 20000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "shared"))

from google.cloud.firestore_v1.types import Document  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from firebackup import bootstrap  # noqa: E402
from firebackup.crypto.keys import LocalKey  # noqa: E402
from firebackup.db.migrate import upgrade  # noqa: E402
from firebackup.db.models import PITRChange  # noqa: E402
from firebackup.pitr.events import format_ns, parse_written  # noqa: E402
from firebackup.services import pitr  # noqa: E402
from firebackup.services.context import system_transactions  # noqa: E402
from firebackup.settings import Settings  # noqa: E402
from infra import build_functions  # noqa: E402
from infra.local import stack  # noqa: E402
from infra.local.function_server import firestore_write_cloudevent, start_built  # noqa: E402
from tests.integration.conftest import postgres_database  # noqa: E402
from tests.integration.pitr.pitr_workload import seed_project  # noqa: E402

SOURCE = "bench-pitr"
DocPb: Any = Document.pb()


def events(n: int, start: int, *, docs: int = 5000) -> list[tuple[dict[str, str], bytes]]:
    """n write events over `docs` documents of ~300 bytes, versions 1 ms apart from `start` (ns)."""
    out = []
    for i in range(n):
        version = start + i * 1_000_000
        doc = DocPb(name=f"projects/{SOURCE}/databases/(default)/documents/users/u{i % docs}/orders/o{i % 7}")
        doc.fields["n"].integer_value = i
        doc.fields["text"].string_value = "x" * 250
        doc.update_time.seconds, doc.update_time.nanos = divmod(version, 10**9)
        doc.create_time.CopyFrom(doc.update_time)
        rel = doc.name.split("/documents/", 1)[1]
        out.append(firestore_write_cloudevent(SOURCE, "(default)", rel, value=doc.SerializeToString(), old_value=None,
                                              when=format_ns(version), event_id=f"e{version}"))
    return out


def _cpu_seconds(server: Any) -> float:
    """CPU time (user + system) of the function's process and its children (gunicorn's worker)."""
    import psutil

    root = psutil.Process(server.service.process.pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        t = p.cpu_times()
        total += t.user + t.system
    return total


def post_raw(server: Any, batch: list[tuple[dict[str, str], bytes]], *, connections: int) -> list[int]:
    """POST every event, `connections` kept-alive connections each sending its next event once answered.

    Requests are encoded before the clock starts and answers read with a minimal parser, so the
    client costs ~0.1 ms CPU an event where http.client costs ~0.4: on a 2-core machine it would
    otherwise take the CPU the function is measured on.
    """
    raw = [b"POST / HTTP/1.1\r\nHost: bench\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in h.items())
           + f"Content-Length: {len(body)}\r\n\r\n".encode() + body for h, body in batch]
    statuses = [0] * len(raw)
    lock = threading.Lock()
    cursor = iter(range(len(raw)))

    def connection() -> None:
        with socket.create_connection((stack.HOST, server.service.port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buf = b""
            while True:
                with lock:
                    i = next(cursor, None)
                if i is None:
                    return
                sock.sendall(raw[i])
                while (end := buf.find(b"\r\n\r\n")) < 0:
                    buf += _received(sock)
                length = next(int(line.split(b":", 1)[1]) for line in buf[:end].split(b"\r\n")[1:]
                              if line.lower().startswith(b"content-length:"))
                while len(buf) < end + 4 + length:
                    buf += _received(sock)
                statuses[i] = int(buf[9:12])
                buf = buf[end + 4 + length:]

    threads = [threading.Thread(target=connection) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def _received(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("the function closed the connection")
    return data


async def record_all(group: pitr.GroupCommit, writes: list[Any], concurrency: int) -> None:
    """Record every write through the group commit, `concurrency` at a time."""
    limit = asyncio.Semaphore(concurrency)

    async def one(write: Any) -> None:
        async with limit:
            await group.record(write)

    await asyncio.gather(*(one(w) for w in writes))


def rows(plane: Any) -> int:
    with plane.factory() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(PITRChange)) or 0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=32, help="events in flight at once (Eventarc's deliveries)")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the sustained run")
    ap.add_argument("--compact-every", type=float, default=10.0)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-pitr-"))
    pg = stack.start_postgres()
    try:
        with postgres_database(pg.url, "bench_pitr") as url:
            env = {"FIREBACKUP_DATABASE_URL": url, "FIREBACKUP_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
                   "FIREBACKUP_QUEUE": "recording", "FIREBACKUP_ALLOW_LOCAL_STORAGE": "1",
                   "FIREBACKUP_LOCAL_STORAGE_ROOT": str(work)}
            plane = bootstrap.control_plane(Settings.from_env(env))
            upgrade(plane.engine)
            seed_project(plane, SOURCE, f"file://{work}/location", LocalKey.generate_text())
            tx = system_transactions(plane.factory, plane.ports)
            build_functions.build(work / "functions")
            start = time.time_ns() - 3600 * 10**9
            report: list[tuple[str, str]] = []
            with start_built(work / "functions", "pitr_capture", env) as server:
                batch = events(args.events, start)
                cpu, client = _cpu_seconds(server), time.process_time()
                t = time.perf_counter()
                statuses = post_raw(server, batch, connections=args.concurrency)
                took = time.perf_counter() - t
                cpu, client = _cpu_seconds(server) - cpu, time.process_time() - client
                assert set(statuses) == {200}, sorted(set(statuses))
                report.append(("capture, one function process (HTTP)", f"{len(batch) / took:,.0f} events/s; the "
                               f"function used {cpu:.1f} CPU s: {len(batch) / cpu:,.0f} events per CPU second "
                               f"({cpu / len(batch) * 1e3:.2f} ms an event; the client {client / len(batch) * 1e3:.2f})"))
                group = pitr.GroupCommit(pitr.Capture(tx))
                parsed = [parse_written({k[3:]: v for k, v in h.items() if k.startswith("ce-")}, b)
                          for h, b in events(args.events, start + args.events * 1_000_000)]
                t, cpu = time.perf_counter(), time.process_time()
                asyncio.run(record_all(group, parsed, args.concurrency))
                took, cpu = time.perf_counter() - t, time.process_time() - cpu
                # This process's CPU: the function process idles meanwhile.
                report.append(("capture, GroupCommit in-process (no HTTP)", f"{len(parsed) / took:,.0f} events/s; "
                               f"{cpu / len(parsed) * 1e3:.2f} ms CPU per event"))
                n = rows(plane)
                t = time.perf_counter()
                done = pitr.compact_all(tx, dt.datetime.now(dt.timezone.utc), older_than=dt.timedelta(0),
                                        max_changes=plane.settings.pitr_segment_changes)
                took = time.perf_counter() - t
                report.append(("compaction", f"{done.changes / took:,.0f} changes/s ({n} rows, {done.segments} "
                                             f"segments, {took:.1f} s)"))
                # Sustained: capture at full speed while compaction runs every few seconds.
                stop = threading.Event()
                samples: list[int] = []
                posted = [0]

                def feed() -> None:
                    offset = 2 * args.events
                    while not stop.is_set():
                        more = events(2000, start + offset * 1_000_000)
                        post_raw(server, more, connections=args.concurrency)
                        posted[0] += len(more)
                        offset += len(more)

                feeder = threading.Thread(target=feed, daemon=True)
                feeder.start()
                ends = time.monotonic() + args.seconds
                while time.monotonic() < ends:
                    time.sleep(args.compact_every)
                    samples.append(rows(plane))
                    pitr.compact_all(tx, dt.datetime.now(dt.timezone.utc), older_than=dt.timedelta(0),
                                     max_changes=plane.settings.pitr_segment_changes)
                stop.set()
                feeder.join()
                report.append(("sustained", f"{posted[0]} events in {args.seconds:.0f} s; rows before each "
                                            f"compaction: {samples}"))
            plane.engine.dispose()
    finally:
        pg.stop()
    width = max(len(k) for k, _ in report)
    for k, v in report:
        print(f"{k:<{width}}  {v}")
    print(f"load average: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
