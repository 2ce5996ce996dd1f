"""PITR end to end on real servers: Firestore writes on the emulator, their Eventarc CloudEvents posted to
`pitr_capture` under functions-framework (built folder, PostgreSQL store), restores to chosen instants
compared document by document with the emulator's own read at that instant."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from firebackup import bootstrap, cli
from firebackup.db.migrate import upgrade
from firebackup.crypto.keys import LocalKey
from firebackup.db.models import PITRChange
from firebackup.engine.backup import BackupRequest, run_backup
from firebackup.engine.repository import Repository
from firebackup.engine.sources import FirestoreSource
from firebackup.firestore.grpc import open_firestore
from firebackup.pitr.events import format_ns, parse_instant
from firebackup.pitr.restore import PointInTimeRequest, restore_at
from firebackup.services import pitr
from firebackup.services.context import system_transactions
from firebackup.settings import Settings
from firebackup.storage import open_storage
from infra import build_functions
from infra.local.function_server import FunctionServer, firestore_write_cloudevent, start_built
from tests.integration.conftest import postgres_database
from tests.integration.pitr.pitr_workload import DocPb, Workload, seed_project, cloudevents, fields_of, paths, post_all, read_all

pytestmark = pytest.mark.integration

DOCS, OPS_BEFORE_BASE, OPS_AFTER_BASE, PER_ROUND, INSTANTS = 2000, 2000, 8000, 100, 20


@dataclass
class Run:
    """One shared run: the control plane, the project, the capture function, the workload and its base backup."""

    plane: Any
    project_id: str
    source: str  # the emulator project written to
    emulator_host: str
    server: FunctionServer
    workload: Workload
    repo: Repository
    kek: Any
    base_id: str
    base_read_time: int
    statuses: list[int]
    location: str
    key_file: Path  # the organization's key, as the CLI is given it


@pytest.fixture(scope="module")
def run(firestore_emulator, postgres_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    host = firestore_emulator.env["FIRESTORE_EMULATOR_HOST"]
    root = tmp_path_factory.mktemp("storage")
    location = f"file://{root}/location"
    with postgres_database(postgres_server.url, "pitr") as url:
        master = base64.b64encode(os.urandom(32)).decode()
        env = {"FIREBACKUP_DATABASE_URL": url, "FIREBACKUP_MASTER_KEY": master, "FIREBACKUP_QUEUE": "recording",
               "FIRESTORE_EMULATOR_HOST": host, "FIREBACKUP_ALLOW_LOCAL_STORAGE": "1",
               "FIREBACKUP_LOCAL_STORAGE_ROOT": str(root), "THREADS": "32"}  # requests in flight share commits
        settings = Settings.from_env(env)
        plane = bootstrap.control_plane(settings)
        upgrade(plane.engine)
        source = f"pitr-src-{secrets.token_hex(4)}"
        # The organization's backup key comes from a key file the CLI is given, as an operator would export it.
        key_file = root / "org.key"
        key_file.write_text(LocalKey.generate_text())
        key_file.chmod(0o600)
        kek = LocalKey.from_text(key_file.read_text())
        _, project_id = seed_project(plane, source, location, key_file.read_text())
        out = tmp_path_factory.mktemp("functions")
        build_functions.build(out)
        conn = open_firestore(source, emulator_host=host)
        with start_built(out, "pitr_capture", env) as server:
            workload = Workload(conn)
            docs = paths(DOCS)
            workload.run(docs, OPS_BEFORE_BASE, PER_ROUND)
            repo = Repository(open_storage(location))
            result = run_backup(BackupRequest(project=source), source=FirestoreSource(open_firestore(source, emulator_host=host)),
                                repo=repo, kek=kek)
            workload.run(docs, OPS_AFTER_BASE, PER_ROUND)
            statuses = post_all(server, cloudevents(source, "(default)", workload.events, duplicate=0.1, seed=3),
                                threads=32)
            yield Run(plane, project_id, source, host, server, workload, repo, kek, result.backup_id,
                      parse_instant(result.read_time), statuses, location, key_file)
        conn.close()
        plane.engine.dispose()


def _rows(run: Run) -> int:
    with run.plane.factory() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(PITRChange)
                                  .where(PITRChange.project_id == run.project_id)) or 0)


def test_every_write_is_recorded_once_however_often_and_in_whatever_order_it_arrives(run: Run) -> None:
    assert set(run.statuses) == {200}
    assert _rows(run) == len(run.workload.events)


def _instants(run: Run, seed: int) -> list[int]:
    rng = random.Random(seed)
    after = [c for c in run.workload.commits if c > run.base_read_time]
    # Half exactly at a commit (the boundary is inclusive), half anywhere between (to the microsecond:
    # the finest read_time Firestore takes).
    return sorted(rng.sample(after, INSTANTS // 2) + [rng.randrange(run.base_read_time, after[-1]) // 1000 * 1000
                                                     for _ in range(INSTANTS // 2)])


def _assert_restored(run: Run, target: Any, at: int, what: str) -> None:
    expected, got = read_all(run.workload.conn, at), read_all(target)
    assert sorted(got) == sorted(expected), what
    assert all(fields_of(got[p]) == fields_of(expected[p]) for p in expected), what


def test_a_restore_to_each_of_twenty_instants_equals_the_emulator_read_at_that_instant(run: Run) -> None:
    tx = system_transactions(run.plane.factory, run.plane.ports)
    for i, at in enumerate(_instants(run, 11)):
        target = open_firestore(f"pitr-api-{secrets.token_hex(3)}-{i}", emulator_host=run.emulator_host)
        try:
            changes = pitr.captured_changes(tx, run.project_id, after=run.base_read_time, upto=at)
            result = restore_at(PointInTimeRequest(at=at, project=target.project, keep_references=True),
                                target=target, repo=run.repo, base_backup_id=run.base_id,
                                base_read_time=run.base_read_time, kek=run.kek, changes=changes)
            assert result.ok
            _assert_restored(run, target, at, f"instant {i}")
        finally:
            target.close()


def test_a_write_of_a_project_without_pitr_is_acknowledged_and_dropped(run: Run) -> None:
    before = _rows(run)
    headers, body = firestore_write_cloudevent("demo-nobody", "(default)", "a/b", value=None,
                                               old_value=b"\x0a\x05x/a/b", when="2026-11-29T10:15:00Z")
    assert run.server.deliver_firestore_write(headers, body).status == 200
    assert _rows(run) == before


def test_an_event_too_large_to_carry_its_document_is_completed_by_reading_it_at_its_update_time(run: Run) -> None:
    last = run.workload.events[-1]
    path = next(p for p in sorted(run.workload.current) if p != last.path)
    [event] = [e for e in run.workload.events if e.path == path][-1:]
    headers, _ = firestore_write_cloudevent(run.source, "(default)", path, value=event.value, old_value=None,
                                            when=event.when, event_id="big-1")
    with run.plane.factory.begin() as session:  # forget the write, so only the bare event can bring it back
        session.execute(sa.delete(PITRChange).where(PITRChange.project_id == run.project_id,
                                                    PITRChange.event_id == pitr.change_id("(default)", path,
                                                                                          event.version)))
    assert run.server.deliver_firestore_write(headers, b"").status == 200
    tx = system_transactions(run.plane.factory, run.plane.ports)
    with tx() as ctx:
        [change] = [c for c in pitr.changes(ctx, run.project_id, after=event.version - 1, upto=event.version)
                    if c.path == path]
    assert change.version == event.version and change.document is not None and event.value is not None
    got, sent = DocPb.FromString(change.document), DocPb.FromString(event.value)
    assert (got.name, got.update_time, fields_of(got)) == (sent.name, sent.update_time, fields_of(sent))


def test_compaction_moves_every_row_into_segments_that_the_cli_restores_from_with_the_key_file(
        run: Run, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    tx = system_transactions(run.plane.factory, run.plane.ports)
    rows = _rows(run)
    done = pitr.compact_all(tx, dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1),
                            older_than=dt.timedelta(0), max_changes=4000)
    assert (done.changes, done.segments, _rows(run)) == (rows, -(-rows // 4000), 0)
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", run.emulator_host)
    for i, at in enumerate(_instants(run, 12)):
        target = f"pitr-cli-{secrets.token_hex(3)}-{i}"
        code = cli.main(["restore", "--at", format_ns(at), "--from", run.location, "--project", target,
                         "--source-project", run.source, "--key-file", str(run.key_file), "--keep-references",
                         "--json"])
        out = json.loads(capsys.readouterr().out)
        assert code == 0 and out["backup_id"] == run.base_id and out["at"] == format_ns(at)
        conn = open_firestore(target, emulator_host=run.emulator_host)
        try:
            _assert_restored(run, conn, at, f"instant {i}")
        finally:
            conn.close()
