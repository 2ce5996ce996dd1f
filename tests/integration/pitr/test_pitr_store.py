"""Captured writes read back exactly as recorded, on SQLite and PostgreSQL, whatever the server's time zone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from firebackup import bootstrap
from firebackup.crypto.keys import LocalKey
from firebackup.db.models import PITRChange
from firebackup.pitr.events import CREATE, DELETE, UPDATE, CapturedWrite
from firebackup.services import pitr
from firebackup.services.context import system_transactions
from firebackup.settings import Settings
from tests.integration.pitr.pitr_workload import seed_project

pytestmark = pytest.mark.integration

T = 1_800_000_000_123_456_789  # a version instant with nanoseconds below the microsecond


def test_batches_of_creates_updates_and_deletes_read_back_in_version_order_once_each(
        engine: sa.Engine, tmp_path: Path) -> None:
    if engine.dialect.name == "postgresql":
        # The columns hold naive UTC: a server in another zone must not shift a stored instant.
        with engine.begin() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{engine.url.database}" SET timezone TO \'Asia/Tokyo\'')
        engine.dispose()
    settings = Settings(database_url=str(engine.url), master_key=os.urandom(32), queue="recording",
                        allow_local_storage=True, local_storage_root=str(tmp_path))
    plane = bootstrap.control_plane(settings, engine=engine)
    _, project_id = seed_project(plane, "src", f"file://{tmp_path}/location", LocalKey.generate_text())
    capture = pitr.Capture(system_transactions(plane.factory, plane.ports))
    targets = capture.targets("src", "(default)")

    def rows(*writes: CapturedWrite) -> list[dict[str, object]]:
        return [r for w in writes for r in capture.rows(w, targets)]

    a1 = CapturedWrite("src", "(default)", "c/a", CREATE, T, b"\x0a\x01a")
    a2 = CapturedWrite("src", "(default)", "c/a", UPDATE, T + 2, b"\x0a\x02aa")
    gone = CapturedWrite("src", "(default)", "c/a/sub/x", DELETE, T + 1, None)
    b1 = CapturedWrite("src", "(default)", "c/b", DELETE, T + 3, None)
    capture.store(rows(gone))  # a batch of deletes alone: no document in it at all
    capture.store(rows(a2, a1, a2, gone))  # out of order, a write twice in the batch, one already stored
    assert capture.record(b1) == 1
    assert capture.record(b1) == 1  # a redelivery: handed to the store, which keeps the first

    with system_transactions(plane.factory, plane.ports)() as ctx:
        got = list(pitr.changes(ctx, project_id, after=0, upto=T + 10))
        stored = ctx.session.scalar(sa.select(sa.func.count()).select_from(PITRChange))
    assert [(c.path, c.version, c.operation, c.document) for c in got] == [
        ("c/a", T, CREATE, b"\x0a\x01a"),
        ("c/a/sub/x", T + 1, DELETE, None),
        ("c/a", T + 2, UPDATE, b"\x0a\x02aa"),
        ("c/b", T + 3, DELETE, None),
    ]
    assert stored == 4
