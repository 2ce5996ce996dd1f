"""Benchmark: a backup fanned out over Cloud Tasks to 2 worker processes, side by side with `firebackup backup`.

One run, the same data, both paths to completion (issue 10's last "Done when" item):

  cli     `firebackup backup` in its own process (one process, chunk tasks on its thread pool);
          peak RSS from wait4() on that process, as bench/scale.py.
  fan-out the control plane: the backup row is started in this process (a DbJobStore on
          PostgreSQL, as deployed on Cloud SQL: several processes write the job rows), its `plan`
          task goes through CloudTasksQueue into the Cloud Tasks emulator (infra/local/tasks_emulator.py,
          the one the integration tests use), which sends every task over HTTP to the BUILT
          `backup_worker` function (infra/build_functions.py) served by functions-framework with 2
          worker processes of one thread each: 2 instances at concurrency 1. The backup queue
          allows 2 concurrent dispatches, as many as there are instances, so a task the emulator
          sends starts at once (no hidden wait in a listen backlog). plan -> one chunk task per
          range -> finalize, enqueued by the last chunk task.

Both read the fake Firestore gRPC server of bench/scale.py (generated documents, ~740 bytes), here
WITH PartitionQuery (evenly spaced cut points), as real Firestore has it: both paths then plan the
same ranges (16 per root collection, 4 root collections), so the fan-out gets parallel chunk tasks.
On the emulator (no PartitionQuery) a whole-database backup is one range, and the fan-out a serial
chain of chunk tasks: `--no-partition-query` measures that case.

Per-task overhead comes from the emulator's side (a subclass that records, per task, when it was
created, sent and answered): enqueue->start (created -> sent, including any wait for a free
instance), dispatch latency (sent minus the later of created and the last answer before it: the
delay a ready task sees with an instance free), the finalize task's duration. Handler times come
from the workers' own log lines ("task ... done in N ms"). Each worker process's RSS and peak RSS
(VmHWM) are sampled every 0.1 s, and reported at its start, after half the tasks and at the end.
The produced backups are checked: exact document count, the same chunk layout and the same
document names (decrypted and compared; contents differ by design, the fake server puts a fresh
random token in every document it sends). Prints a table; never passes or fails on time.

    .venv/bin/python bench/fanout.py                          # 100,000 documents, 3 rounds
    .venv/bin/python bench/fanout.py --docs 20000 --rounds 1 --json
    .venv/bin/python bench/fanout.py --chunk-docs 500          # smaller chunks: more tasks (fan-out only)
    .venv/bin/python bench/fanout.py --no-partition-query      # the emulator's case: one range
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "shared"), str(ROOT), str(ROOT / "bench")]

import scale  # noqa: E402  (bench/scale.py: the fake Firestore server and the CLI runner)

WORKER_PROCESSES = 2
DONE = ("completed", "failed", "cancelled")
_HANDLER_LINE = re.compile(r"task (\S+) done in (\d+) ms")


# --------------------------------------------------------------------------------------------
# the tasks emulator with per-task times (runs in its own process: `fanout.py --tasks-emulator PORT`)
# --------------------------------------------------------------------------------------------


def serve_tasks_emulator(port: int) -> None:
    """infra/local/tasks_emulator.py as the tests run it, plus one `timing {json}` line per attempt."""
    from infra.local import tasks_emulator as te

    class TimedState(te.State):
        def __init__(self) -> None:
            super().__init__()
            self.created: dict[str, float] = {}

        def create_task(self, queue: str, task: Any) -> Any:
            created = super().create_task(queue, task)
            self.created[created.name] = time.time()
            return created

    class TimedDispatcher(te.Dispatcher):
        def send(self, queue_name: str, task: Any) -> None:
            sent = time.time()
            super().send(queue_name, task)
            record = {"task": task.name.rsplit("/", 1)[-1], "attempt": task.dispatch_count,
                      "created": self.state.created.get(task.name, sent), "sent": sent, "answered": time.time()}
            print("timing", json.dumps(record), flush=True)

    # serve() builds its State and Dispatcher by these names
    setattr(te, "State", TimedState)
    setattr(te, "Dispatcher", TimedDispatcher)
    te.serve(port)


@dataclass
class Attempt:
    task: str
    attempt: int
    created: float
    sent: float
    answered: float


@dataclass
class Emulator:
    """The timed tasks emulator process and what it has reported so far."""

    process: subprocess.Popen[str]
    host: str
    attempts: list[Attempt] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls) -> "Emulator":
        from infra.local import stack

        port = stack.free_port()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "shared")])}
        proc = subprocess.Popen([sys.executable, __file__, "--tasks-emulator", str(port)], stdout=subprocess.PIPE,
                                text=True, env=env)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening" not in line:
            proc.kill()
            raise SystemExit(f"the tasks emulator did not start: {line.strip() or 'no output'}")
        emulator = cls(proc, f"127.0.0.1:{port}")
        threading.Thread(target=emulator._read, daemon=True).start()
        return emulator

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("timing "):
                with self.lock:
                    self.attempts.append(Attempt(**json.loads(line[len("timing "):])))

    def answered(self) -> int:
        with self.lock:
            return len(self.attempts)

    def of_job(self, job_id: str) -> list[Attempt]:
        with self.lock:
            return [a for a in self.attempts if a.task.endswith(f"-{job_id}")]

    def snapshot(self) -> list[Attempt]:
        with self.lock:
            return list(self.attempts)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --------------------------------------------------------------------------------------------
# worker memory and CPU
# --------------------------------------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) of these processes and their descendants, the exited ones included."""
    total = 0.0
    for pid in pids:
        try:
            top = psutil.Process(pid)
            t = top.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system  # children: those reaped
            for child in top.children(recursive=True):
                c = child.cpu_times()
                total += c.user + c.system
        except psutil.Error:
            pass
    return total


