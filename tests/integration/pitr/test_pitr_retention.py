"""PITR retention on SQLite and PostgreSQL: what the oldest kept restore point needs stays, rows and segments alike."""

from __future__ import annotations

import base64
import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from firebackup import bootstrap
from firebackup.crypto.keys import LocalKey
from firebackup.db.models import Backup, PITRChange
from firebackup.pitr.events import CREATE, CapturedWrite, instant_ns
from firebackup.pitr.segments import SegmentRepository, list_segments
from firebackup.services import pitr
from firebackup.services.context import system_transactions
from firebackup.settings import Settings
from firebackup.storage import open_storage
from tests.integration.pitr.pitr_workload import seed_project

pytestmark = pytest.mark.integration

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(days=1)
CHANGE_DAYS = (12, 9, 7.5, 6, 1)  # days before NOW


@pytest.fixture
def world(engine: sa.Engine, tmp_path: Path) -> Any:
    settings = Settings(database_url=str(engine.url), master_key=os.urandom(32), queue="recording",
                        allow_local_storage=True, local_storage_root=str(tmp_path))
    plane = bootstrap.control_plane(settings, engine=engine)
    key = LocalKey.generate_text()
    location = f"file://{tmp_path}/location"
    org_id, project_id = seed_project(plane, "src", location, key)
    tx = system_transactions(plane.factory, plane.ports)
    capture = pitr.Capture(tx)
    for days in CHANGE_DAYS:
        capture.record(CapturedWrite("src", "(default)", f"c/d{days}", CREATE, instant_ns(NOW - days * DAY),
                                     b"\x0a\x03x/y"))
    return plane, tx, org_id, project_id, location, LocalKey.from_text(key)


def _backups(world: Any, *days: float) -> None:
    plane, _, org_id, project_id, _, _ = world
    with plane.factory.begin() as session:
        for d in days:
            session.add(Backup(org_id=org_id, project_id=project_id, state="completed", repo_backup_id=None,
                               read_time=NOW - d * DAY))


def _left(world: Any) -> list[float]:
    plane, _, _, project_id, _, _ = world
    with plane.factory() as session:
        times = session.scalars(sa.select(PITRChange.update_time).where(PITRChange.project_id == project_id))
        return sorted(round((NOW - t) / DAY, 1) for t in times)


def test_retention_keeps_every_change_after_the_base_of_the_oldest_kept_restore_point(world: Any) -> None:
    _backups(world, 10, 8, 2)  # the oldest restore point kept (7 days ago) starts from the backup of 8 days ago
    done = pitr.expire(world[1], world[3], NOW)
    assert done.rows_expired == 2 and _left(world) == [1, 6, 7.5]


def test_retention_removes_nothing_while_no_backup_exists_to_restore_from(world: Any) -> None:
    assert pitr.expire(world[1], world[3], NOW).rows_expired == 0 and len(_left(world)) == len(CHANGE_DAYS)


def test_retention_drops_a_segment_only_when_all_of_it_is_older_than_the_base_needed(world: Any) -> None:
    _, tx, _, project_id, location, kek = world
    _backups(world, 10, 8, 2)
    compacted = pitr.compact_project(tx, project_id, NOW - 5 * DAY, max_changes=2)
    assert (compacted.segments, compacted.changes, _left(world)) == (2, 4, [1])
    assert pitr.expire(tx, project_id, NOW).segments_expired == 1
    [kept] = list_segments(SegmentRepository(open_storage(location)), kek, project="src")
    assert kept.first == instant_ns(NOW - 7.5 * DAY) and kept.last == instant_ns(NOW - 6 * DAY)
