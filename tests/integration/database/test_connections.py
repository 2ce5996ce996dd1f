"""PostgreSQL connections: each message sent at once, and a connection the server dropped replaced unseen."""

from __future__ import annotations

import socket

import sqlalchemy as sa

from firebackup.db.session import make_engine
from tests.integration.conftest import postgres_database


def test_every_pooled_postgresql_connection_has_nagles_algorithm_off(postgres_server) -> None:
    # pg8000 writes through an 8 KiB buffer: with Nagle on, a statement with more than 8 KiB of
    # parameters waited ~40 ms for the server's delayed ACK (bench/pitr.py: a 15-row INSERT took 48 ms).
    with postgres_database(postgres_server.url, "nodelay") as url:
        engine = make_engine(url)
        try:
            conns = [engine.connect() for _ in range(2)]
            for conn in conns:
                sock = conn.connection.driver_connection._usock  # type: ignore[union-attr]
                assert sock.family in (socket.AF_INET, socket.AF_INET6)
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
                assert conn.execute(sa.text("SELECT length(:s)"), {"s": "x" * 20000}).scalar() == 20000
            for conn in conns:
                conn.close()
        finally:
            engine.dispose()


def test_after_the_server_drops_every_pooled_connection_the_next_unit_of_work_runs_on_a_new_one(
        postgres_server) -> None:
    with postgres_database(postgres_server.url, "dropped") as url:
        engine = make_engine(url)
        admin = sa.create_engine(postgres_server.url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                before = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
            with admin.connect() as conn:  # as a restart or a failover would
                dropped = conn.execute(sa.text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                               "WHERE datname = :db"), {"db": sa.make_url(url).database}).scalar()
            assert dropped == 1
            with engine.connect() as conn:  # the pool's pre-ping finds the dead one and opens another
                after = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
            assert after != before
        finally:
            admin.dispose()
            engine.dispose()