def children_cpu() -> float:
    """CPU time of this process's reaped children (a CLI run waited for)."""
    t = os.times()
    return t.children_user + t.children_system


def _status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))


class RssSampler(threading.Thread):
    """Every 0.1 s, each worker process's RSS and peak RSS (VmHWM) with the number of attempts answered."""

    def __init__(self, pids: list[int], emulator: Emulator) -> None:
        super().__init__(daemon=True)
        self.pids, self.emulator = pids, emulator
        self.samples: dict[int, list[tuple[int, float, float]]] = {pid: [] for pid in pids}
        self.stopped = threading.Event()

    def sample(self) -> None:
        done = self.emulator.answered()
        for pid in self.pids:
            try:
                self.samples[pid].append((done, _status_kb(pid, "VmRSS") / 1024, _status_kb(pid, "VmHWM") / 1024))
            except (OSError, StopIteration):
                pass  # the process is gone: its samples end here

    def run(self) -> None:
        while not self.stopped.wait(0.1):
            self.sample()

    def report(self) -> list[dict[str, float]]:
        """Per worker: RSS at the start, peak RSS after half the tasks and at the end, tasks answered."""
        out = []
        for pid, samples in self.samples.items():
            if not samples:
                continue
            total = samples[-1][0]
            half = next((s for s in samples if s[0] >= total / 2), samples[-1])
            out.append({"pid": pid, "rss_start": samples[0][1], "peak_half": half[2], "tasks_half": half[0],
                        "peak_end": samples[-1][2], "tasks_end": total})
        return out


# --------------------------------------------------------------------------------------------
# the two paths
# --------------------------------------------------------------------------------------------


