"""Captured writes read back exactly as recorded, on SQLite and PostgreSQL, whatever the server's time zone."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from firebackup import bootstrap
from firebackup.crypto.keys import LocalKey
from firebackup.db.models import PITRChange
from firebackup.pitr.events import CREATE, DELETE, UPDATE, CapturedWrite
from firebackup.pitr.restore import last_versions
from firebackup.pitr.sealing import ChangeSealer
from firebackup.services import pitr
from firebackup.services.context import system_transactions
from firebackup.settings import Settings
from tests.integration.pitr.pitr_workload import seed_project

pytestmark = pytest.mark.integration

T = 1_800_000_000_123_456_789  # a version instant with nanoseconds below the microsecond


def _capturing(engine: sa.Engine, tmp_path: Path) -> tuple[pitr.Capture, str]:
    """A control plane on engine with one project capturing the writes of database src/(default)."""
    settings = Settings(database_url=str(engine.url), master_key=os.urandom(32), queue="recording",
                        allow_local_storage=True, local_storage_root=str(tmp_path))
    plane = bootstrap.control_plane(settings, engine=engine)
    _, project_id = seed_project(plane, "src", f"file://{tmp_path}/location", LocalKey.generate_text())
    return pitr.Capture(system_transactions(plane.factory, plane.ports)), project_id


def test_batches_of_creates_updates_and_deletes_read_back_in_version_order_once_each(
        engine: sa.Engine, tmp_path: Path) -> None:
    if engine.dialect.name == "postgresql":
        # The columns hold naive UTC: a server in another zone must not shift a stored instant.
        with engine.begin() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{engine.url.database}" SET timezone TO \'Asia/Tokyo\'')
        engine.dispose()
    capture, project_id = _capturing(engine, tmp_path)
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

    with capture.tx() as ctx:
        got = list(pitr.changes(ctx, project_id, after=0, upto=T + 10))
        stored = ctx.session.scalar(sa.select(sa.func.count()).select_from(PITRChange))
    assert [(c.path, c.version, c.operation, c.document) for c in got] == [
        ("c/a", T, CREATE, b"\x0a\x01a"),
        ("c/a/sub/x", T + 1, DELETE, None),
        ("c/a", T + 2, UPDATE, b"\x0a\x02aa"),
        ("c/b", T + 3, DELETE, None),
    ]
    assert stored == 4


def test_the_paths_a_restore_leaves_out_come_from_rows_and_segments_in_window_and_scope_without_opening_a_document(
        engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    capture, project_id = _capturing(engine, tmp_path)
    base, at = T, T + 10  # the window is (base, at], to the nanosecond below a microsecond

    def write(path: str, version: int, operation: str = UPDATE) -> None:
        capture.record(CapturedWrite("src", "(default)", path, operation, version,
                                     None if operation == DELETE else b"\x0a\x01x"))

    write("c/in_segment", base + 2)
    write("c/segment_too_early", base)
    assert pitr.compact_project(capture.tx, project_id, dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc),
                                max_changes=100).segments == 1
    write("c/at_base", base)  # the base backup already holds it
    write("c/one_ns_later", base + 1)
    write("c/gone", base + 5, DELETE)
    write("c/a/sub/x", base + 4)
    write("c/at_the_instant", at)
    write("c/one_ns_after_the_instant", at + 1)
    write("d/out_of_scope", base + 3)
    in_scope = {"c/in_segment", "c/one_ns_later", "c/gone", "c/a/sub/x", "c/at_the_instant"}
    with capture.tx() as ctx:
        latest = last_versions(pitr.captured_changes(ctx, project_id, after=base, upto=at, prefix="c"),
                               after=base, upto=at)
    assert set(latest) == in_scope and latest["c/gone"].document is None

    def refuse(self: ChangeSealer, path: str, version: int, sealed: bytes) -> bytes:
        raise AssertionError(f"the paths reader opened the captured document of {path}")

    monkeypatch.setattr(ChangeSealer, "open", refuse)
    with capture.tx() as ctx:
        scoped = pitr.changed_paths(ctx, project_id, after=base, upto=at, prefix="c")
        whole = pitr.changed_paths(ctx, project_id, after=base, upto=at)
        one = pitr.changed_paths(ctx, project_id, after=base, upto=at, prefix="c/a")
    assert scoped == in_scope
    assert whole == in_scope | {"d/out_of_scope"}
    assert one == set(), "a document scope is that document alone, not its subcollections"
