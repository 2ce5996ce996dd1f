"""At the database's limit, on real PostgreSQL: more concurrent requests than the pool holds, and a server that
refuses connections. The API answers 503 with Retry-After (never 500), a worker answers 503 so Cloud Tasks
delivers the task again, and nothing is half-written."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pg8000.native
import pytest
import sqlalchemy as sa

from firebackup.api.app import RETRY_AFTER_SECONDS
from firebackup.db.migrate import upgrade
from firebackup.db.session import make_engine
from firebackup.runtime.worker import TaskEndpoint
from firebackup.runtime.worker_auth import SECRET_HEADER, SharedSecret
from firebackup.settings import Settings
from tests.integration.conftest import postgres_database
from tests.integration.controlplane.jobs_world import World, seed

POOL = 2
REQUESTS = 8


@pytest.fixture
def pg_url(postgres_server) -> Iterator[str]:
    with postgres_database(postgres_server.url, "l") as url:
        yield url


def _native(url: str) -> pg8000.native.Connection:
    u = sa.make_url(url)
    return pg8000.native.Connection(u.username, host=u.host, port=u.port, password=u.password, database=u.database)


def _count(url: str, sql: str) -> int:
    conn = _native(url)
    try:
        return int(conn.run(sql)[0][0])
    finally:
        conn.close()


def _unavailable(resp: Any) -> bool:
    # flask-limiter rewrites Retry-After to the later of ours and its own window's reset, in whole seconds.
    wait = int(resp.headers.get("Retry-After", "0"))
    return (resp.status_code == 503 and RETRY_AFTER_SECONDS - 1 <= wait <= 60
            and resp.get_json()["error"]["code"] == "unavailable")


def test_requests_beyond_the_pool_answer_503_with_retry_after_and_write_nothing(pg_url: str, tmp_path: Path) -> None:
    upgrade(make_engine(pg_url, poolclass=sa.pool.NullPool))
    engine = make_engine(Settings(database_url=pg_url, db_pool_size=POOL, db_max_overflow=0, db_pool_timeout=0.5))
    try:
        world = World(engine, tmp_path)
        body = {"project_id": world.org.project("limit-project"), "destination_id": world.org.destination(tmp_path / "d")}
        # Another client holds the backups table: the first POOL requests take every connection and wait
        # on it; the others find the pool empty for the whole pool timeout.
        holder = _native(pg_url)
        holder.run("BEGIN")
        holder.run("LOCK TABLE backups IN EXCLUSIVE MODE")
        answers: list[Any] = []
        answered = threading.Condition()

        def post() -> None:
            resp = world.org.call("POST", "/backups", body)
            with answered:
                answers.append(resp)
                answered.notify_all()

        threads = [threading.Thread(target=post) for _ in range(REQUESTS)]
        for t in threads:
            t.start()
        with answered:
            assert answered.wait_for(lambda: len(answers) == REQUESTS - POOL, timeout=60)
        holder.run("ROLLBACK")
        holder.close()
        for t in threads:
            t.join(timeout=60)
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [202] * POOL + [503] * (REQUESTS - POOL), [r.get_data(as_text=True) for r in answers]
        assert all(_unavailable(r) for r in answers if r.status_code == 503)
        assert _count(pg_url, "SELECT count(*) FROM backups") == POOL
        assert _count(pg_url, "SELECT count(*) FROM audit_log WHERE action = 'backup.start'") == POOL
        assert len(world.queue.tasks) == POOL
        # The pool is whole again: the next request goes through.
        assert world.org.call("POST", "/backups", body).status_code == 202
    finally:
        engine.dispose()


def test_a_server_refusing_connections_makes_the_api_and_the_worker_answer_503_and_the_job_waits(
        pg_url: str, tmp_path: Path, firestore_emulator, monkeypatch, project_id: str) -> None:
    firestore_emulator.apply(monkeypatch)
    seed(project_id)
    upgrade(make_engine(pg_url, poolclass=sa.pool.NullPool))
    role_url = _limited(pg_url)
    engine = make_engine(Settings(database_url=role_url, db_pool_size=1, db_max_overflow=0, db_pool_timeout=0.5))
    try:
        world = World(engine, tmp_path)
        backup_id = world.start(project_id)
        (task, payload), = world.queue.tasks
        secret = secrets.token_hex(16)
        endpoint = TaskEndpoint(world.handlers, SharedSecret(secret))
        delivery = ({SECRET_HEADER: secret}, json.dumps({"task": task, "payload": payload}).encode())
        engine.dispose()  # the idle pooled connection would hold the role's one slot
        holder = _native(role_url)  # ...which another client now takes
        try:
            answer = world.org.call("GET", f"/backups/{backup_id}")
            assert _unavailable(answer), answer.get_data(as_text=True)
            assert world.org.call("POST", "/backups", {"project_id": "x", "destination_id": "y"}).status_code == 503
            body, status = endpoint.respond(*delivery)
            assert status == 503, body
        finally:
            holder.close()
        assert _count(pg_url, f"SELECT count(*) FROM backups WHERE id = '{backup_id}' AND state = 'pending'") == 1
        assert _count(pg_url, "SELECT count(*) FROM backups") == 1
        assert _count(pg_url, "SELECT count(*) FROM job_tasks") == 0
        # Cloud Tasks delivers it again once the server has room: the job runs on.
        _, status = endpoint.respond(*delivery)
        assert status == 204
        assert world.row(backup_id).state == "running"
    finally:
        engine.dispose()
        _drop_limited(pg_url, role_url)


def _limited(pg_url: str) -> str:
    """pg_url as a new ordinary role allowed ONE connection (superusers ignore connection limits)."""
    role, password = f"lim_{secrets.token_hex(4)}", secrets.token_hex(12)
    admin = _native(pg_url)
    try:
        admin.run(f"CREATE ROLE {role} LOGIN PASSWORD '{password}' CONNECTION LIMIT 1")
        for grant in ("ALL ON SCHEMA public", "ALL ON ALL TABLES IN SCHEMA public", "ALL ON ALL SEQUENCES IN SCHEMA public"):
            admin.run(f"GRANT {grant} TO {role}")
    finally:
        admin.close()
    return sa.make_url(pg_url).set(username=role, password=password).render_as_string(hide_password=False)


def _drop_limited(pg_url: str, role_url: str) -> None:
    role = sa.make_url(role_url).username
    admin = _native(pg_url)
    try:
        admin.run(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
        admin.run(f"DROP OWNED BY {role}")
        admin.run(f"DROP ROLE {role}")
    finally:
        admin.close()