def backup_names(url: str, backup_id: str, kek: Any) -> tuple[list[tuple[str, int]], int, str]:
    """A backup's chunk layout (chunk id, documents), document count and the SHA-256 of its names in order."""
    from firebackup.engine.repository import Repository
    from firebackup.firestore.documents import document_name
    from firebackup.storage import open_storage

    storage = open_storage(url)
    try:
        repo = Repository(storage)
        manifest, data_key = repo.read_manifest(backup_id, kek)
        chunks = sorted((e for e in manifest.chunks if e.kind == "docs"), key=lambda e: e.chunk_id)
        digest, count = hashlib.sha256(), 0
        for entry in chunks:
            for record in repo.iter_records(backup_id, entry, data_key):
                digest.update(document_name(record).encode() + b"\n")
                count += 1
        return [(e.chunk_id, e.records) for e in chunks], count, digest.hexdigest()
    finally:
        storage.close()


def run_cli_backup(work: Path, key: Path, firestore_host: str, server_pid: int, tag: str) -> dict[str, Any]:
    from firebackup.crypto.keys import LocalKey

    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": firestore_host}
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    url = (work / f"cli-{tag}").as_uri()
    cpu0, server0 = children_cpu(), cpu_seconds([server_pid])
    secs, rss, out, err, rc = scale.run_cli(["backup", "--project", "P", "--to", url, "--key-file", str(key),
                                             "--json"], env)
    cpu, server_cpu = children_cpu() - cpu0, cpu_seconds([server_pid]) - server0
    if rc != 0:
        raise SystemExit(f"firebackup backup failed (rc {rc}): {err}")
    layout, count, digest = backup_names(url, out["backup_id"], LocalKey.from_file(str(key)))
    return {"seconds": secs, "in_process_s": out.get("duration_s"), "peak_rss": rss, "cpu_s": cpu,
            "server_cpu_s": server_cpu, "documents": out.get("documents"),
            "counted": count, "chunks": len(layout), "layout": layout, "names_sha256": digest}


@dataclass
class FanOut:
    """The control plane of this process, the built backup_worker and the timed emulator."""

    plane: Any
    emulator: Emulator
    worker: Any
    sampler: RssSampler
    org_id: str
    project_id: str
    work: Path
    platform_pids: list[int]  # PostgreSQL and the tasks emulator: what the fan-out needs beside its workers
    server_pid: int  # the fake Firestore

    def backup(self, tag: str, timeout: float) -> dict[str, Any]:
        import sqlalchemy as sa

        from firebackup.db.models import Backup, StorageDestination
        from firebackup.services.commands import StartBackup
        from firebackup.services.context import system_transactions
        from firebackup.services.jobs import start_backup

        folder = self.work / f"fanout-{tag}"
        with self.plane.factory.begin() as s:
            dest = StorageDestination(org_id=self.org_id, name=f"fanout-{tag}", kind="local", url=folder.as_uri(),
                                      options={})
            s.add(dest)
            s.flush()
            dest_id = dest.id
        log_from = self._log_size()
        tx = system_transactions(self.plane.factory, self.plane.ports)
        cpu0 = [cpu_seconds(self.sampler.pids), cpu_seconds(self.platform_pids), cpu_seconds([self.server_pid])]
        t0 = time.monotonic()
        with tx() as ctx:  # the plan task is sent when this commits
            job_id = start_backup(ctx, self.org_id, StartBackup(self.project_id, dest_id))["id"]
        deadline = t0 + timeout
        while True:
            with self.plane.factory() as s:
                state = s.scalar(sa.select(Backup.state).where(Backup.id == job_id))
            if state in DONE:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"fan-out backup {job_id} still {state} after {timeout:.0f}s")
            time.sleep(0.05)
        secs = time.monotonic() - t0
        time.sleep(0.3)  # the finalize task's answer reaches the emulator just after the row completes
        cpu = [cpu_seconds(self.sampler.pids) - cpu0[0], cpu_seconds(self.platform_pids) - cpu0[1],
               cpu_seconds([self.server_pid]) - cpu0[2]]
        with self.plane.factory() as s:
            row = s.get(Backup, job_id)
            assert row is not None
            if row.state != "completed":
                raise SystemExit(f"fan-out backup {job_id} ended {row.state}: {row.error}")
            repo_id, documents = row.repo_backup_id, row.documents
        layout, count, digest = backup_names(folder.as_uri(), repo_id, self.plane.workers.kek(self.org_id))
        return {"seconds": secs, "cpu_s": cpu[0], "platform_cpu_s": cpu[1], "server_cpu_s": cpu[2],
                "documents": documents, "counted": count, "chunks": len(layout), "layout": layout,
                "names_sha256": digest,
                **task_figures(self.emulator.of_job(job_id), self.emulator.snapshot(), self._handler_ms(log_from))}

    def _log(self) -> Path:
        return Path(self.worker.service.workdir, f"{self.worker.service.name}.log")

    def _log_size(self) -> int:
        return self._log().stat().st_size

    def _handler_ms(self, start: int) -> dict[str, list[int]]:
        with open(self._log(), "rb") as f:
            f.seek(start)
            text = f.read().decode(errors="replace")
        out: dict[str, list[int]] = {}
        for m in _HANDLER_LINE.finditer(text):
            out.setdefault(m[1], []).append(int(m[2]))
        return out


