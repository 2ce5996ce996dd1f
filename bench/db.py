"""Benchmark: the metadata database at volume, on PostgreSQL (issue 15).

Loads a throwaway PostgreSQL (infra/local/stack.py) with infra/local/db_volume.py's rows (1,000
organizations, 200,000 backups, 1,000,000 audit rows over a year), then measures

  * the API's list endpoints: p50 / p99 of GET .../backups (first page and a later page by cursor),
    GET .../audit (newest, and a two-week range with an action prefix), each request through the
    Flask app in process (WSGI, no HTTP server) with an owner's API token of a random organization;
  * the worker path's database work at the connection budget: `instances` simulated function
    instances, each with its own engine at the default pool (FIREBACKUP_DB_POOL_SIZE +
    _MAX_OVERFLOW), one task at a time as a Cloud Functions instance with concurrency 1, run backup
    jobs of `chunks` chunk tasks through DbJobStore exactly as the handlers do (claim, record_chunk,
    finish_task; then the finalize claim, entries, complete): jobs/s and tasks/s. Firestore and the
    storage writes are left out: this measures what the database costs each task.

Prints a table; never passes or fails.

    .venv/bin/python bench/db.py
    .venv/bin/python bench/db.py --requests 200 --instances 8 --jobs 40
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "shared"))

import sqlalchemy as sa  # noqa: E402

from firebackup.bootstrap import api_app, ports  # noqa: E402
from firebackup.crypto.secrets import LocalMasterKey, Sealer  # noqa: E402
from firebackup.db.migrate import upgrade  # noqa: E402
from firebackup.db.models import ApiToken, Backup, User, UserOrganization, new_id  # noqa: E402
from firebackup.db.session import make_engine, make_session_factory  # noqa: E402
from firebackup.format.manifest import ChunkEntry  # noqa: E402
from firebackup.services.identity import hash_token, new_api_token  # noqa: E402
from firebackup.services.job_store import DbJobStore  # noqa: E402
from firebackup.services.ports import RecordingQueue  # noqa: E402
from firebackup.settings import Settings  # noqa: E402
from infra.local import db_volume, stack  # noqa: E402
from tests.integration.conftest import postgres_database  # noqa: E402


def _percentiles(samples: list[float]) -> tuple[float, float]:
    qs = statistics.quantiles(samples, n=100, method="inclusive")
    return qs[49] * 1000, qs[98] * 1000


def _tokens(engine: sa.Engine, orgs: list[str]) -> dict[str, str]:
    """An owner's API token for each organization."""
    out = {}
    with make_session_factory(engine).begin() as s:
        for org in orgs:
            user = User(email=f"bench-{org}@example.com")
            s.add(user)
            s.flush()
            s.add(UserOrganization(user_id=user.id, org_id=org, role="owner"))
            tok = new_api_token()
            s.add(ApiToken(id=new_id("tok"), org_id=org, name="bench", role="owner", token_hash=hash_token(tok),
                           prefix=tok[:10], created_by=user.id))
            out[org] = tok
    return out


def bench_api(engine: sa.Engine, now: dt.datetime, requests: int) -> list[tuple[str, float, float, float]]:
    key = os.urandom(32)
    settings = Settings(database_url=str(engine.url), master_key=key, rate_limit_per_address="",
                        rate_limit_per_token="")
    app = api_app(settings, engine=engine, sealer=Sealer(LocalMasterKey(key)), queue=RecordingQueue())
    client = app.test_client()
    rng = random.Random(15)
    orgs = [db_volume.org_id(n) for n in rng.sample(range(db_volume.ORGS), 50)]
    tokens = _tokens(engine, orgs)
    since, until = (now - dt.timedelta(days=60)).isoformat(), (now - dt.timedelta(days=46)).isoformat()

    def get(org: str, path: str) -> dict[str, Any]:
        resp = client.get(f"/v1/orgs/{org}{path}", headers={"Authorization": f"Bearer {tokens[org]}"})
        assert resp.status_code == 200, resp.get_data(as_text=True)
        body: dict[str, Any] = resp.get_json()
        return body

    def second_page(org: str) -> None:
        get(org, f"/backups?limit=50&cursor={get(org, '/backups?limit=50')['next_cursor']}")

    cases: list[tuple[str, Callable[[str], Any]]] = [
        ("GET /backups (first page of 50)", lambda org: get(org, "/backups?limit=50")),
        ("GET /backups (page 2 by cursor; 2 requests)", second_page),
        ("GET /audit (newest 50)", lambda org: get(org, "/audit?limit=50")),
        ("GET /audit (2 weeks, action=backup.)", lambda org: get(
            org, f"/audit?limit=50&since={since}&until={until}&action=backup.".replace("+00:00", "Z"))),
    ]
    rows = []
    for name, call in cases:
        for org in orgs[:5]:
            call(org)  # warm the caches and the pool
        times = []
        for _ in range(requests):
            org = rng.choice(orgs)
            started = time.perf_counter()
            call(org)
            times.append(time.perf_counter() - started)
        rows.append((name, *_percentiles(times), _server_ms(engine, lambda: call(rng.choice(orgs)))))
    return rows


