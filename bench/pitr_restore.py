"""Benchmark: what a point-in-time restore's tasks read of the captured changes, with PostgreSQL as the store.

--rows captured rows (documents of ~1 KB, sealed as capture seals them) over --documents documents,
the oldest --segment of them compacted into one segment in a local folder. Then, each in a fresh
process of its own (so one's memory does not hide the next's), over the whole window:

  * every version, listed: what each chunk task read before (a list of every change, every row
    unsealed, then the last version per document);
  * the changed paths: what a chunk task reads now (PointInTime.replaced: DISTINCT paths in SQL,
    the segment decoded for its paths);
  * the last versions, streamed: what the changes task reads now (captured_changes into last_versions).

Prints time, peak RSS growth (VmHWM, reset before each read) and peak Python allocations (tracemalloc, a second run);
never passes or fails on time. The machine may be shared: say so with the figures.

    .venv/bin/python bench/pitr_restore.py --rows 200000 --documents 50000
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "shared"))

from google.cloud.firestore_v1.types import Document  # noqa: E402

from firebackup import bootstrap  # noqa: E402
from firebackup.crypto.keys import LocalKey  # noqa: E402
from firebackup.db.migrate import upgrade  # noqa: E402
from firebackup.pitr.events import UPDATE, CapturedWrite, ns_datetime  # noqa: E402
from firebackup.pitr.restore import last_versions  # noqa: E402
from firebackup.services import pitr  # noqa: E402
from firebackup.services.context import SystemTx, system_transactions  # noqa: E402
from firebackup.settings import Settings  # noqa: E402
from infra.local import stack  # noqa: E402
from tests.integration.conftest import postgres_database  # noqa: E402
from tests.integration.pitr.pitr_workload import seed_project  # noqa: E402

SOURCE = "bench-pitr-restore"
DocPb: Any = Document.pb()
STEP = 1_000_000  # versions 1 ms apart


def capture_rows(tx: SystemTx, rows: int, documents: int, start: int) -> None:
    """Store `rows` captured updates of ~1 KB over `documents` documents, as capture stores them."""
    capture = pitr.Capture(tx)
    targets = capture.targets(SOURCE, "(default)")
    for first in range(0, rows, 5000):
        batch = []
        for i in range(first, min(rows, first + 5000)):
            version = start + i * STEP
            path = f"users/u{i % documents:06d}"
            doc = DocPb(name=f"projects/{SOURCE}/databases/(default)/documents/{path}")
            doc.fields["n"].integer_value = i
            doc.fields["text"].string_value = "x" * 950
            doc.update_time.seconds, doc.update_time.nanos = divmod(version, 10**9)
            batch.extend(capture.rows(CapturedWrite(SOURCE, "(default)", path, UPDATE, version,
                                                    doc.SerializeToString()), targets))
        capture.store(batch)


READERS = {
    "chunk task before: every version listed": "every_version",
    "chunk task now:    changed paths": "paths",
    "changes task now:  last versions streamed": "streamed",
}


def _status(field: str) -> int:
    """A memory figure of this process in bytes from /proc/self/status: VmRSS now, VmHWM its peak since a reset."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status: this bench needs Linux")


def read_once(settings: Settings, reader: str, project_id: str, after: int, upto: int, traced: bool) -> dict[str, float]:
    """In a fresh interpreter: one reader over the window; its seconds and peak RSS growth, or its peak allocations."""
    plane = bootstrap.control_plane(settings)
    tx = system_transactions(plane.factory, plane.ports)
    window: dict[str, Any] = {"after": after, "upto": upto}
    with tx() as ctx:  # a connection and the keys at hand, so only the reading itself is measured
        pitr.config_of(ctx, project_id)
    gc.collect()
    rss = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # Linux: the peak RSS (VmHWM) starts again from now
    if traced:
        tracemalloc.start()
    started = time.perf_counter()
    with tx() as ctx:
        if reader == "every_version":  # what each chunk task did before: list everything, then the last versions
            count = len(last_versions(list(pitr.captured_changes(ctx, project_id, **window)), **window))
        elif reader == "paths":
            count = len(pitr.changed_paths(ctx, project_id, **window))
        else:
            count = len(last_versions(pitr.captured_changes(ctx, project_id, **window), **window))
    out = {"count": count, "seconds": time.perf_counter() - started,
           "rss_mib": (_status("VmHWM") - rss) / 2**20}
    if traced:
        out["traced_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
    plane.engine.dispose()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000, help="captured changes in the restore's window")
    ap.add_argument("--documents", type=int, default=50_000, help="distinct documents they change")
    ap.add_argument("--segment", type=int, default=40_000, help="of the rows, the oldest compacted into a segment")
    args = ap.parse_args(argv)
    work_dir = Path(tempfile.mkdtemp(prefix="bench-pitr-restore-"))
    pg = stack.start_postgres()
    try:
        with postgres_database(pg.url, "bench_pitr_restore") as url:
            plane = bootstrap.control_plane(Settings(
                database_url=url, master_key=os.urandom(32), queue="recording", allow_local_storage=True,
                local_storage_root=str(work_dir)))
            upgrade(plane.engine)
            try:
                measure(plane, work_dir, args)
            finally:
                plane.engine.dispose()
    finally:
        pg.stop()
    print(f"load average: {os.getloadavg()}")
    return 0


def measure(plane: Any, work_dir: Path, args: argparse.Namespace) -> None:
    """Store the rows and the segment, then print what reading them costs each task, before and now."""
    _, project_id = seed_project(plane, SOURCE, f"file://{work_dir}/location", LocalKey.generate_text())
    tx = system_transactions(plane.factory, plane.ports)
    start = time.time_ns() - 10 * 24 * 3600 * 10**9 + 789
    t = time.perf_counter()
    capture_rows(tx, args.rows, args.documents, start)
    print(f"{args.rows:,} rows over {args.documents:,} documents stored in {time.perf_counter() - t:.1f} s")
    if args.segment:
        done = pitr.compact_project(tx, project_id, ns_datetime(start + args.segment * STEP), max_changes=args.segment)
        print(f"{done.changes:,} of them compacted into {done.segments} segment")
    after, upto = start - 1, start + args.rows * STEP
    spawn = multiprocessing.get_context("spawn")  # a fresh heap each: no memory freed by an earlier step reused
    with spawn.Pool(1, maxtasksperchild=1) as pool:
        for name, reader in READERS.items():
            timed, traced = (pool.apply(read_once, (plane.settings, reader, project_id, after, upto, t))
                             for t in (False, True))
            print(f"{name:<42} {timed['seconds']:6.2f} s, peak RSS +{timed['rss_mib']:5.0f} MiB, peak Python "
                  f"allocations {traced['traced_mib']:5.0f} MiB ({int(timed['count']):,} documents)", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