def _kind(task_id: str) -> str:
    return next((k for k in ("plan", "chunk", "finalize", "auth") if f"-backup-{k}-" in task_id), "other")


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def task_figures(mine: list[Attempt], every: list[Attempt], handler_ms: dict[str, list[int]]) -> dict[str, Any]:
    """Per-task overhead of one job, in ms."""
    answers = sorted(a.answered for a in every)

    def ready(a: Attempt) -> float:
        # The later of its creation and the last answer before it was sent (an instance freed then).
        before = [t for t in answers if t <= a.sent]
        return max(a.created, before[-1]) if before else a.created

    waits = [(a.sent - a.created) * 1000 for a in mine]
    latency = [(a.sent - ready(a)) * 1000 for a in mine]
    chunks = [a for a in mine if _kind(a.task) == "chunk"]
    finalize = [a for a in mine if _kind(a.task) == "finalize"]
    round_trips = [(a.answered - a.sent) * 1000 for a in chunks]
    handled = handler_ms.get("backup.chunk", [])
    return {
        "tasks": len(mine), "chunk_tasks": len(chunks), "retried": sum(1 for a in mine if a.attempt > 1),
        "enqueue_start_median_ms": statistics.median(waits), "enqueue_start_p95_ms": _pct(waits, 0.95),
        "dispatch_median_ms": statistics.median(latency), "dispatch_p95_ms": _pct(latency, 0.95),
        "chunk_task_median_ms": statistics.median(round_trips) if round_trips else float("nan"),
        "chunk_handler_median_ms": statistics.median(handled) if handled else float("nan"),
        "finalize_ms": (finalize[-1].answered - finalize[-1].sent) * 1000 if finalize else float("nan"),
        "finalize_handler_ms": handler_ms.get("backup.finalize", [float("nan")])[-1],
        "plan_ms": next(((a.answered - a.sent) * 1000 for a in mine if _kind(a.task) == "plan"), float("nan")),
    }