def _server_ms(engine: sa.Engine, call: Callable[[], Any], samples: int = 20) -> float:
    """The median server-side execution time (EXPLAIN ANALYZE) of the list query a call sends."""
    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        if " ORDER BY " in statement and " DESC" in statement:
            sent.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        for _ in range(samples):
            call()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    took = []
    with engine.connect() as c:
        for statement, parameters in sent:
            plan: Any = c.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters).scalar()
            took.append(float(plan[0]["Execution Time"]))
    return statistics.median(took)


def bench_worker(url: str, instances: int, jobs: int, chunks: int) -> tuple[float, float, float, float, int]:
    """(jobs/s, tasks/s, task p50 ms, task p99 ms, connections at most) for the worker path's database work."""
    settings = Settings(database_url=url, master_key=os.urandom(32))
    engines = [make_engine(settings) for _ in range(instances)]
    stores = [DbJobStore(make_session_factory(e), ports(settings, sealer=Sealer(LocalMasterKey(os.urandom(32))),
                                                        queue=RecordingQueue()), Backup) for e in engines]
    job_ids = []
    with make_session_factory(engines[0]).begin() as s:
        for n in range(jobs):
            org = db_volume.org_id(n % db_volume.ORGS)
            row = Backup(id=new_id("bkp"), org_id=org, state="pending", include_auth=False)
            s.add(row)
            job_ids.append(row.id)
    keys = [f"d{i:05d}" for i in range(chunks)]
    plan = {"backup_id": "b", "read_time": "2026-11-01T00:00:00Z"}
    for job_id in job_ids:
        stores[0].claim(job_id, "plan")
        stores[0].save_plan(job_id, plan, keys)
        stores[0].finish_task(job_id, "plan")
    tasks = [(job_id, key) for key in keys for job_id in job_ids]  # jobs interleave, as a queue would
    lock, times = threading.Lock(), []
    finalize = []

    def instance(i: int) -> None:
        store = stores[i]
        while True:
            with lock:
                if not tasks:
                    return
                job_id, key = tasks.pop(0)
            started = time.perf_counter()
            store.claim(job_id, key)
            store.record_chunk(job_id, key, ChunkEntry(chunk_id=f"{key}-00000", key=f"chunks/{key}", records=500,
                                                       bytes_raw=400_000, bytes_stored=120_000, sha256="0" * 64),
                               0, None)
            last = store.finish_task(job_id, key)
            if last:
                store.claim(job_id, "finalize")
                entries = store.entries(job_id)
                store.complete(job_id, {"documents": sum(e.records for e in entries), "bytes_raw": 0,
                                        "bytes_stored": 0, "manifest_key": "m", "chunks": len(entries)})
                finalize.append(job_id)
            with lock:
                times.append(time.perf_counter() - started)

    started = time.perf_counter()
    with ThreadPoolExecutor(instances) as pool:
        list(pool.map(instance, range(instances)))
    elapsed = time.perf_counter() - started
    assert len(finalize) == jobs, f"{len(finalize)} of {jobs} jobs completed"
    budget = max(e.pool.size() + e.pool._max_overflow for e in engines) * instances  # type: ignore[attr-defined]
    for e in engines:
        e.dispose()
    p50, p99 = _percentiles(times)
    return jobs / elapsed, len(times) / elapsed, p50, p99, budget


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per list endpoint")
    parser.add_argument("--instances", type=int, default=8, help="simulated worker function instances")
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--chunks", type=int, default=10, help="chunk tasks per job")
    args = parser.parse_args()
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    with stack.start_postgres() as pg, postgres_database(pg.url, "bench") as url:
        engine = make_engine(url)
        upgrade(engine)
        started = time.perf_counter()
        db_volume.load(engine, now)
        print(f"loaded {db_volume.AUDIT_ROWS:,} audit rows, {db_volume.BACKUPS:,} backups in "
              f"{time.perf_counter() - started:.0f} s (generate_series, then ANALYZE)\n")
        print(f"{'API list endpoint':48} {'p50 ms':>8} {'p99 ms':>8} {'its query on the server, p50 ms':>32}")
        for name, p50, p99, server in bench_api(engine, now, args.requests):
            print(f"{name:48} {p50:8.1f} {p99:8.1f} {server:32.2f}")
        engine.dispose()
        jobs_s, tasks_s, p50, p99, budget = bench_worker(url, args.instances, args.jobs, args.chunks)
        print(f"\nworker path, {args.instances} instances at the default pool ({budget} connections at most), "
              f"{args.jobs} jobs x {args.chunks} chunk tasks:")
        print(f"  {jobs_s:.1f} jobs/s, {tasks_s:.0f} tasks/s; per task p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