def start_fan_out(work: Path, servers: "Servers", chunk_docs: int | None, chunks_per_task: int | None) -> FanOut:
    """The platform: migrated database, queues, the built backup_worker (2 processes), an org, a project."""
    from firebackup import bootstrap
    from firebackup.db.migrate import upgrade
    from firebackup.db.models import Organization, Project
    from firebackup.db.session import make_engine
    from firebackup.settings import Settings
    from infra import build_functions
    from infra.local import function_server, stack

    emulator, firestore_host, database_url = servers.emulator, servers.firestore_host, servers.postgres.url
    engine = make_engine(database_url)
    upgrade(engine)
    port = stack.free_port()
    url = f"http://{stack.HOST}:{port}/"
    env = {
        "FIREBACKUP_DATABASE_URL": database_url,
        "FIREBACKUP_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "FIREBACKUP_ALLOW_LOCAL_STORAGE": "1", "FIREBACKUP_LOCAL_STORAGE_ROOT": str(work),
        "FIREBACKUP_QUEUE": "cloudtasks", "FIREBACKUP_TASKS_PROJECT": "bench", "FIREBACKUP_TASKS_LOCATION": "local",
        "FIREBACKUP_BACKUP_WORKER_URL": url, "FIREBACKUP_RESTORE_WORKER_URL": url,  # no restore runs here
        "FIREBACKUP_WORKER_SECRET": secrets.token_hex(16), "FIREBACKUP_TASKS_EMULATOR_HOST": emulator.host,
        "FIRESTORE_EMULATOR_HOST": firestore_host,
        # As many concurrent dispatches as instances: what Cloud Tasks would send to max_instances=2.
        "FIREBACKUP_TASKS_BACKUP_QUEUE": "fanout-backup",
        "FIREBACKUP_TASKS_BACKUP_LIMITS": f"concurrent={WORKER_PROCESSES},attempts=20,min_backoff=0.1,max_backoff=1",
        "WORKERS": str(WORKER_PROCESSES), "THREADS": "1", "GRPC_ENABLE_FORK_SUPPORT": "false",
    }
    if chunk_docs:
        env["FIREBACKUP_CHUNK_DOCS"] = str(chunk_docs)
    if chunks_per_task:
        env["FIREBACKUP_CHUNKS_PER_TASK"] = str(chunks_per_task)
    settings = Settings.from_env(env)
    bootstrap.ensure_task_queues(settings)
    built = work / "functions"
    build_functions.build(built)
    worker = function_server.start_built(built, "backup_worker", env, port=port)
    try:
        assert worker.service.process is not None
        deadline = time.monotonic() + 30  # gunicorn forks its workers after it answers the first probe
        while len(pids := [p.pid for p in psutil.Process(worker.service.process.pid).children()]) < WORKER_PROCESSES \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        if len(pids) != WORKER_PROCESSES:
            raise SystemExit(f"backup_worker runs {len(pids)} worker processes, expected {WORKER_PROCESSES}")
        plane = bootstrap.control_plane(settings, engine=engine)
        with plane.factory.begin() as s:
            org = Organization(name="bench")
            s.add(org)
            s.flush()
            project = Project(org_id=org.id, name="P", gcp_project_id="P", auth_kind="service_account")
            s.add(project)
            s.flush()
            org_id, project_id = org.id, project.id
    except BaseException:
        worker.stop()
        raise
    sampler = RssSampler(pids, emulator)
    sampler.sample()  # idle, before any task
    sampler.start()
    return FanOut(plane, emulator, worker, sampler, org_id, project_id, work,
                  [servers.postgres.process.pid, emulator.process.pid], servers.firestore.pid)


# --------------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------------


@dataclass
class Servers:
    firestore: subprocess.Popen[str]
    firestore_host: str
    mean_doc: float
    emulator: Emulator
    postgres: Any

    def stop(self) -> None:
        if self.firestore.stdin:
            self.firestore.stdin.close()
        try:
            self.firestore.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.firestore.kill()
        self.emulator.stop()
        self.postgres.stop()


def start_servers(n: int, partition_query: bool) -> Servers:
    from infra.local import stack

    argv = [sys.executable, str(ROOT / "bench" / "scale.py"), "--serve", str(n)]
    firestore = subprocess.Popen(argv + (["--partition-query"] if partition_query else []), stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
    assert firestore.stdout is not None
    hello = json.loads(firestore.stdout.readline())
    emulator = Emulator.start()
    postgres = stack.start_postgres()
    return Servers(firestore, f"127.0.0.1:{hello['port']}", hello["mean_doc"], emulator, postgres)


def run(a: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="fb-fanout-"))
    key = work / "key"
    subprocess.run([str(scale.CLI), "keygen", "--out", str(key)], check=True, capture_output=True)
    servers = start_servers(a.docs, a.partition_query)
    fan: FanOut | None = None
    rounds = []
    try:
        fan = start_fan_out(work, servers, a.chunk_docs, a.chunks_per_task)
        for r in range(1, a.rounds + 1):
            say(f"... round {r}: firebackup backup of {a.docs:,} documents")
            cli = run_cli_backup(work, key, servers.firestore_host, servers.firestore.pid, str(r))
            say(f"    {cli['seconds']:.1f}s; fan-out backup")
            out = fan.backup(str(r), a.timeout)
            say(f"    {out['seconds']:.1f}s, {out['tasks']} tasks")
            for name, got in (("cli", cli), ("fan-out", out)):
                if got["counted"] != a.docs or got["documents"] != a.docs:
                    raise SystemExit(f"{name} backup holds {got['counted']} documents "
                                     f"(reported {got['documents']}), expected {a.docs}")
            # The chunk layout is the same only with the same chunk size (the CLI uses the engine's default).
            rounds.append({"round": r, "cli": cli, "fanout": out,
                           "same_layout": cli["layout"] == out["layout"] if not a.chunk_docs else None,
                           "same_names": cli["names_sha256"] == out["names_sha256"]})
            for folder in (f"cli-{r}", f"fanout-{r}"):
                shutil.rmtree(work / folder, ignore_errors=True)
        fan.sampler.stopped.set()
        fan.sampler.join()
        fan.sampler.sample()
        workers = fan.sampler.report()
    finally:
        if fan is not None:
            fan.sampler.stopped.set()
            fan.worker.stop()
            fan.plane.engine.dispose()
        servers.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {"docs": a.docs, "mean_doc": servers.mean_doc, "partition_query": a.partition_query,
            "chunk_docs": a.chunk_docs, "chunks_per_task": a.chunks_per_task, "rounds": rounds, "workers": workers}


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def print_table(res: dict[str, Any]) -> None:
    n = res["docs"]
    print()
    print(f"Fan-out vs CLI: {n:,} documents (~{res['mean_doc']:.0f} bytes), fake Firestore "
          f"{'with' if res['partition_query'] else 'WITHOUT'} PartitionQuery, chunk_docs "
          f"{res['chunk_docs'] or 'default'}, chunks per task {res['chunks_per_task'] or 'default'}; "
          f"{WORKER_PROCESSES} backup_worker processes")
    print()
    hdr = (f"{'round':>5} {'cli docs/s':>16} {'cli RSS MB':>10} {'fan-out docs/s':>14} {'ratio':>11} {'tasks':>5} "
           f"{'enq->start med/p95':>19} {'dispatch med/p95':>17} {'chunk task/handler':>19} "
           f"{'plan':>5} {'finalize':>8} {'same docs':>9}")
    print(hdr)
    print("-" * len(hdr))
    print(f"{'':>5} {'wall (in-proc)':>16} {'':>10} {'':>14} {'wall (in)':>11} {'':>5} {'ms':>19} {'ms':>17} "
          f"{'ms':>19} {'ms':>5} {'ms':>8}")
    for r in res["rounds"]:
        c, f = r["cli"], r["fanout"]
        inner = c["in_process_s"] or c["seconds"]
        same = r["same_names"] and r["same_layout"] is not False
        print(f"{r['round']:>5} {n / c['seconds']:>7,.0f} ({n / inner:>6,.0f}) {c['peak_rss']:>10.0f} "
              f"{n / f['seconds']:>14,.0f} {c['seconds'] / f['seconds']:>4.2f} ({inner / f['seconds']:.2f}) "
              f"{f['tasks']:>5} {f['enqueue_start_median_ms']:>8.0f} / {f['enqueue_start_p95_ms']:<8.0f} "
              f"{f['dispatch_median_ms']:>7.1f} / {f['dispatch_p95_ms']:<7.1f} "
              f"{f['chunk_task_median_ms']:>8.0f} / {f['chunk_handler_median_ms']:<8.0f} "
              f"{f['plan_ms']:>5.0f} {f['finalize_ms']:>8.0f} {'yes' if same else 'NO':>9}")
    print()
    print(f"{'round':>5} {'CPU s for the backup:':<22} {'cli':>6} {'fan-out workers':>16} {'+ PostgreSQL, emulator':>23} "
          f"{'fake Firestore (cli / fan-out)':>31}")
    for r in res["rounds"]:
        c, f = r["cli"], r["fanout"]
        print(f"{r['round']:>5} {'':<22} {c['cpu_s']:>6.1f} {f['cpu_s']:>16.1f} {f['platform_cpu_s']:>23.1f} "
              f"{c['server_cpu_s']:>15.1f} / {f['server_cpu_s']:<13.1f}")
    ratios = [r["cli"]["seconds"] / r["fanout"]["seconds"] for r in res["rounds"]]
    warm = ratios[1:] or ratios
    print(f"fan-out / cli rate (wall): median {statistics.median(warm):.2f}x over the warm round(s) "
          f"{', '.join(f'{x:.2f}' for x in warm)}; round 1 {ratios[0]:.2f}x includes each instance's cold start "
          f"(its first task builds the control plane)")
    print(f"chunks per backup: cli {res['rounds'][0]['cli']['chunks']}, fan-out {res['rounds'][0]['fanout']['chunks']}")
    print()
    print("worker process   RSS at start   peak RSS after half the tasks   peak RSS at the end (MB)")
    for w in res["workers"]:
        print(f"{w['pid']:>14} {w['rss_start']:>14.0f} {w['peak_half']:>22.0f} (after {w['tasks_half']:>3}) "
              f"{w['peak_end']:>14.0f} (after {w['tasks_end']:>3})")
    print()
    print("docs/s: wall time, the CLI's including its process start-up (in-proc: the duration_s it reports), the")
    print("fan-out's from the start of the backup to its row completed (polled every 50 ms); ratio = fan-out/cli.")
    print("tasks: attempts (plan + chunk tasks + finalize) over both processes.")
    print("enq->start: task created in the queue -> sent to a worker (includes waiting for a free instance);")
    print("dispatch: sent minus the later of created and the last answer before it (a ready task, instance free).")
    print("chunk task: HTTP round trip of a chunk task; handler: the time the worker logs for it (medians).")
    print("plan, finalize: HTTP round trip of that task.")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--docs", type=_positive, default=100_000, help="documents (default 100000)")
    ap.add_argument("--rounds", type=_positive, default=3, help="CLI + fan-out pairs on the same servers (default 3; "
                                                          "round 1's fan-out includes the workers' first task)")
    ap.add_argument("--chunk-docs", type=_positive, help="FIREBACKUP_CHUNK_DOCS of the workers (default: the engine's)")
    ap.add_argument("--chunks-per-task", type=_positive, help="FIREBACKUP_CHUNKS_PER_TASK of the workers (default 1)")
    ap.add_argument("--no-partition-query", dest="partition_query", action="store_false",
                    help="the fake server answers PartitionQuery UNIMPLEMENTED, like the emulator")
    ap.add_argument("--timeout", type=float, default=900, help="seconds one fan-out backup may take")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    ap.add_argument("--tasks-emulator", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.tasks_emulator is not None:
        serve_tasks_emulator(a.tasks_emulator)
        return
    from infra.local.stack import StackError

    try:
        res = run(a)
    except StackError as e:  # a server the bench needs is missing or did not start
        raise SystemExit(f"fanout: {e}") from None
    if a.json:
        for r in res["rounds"]:
            for side in ("cli", "fanout"):
                r[side].pop("layout")
        print(json.dumps(res, indent=2))
    else:
        print_table(res)


if __name__ == "__main__":
    main()
