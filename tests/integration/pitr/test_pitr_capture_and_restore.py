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
from firebackup.db.models import AuditLog, Backup, JobTask, PITRChange, Project, Restore, StorageDestination
from firebackup.engine.backup import BackupRequest, run_backup
from firebackup.engine.jobs import LeaseHeld
from firebackup.engine.repository import Repository
from firebackup.engine.sources import FirestoreSource
from firebackup.firestore.grpc import open_firestore
from firebackup.pitr.events import format_ns, parse_instant
from firebackup.pitr.history import diff
from firebackup.services import pitr
from firebackup.services.context import system_transactions
from firebackup.settings import Settings
from firebackup.storage import open_storage
from infra import build_functions
from infra.local.function_server import FunctionServer, firestore_write_cloudevent, start_built
from firebackup.firestore.documents import parse_rfc3339
from tests.integration.conftest import postgres_database
from tests.integration.controlplane.jobs_world import Killed
from tests.integration.controlplane.world import seed_token
from tests.integration.pitr.pitr_workload import DocPb, Workload, seed_project, cloudevents, fields_of, paths, post_all, read_all

pytestmark = pytest.mark.integration

# 10,000 writes on 2,000 documents: 20 rounds before the first backup, 40 captured, 10 during a capture
# outage, a second backup, 30 captured.
DOCS, PER_ROUND, INSTANTS = 2000, 100, 20
ROUNDS_BEFORE_BASE, ROUNDS_CAPTURED, ROUNDS_MISSED, ROUNDS_AFTER = 20, 40, 10, 30


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
    missed: list[int]  # commit instants of the writes capture never saw
    second_read_time: int  # the backup taken after the outage
    app: Any  # the API, over the same database
    token: str  # an owner's API token
    org_id: str


@pytest.fixture(scope="module")
def run(firestore_emulator, postgres_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    host = firestore_emulator.env["FIRESTORE_EMULATOR_HOST"]
    root = tmp_path_factory.mktemp("storage")
    location = f"file://{root}/location"
    with postgres_database(postgres_server.url, "pitr") as url:
        master = base64.b64encode(os.urandom(32)).decode()
        env = {"FIREBACKUP_DATABASE_URL": url, "FIREBACKUP_MASTER_KEY": master, "FIREBACKUP_QUEUE": "recording",
               "FIRESTORE_EMULATOR_HOST": host, "FIREBACKUP_ALLOW_LOCAL_STORAGE": "1",
               "FIREBACKUP_LOCAL_STORAGE_ROOT": str(root)}
        settings = Settings.from_env(env)
        plane = bootstrap.control_plane(settings)
        upgrade(plane.engine)
        source = f"pitr-src-{secrets.token_hex(4)}"
        # The organization's backup key comes from a key file the CLI is given, as an operator would export it.
        key_file = root / "org.key"
        key_file.write_text(LocalKey.generate_text())
        key_file.chmod(0o600)
        kek = LocalKey.from_text(key_file.read_text())
        org_id, project_id = seed_project(plane, source, location, key_file.read_text())
        out = tmp_path_factory.mktemp("functions")
        build_functions.build(out)
        conn = open_firestore(source, emulator_host=host)
        with start_built(out, "pitr_capture", env) as server:
            workload = Workload(conn)
            docs = paths(DOCS)
            repo = Repository(open_storage(location))
            workload.run(docs, ROUNDS_BEFORE_BASE * PER_ROUND, PER_ROUND)
            first = _backup(plane, repo, kek, source, host, org_id, project_id)
            workload.run(docs, ROUNDS_CAPTURED * PER_ROUND, PER_ROUND)
            captured = len(workload.events)
            workload.run(docs, ROUNDS_MISSED * PER_ROUND, PER_ROUND)
            missed = sorted({e.version for e in workload.events[captured:]})
            outage_ends = len(workload.events)
            second = _backup(plane, repo, kek, source, host, org_id, project_id)
            workload.run(docs, ROUNDS_AFTER * PER_ROUND, PER_ROUND)
            delivered = workload.events[:captured] + workload.events[outage_ends:]
            statuses = post_all(server, cloudevents(source, "(default)", delivered, duplicate=0.1, seed=3), threads=32)
            with plane.factory.begin() as session:
                token = seed_token(session, org_id, "owner")
            yield Run(plane, project_id, source, host, server, workload, repo, kek, first[0], first[1], statuses,
                      location, key_file, missed, second[1], bootstrap.api_app(settings, engine=plane.engine), token,
                      org_id)
        conn.close()
        plane.engine.dispose()


def _backup(plane: Any, repo: Repository, kek: Any, source: str, host: str, org_id: str, project_id: str
            ) -> tuple[str, int]:
    """A backup of the source into the location, recorded as the control plane records a completed one."""
    result = run_backup(BackupRequest(project=source), source=FirestoreSource(open_firestore(source, emulator_host=host)),
                        repo=repo, kek=kek)
    with plane.factory.begin() as session:
        dest = session.scalar(sa.select(StorageDestination.id).where(StorageDestination.org_id == org_id))
        session.add(Backup(org_id=org_id, project_id=project_id, destination_id=dest, state="completed",
                           repo_backup_id=result.backup_id, read_time=parse_rfc3339(result.read_time),
                           documents=result.documents))
    return result.backup_id, parse_instant(result.read_time)


def _rows(run: Run) -> int:
    with run.plane.factory() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(PITRChange)
                                  .where(PITRChange.project_id == run.project_id)) or 0)


def test_every_write_is_recorded_once_however_often_and_in_whatever_order_it_arrives(run: Run) -> None:
    assert set(run.statuses) == {200}
    assert _rows(run) == len([e for e in run.workload.events if e.version not in set(run.missed)])


def _instants(run: Run, seed: int) -> list[int]:
    """Instants after the first backup and outside the outage's uncertain stretch (up to the second backup)."""
    rng = random.Random(seed)
    after = [c for c in run.workload.commits
             if run.base_read_time < c < run.missed[0] - 1 or c > run.second_read_time]
    # Half exactly at a commit (the boundary is inclusive), half anywhere between (to the microsecond:
    # the finest read_time Firestore takes).
    between = []
    while len(between) < INSTANTS // 2:
        at = rng.randrange(run.base_read_time, after[-1]) // 1000 * 1000
        if at < run.missed[0] - 1 or at > run.second_read_time:
            between.append(at)
    return sorted(rng.sample(after, INSTANTS // 2) + between)


def _assert_restored(run: Run, target: Any, at: int, what: str) -> None:
    expected, got = read_all(run.workload.conn, at), read_all(target)
    assert sorted(got) == sorted(expected), what
    assert all(fields_of(got[p]) == fields_of(expected[p]) for p in expected), what


def _api(run: Run, method: str, path: str, body: Any = None) -> Any:
    return run.app.test_client().open(f"/v1/orgs/{run.org_id}/projects/{run.project_id}{path}", method=method,
                                      json=body, headers={"Authorization": f"Bearer {run.token}"})


def _drain(run: Run, *, twice: bool = False) -> list[str]:
    """Run the API's queued tasks as the restore_worker would, until none is left; the names run.

    twice: deliver every task a second time right after the first (at-least-once delivery).
    """
    plane = run.app.extensions["firebackup_control_plane"]
    handlers, queue, ran = plane.workers.handlers(), plane.ports.queue, []
    while queue.tasks:
        name, payload = queue.tasks.pop(0)
        for _ in range(2 if twice else 1):
            handlers[name](payload)
        ran.append(name)
    return ran


def _restore(run: Run, body: dict[str, Any]) -> dict[str, Any]:
    """POST a point-in-time restore (202, a pending restore job), run its tasks, and GET the finished restore."""
    answer = _api(run, "POST", "/pitr/restore", body)
    assert answer.status_code == 202, answer.get_json()
    started = answer.get_json()
    assert started["state"] == "pending" and started["at"] == format_ns(parse_instant(body["at"]))
    _drain(run)
    done = run.app.test_client().get(f"/v1/orgs/{run.org_id}/restores/{started['id']}",
                                      headers={"Authorization": f"Bearer {run.token}"})
    assert done.status_code == 200, done.get_json()
    return dict(done.get_json())


def _target_project(run: Run, name: str) -> str:
    with run.plane.factory.begin() as session:
        row = Project(org_id=run.org_id, name=name, gcp_project_id=name, auth_kind="service_account")
        session.add(row)
        session.flush()
        return row.id


def test_the_api_restores_each_of_twenty_instants_to_what_the_emulator_read_at_that_instant(run: Run) -> None:
    for i, at in enumerate(_instants(run, 11)):
        name = f"pitr-api-{secrets.token_hex(3)}-{i}"
        restore = _restore(run, {"at": format_ns(at), "target_project_id": _target_project(run, name),
                                 "keep_references": True})
        assert restore["state"] == "completed" and restore["progress"] == 1.0, restore["error"]
        assert restore["documents_failed"] == 0 and restore["warnings"] == []
        target = open_firestore(name, emulator_host=run.emulator_host)
        try:
            _assert_restored(run, target, at, f"instant {i}")
        finally:
            target.close()


def test_a_capture_outage_is_reported_as_a_gap_that_holds_exactly_the_missed_instants(run: Run) -> None:
    tx = system_transactions(run.plane.factory, run.plane.ports)
    pitr.check_backups(tx, run.project_id)
    window = _api(run, "GET", "/pitr").get_json()
    [gap] = window["gaps"]
    start, end = parse_instant(gap["start"]), parse_instant(gap["end"])
    captured = [c for c in run.workload.commits if c not in set(run.missed)]
    assert all(start < m < end for m in run.missed)
    assert not [c for c in captured if start < c < end], "no captured instant lies inside the gap"
    assert start == max(c for c in captured if c < run.missed[0])
    assert window["earliest_restorable"] == format_ns(run.base_read_time // 1000 * 1000)
    inside = run.missed[len(run.missed) // 2]
    refused = _api(run, "POST", "/pitr/restore", {"at": format_ns(inside), "dry_run": True})
    assert refused.status_code == 409 and "capture missed writes" in refused.get_json()["error"]["message"]
    warned = _restore(run, {"at": format_ns(inside), "dry_run": True, "allow_gaps": True})
    assert warned["state"] == "completed" and warned["allow_gaps"] and len(warned["warnings"]) == 1


def test_a_write_of_a_project_without_pitr_or_a_garbled_event_is_acknowledged_and_dropped(run: Run) -> None:
    before = _rows(run)
    headers, body = firestore_write_cloudevent("demo-nobody", "(default)", "a/b", value=None,
                                               old_value=b"\x0a\x05x/a/b", when="2026-11-29T10:15:00Z")
    assert run.server.deliver_firestore_write(headers, body).status == 200
    # A body that is no DocumentEventData, for a project that has PITR: acknowledged too, never retried.
    garbled, _ = firestore_write_cloudevent(run.source, "(default)", "a/b", value=None, old_value=None,
                                            when="2026-11-29T10:15:00Z")
    assert run.server.deliver_firestore_write(garbled, b"\x0a\xff\x01garbage").status == 200
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
        base = run.base_id if at < run.second_read_time else _second_id(run)
        assert code == 0 and out["backup_id"] == base and out["at"] == format_ns(at)
        conn = open_firestore(target, emulator_host=run.emulator_host)
        try:
            _assert_restored(run, conn, at, f"instant {i}")
        finally:
            conn.close()


def test_the_cli_lists_a_documents_history_and_diffs_it_between_two_instants(
        run: Run, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # After the compaction test: every captured change is in the location's segments.
    missed = set(run.missed)
    counts: dict[str, list[int]] = {}
    for e in run.workload.events:
        if e.version not in missed:
            counts.setdefault(e.path, []).append(e.version)
    path = max(sorted(counts), key=lambda p: len(counts[p]))
    common = ["--from", run.location, "--project", run.source, "--key-file", str(run.key_file), "--json"]
    assert cli.main(["history", path, *common]) == 0
    versions = json.loads(capsys.readouterr().out)["versions"]
    assert [parse_instant(v["at"]) for v in versions if v["source"] == "capture"] == sorted(counts[path])
    assert {v["source"] for v in versions} - {"capture"} <= {run.base_id, _second_id(run)}
    first, second = sorted(counts[path])[1], sorted(counts[path])[-1]
    assert cli.main(["diff", path, "--at", format_ns(first), "--at", format_ns(second), *common]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = [run.workload.read([path], at).get(path) for at in (first, second)]
    assert out["changes"] == diff(*expected) and out["exists"] == [d is not None for d in expected]
    # The API says the same, from the control plane's records.
    answer = run.app.test_client().get(
        f"/v1/orgs/{run.org_id}/projects/{run.project_id}/pitr/history",
        query_string={"path": path, "at": format_ns(first), "until": format_ns(second)},
        headers={"Authorization": f"Bearer {run.token}"})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert [parse_instant(v["at"]) for v in body["versions"] if v["source"] == "capture"] == sorted(counts[path])
    assert body["diff"] == diff(*expected)


def _second_id(run: Run) -> str:
    with run.plane.factory() as session:
        return str(session.scalar(sa.select(Backup.repo_backup_id).where(Backup.project_id == run.project_id)
                                  .order_by(Backup.read_time.desc()).limit(1)))


def test_a_restore_scoped_to_a_collection_or_a_document_writes_only_what_lies_under_it(run: Run) -> None:
    at = _instants(run, 13)[-1]
    expected = read_all(run.workload.conn, at)
    document = next(p for p in sorted(expected) if p.count("/") == 3)  # a document in a subcollection
    for scope, wanted in (("c1", {p for p in expected if p.startswith("c1/")}), (document, {document})):
        name = f"pitr-scope-{secrets.token_hex(3)}"
        restore = _restore(run, {"at": format_ns(at), "target_project_id": _target_project(run, name),
                                 "keep_references": True, "scope": scope})
        assert restore["state"] == "completed" and restore["scope"] == scope, restore["error"]
        target = open_firestore(name, emulator_host=run.emulator_host)
        try:
            got = read_all(target)
        finally:
            target.close()
        assert set(got) == wanted and all(fields_of(got[p]) == fields_of(expected[p]) for p in wanted)


def test_a_point_in_time_restore_whose_changes_task_died_is_redone_on_redelivery_with_exact_counts(
        run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _instants(run, 17)[len(_instants(run, 17)) // 3]
    name = f"pitr-again-{secrets.token_hex(3)}"
    answer = _api(run, "POST", "/pitr/restore", {"at": format_ns(at), "target_project_id": _target_project(run, name),
                                                  "keep_references": True})
    assert answer.status_code == 202, answer.get_json()
    restore_id = answer.get_json()["id"]
    plane = run.app.extensions["firebackup_control_plane"]
    runner = plane.workers.restores
    finish = runner.finish

    def die_after_writing(job_id: str, key: str, *args: Any, **kwargs: Any) -> None:
        if key == "changes":
            raise Killed()  # every change was written; the instance died before recording it
        finish(job_id, key, *args, **kwargs)

    monkeypatch.setattr(runner, "finish", die_after_writing)
    lost = []
    queue = plane.ports.queue
    while queue.tasks:
        task = queue.tasks.pop(0)
        try:
            plane.workers.handlers()[task[0]](task[1])
        except Killed:
            lost.append(task)
    monkeypatch.setattr(runner, "finish", finish)
    assert [name for name, _ in lost] == ["restore.changes"]
    assert _restore_row(run, restore_id).state == "running"  # finalize waits for the lost task
    with pytest.raises(LeaseHeld):  # delivered again while the dead attempt's lease stands: nothing runs twice
        plane.workers.handlers()[lost[0][0]](lost[0][1])
    with plane.factory.begin() as session:  # the lease runs out
        session.execute(sa.update(JobTask).where(JobTask.job_id == restore_id, JobTask.task_key == "changes")
                        .values(lease_until=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)))
    plane.workers.handlers()[lost[0][0]](lost[0][1])
    assert _drain(run, twice=True) == ["restore.finalize"]
    row = _restore_row(run, restore_id)
    assert row.state == "completed", row.error
    expected = read_all(run.workload.conn, at)
    # Written again, counted once: every document that exists at the instant, no more.
    assert row.documents_written == len(expected) and row.documents_failed == 0
    assert row.changes_applied > 0 and row.chunks_done == row.chunks_total
    with plane.factory() as session:
        assert session.scalar(sa.select(JobTask.attempts).where(JobTask.job_id == restore_id,
                                                                JobTask.task_key == "changes")) == 2
        assert session.scalar(sa.select(sa.func.count()).select_from(AuditLog).where(
            AuditLog.resource_id == restore_id, AuditLog.action == "restore.completed")) == 1
    target = open_firestore(name, emulator_host=run.emulator_host)
    try:
        _assert_restored(run, target, at, "after a redelivered changes task")
    finally:
        target.close()


def _restore_row(run: Run, restore_id: str) -> Restore:
    with run.plane.factory() as session:
        row = session.get(Restore, restore_id)
        assert row is not None
        session.expunge(row)
        return row


def test_a_member_may_start_a_point_in_time_restore_in_skip_mode_only_and_skip_and_merge_restore_the_instant(
        run: Run) -> None:
    at = _instants(run, 19)[2]
    with run.plane.factory.begin() as session:
        member = seed_token(session, run.org_id, "member")
    as_member = {"Authorization": f"Bearer {member}"}
    url = f"/v1/orgs/{run.org_id}/projects/{run.project_id}/pitr/restore"
    client = run.app.test_client()
    for mode in ("overwrite", "merge"):
        refused = client.post(url, json={"at": format_ns(at), "mode": mode}, headers=as_member)
        assert refused.status_code == 403 and "admin" in refused.get_json()["error"]["message"], mode
    assert not run.app.extensions["firebackup_control_plane"].ports.queue.tasks, "a refused restore enqueues nothing"
    names = {mode: f"pitr-{mode}-{secrets.token_hex(3)}" for mode in ("skip", "merge")}
    started = client.post(url, json={"at": format_ns(at), "mode": "skip", "keep_references": True,
                                     "target_project_id": _target_project(run, names["skip"])}, headers=as_member)
    assert started.status_code == 202, started.get_json()
    _drain(run)
    merged = _restore(run, {"at": format_ns(at), "mode": "merge", "keep_references": True,
                            "target_project_id": _target_project(run, names["merge"])})
    assert merged["state"] == "completed" and merged["mode"] == "merge", merged["error"]
    for mode, name in names.items():  # into an empty database both write exactly the state at the instant
        target = open_firestore(name, emulator_host=run.emulator_host)
        try:
            _assert_restored(run, target, at, f"{mode} mode")
        finally:
            target.close()


def test_a_capture_whose_database_refuses_connections_answers_an_error_so_the_event_comes_again_and_is_kept_once(
        run: Run, postgres_server) -> None:
    version = parse_instant("2026-11-30T07:00:00.000001234Z")
    doc = DocPb(name=f"projects/{run.source}/databases/(default)/documents/outage/d1")
    doc.fields["n"].integer_value = 7
    doc.update_time.seconds, doc.update_time.nanos = divmod(version, 10**9)
    doc.create_time.CopyFrom(doc.update_time)
    headers, body = firestore_write_cloudevent(run.source, "(default)", "outage/d1", value=doc.SerializeToString(),
                                               old_value=None, when=format_ns(version), event_id="outage-1")
    database = sa.make_url(str(run.plane.engine.url)).database
    admin = sa.create_engine(postgres_server.url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
            conn.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                                 (database,))
        refused = run.server.deliver_firestore_write(headers, body)
        # Not acknowledged: Eventarc delivers any non-2xx answer again.
        assert refused.status >= 500, (refused.status, refused.body[:300])
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
        admin.dispose()
    assert run.server.deliver_firestore_write(headers, body).status == 200
    assert run.server.deliver_firestore_write(headers, body).status == 200  # delivered once more: still one row
    with run.plane.factory() as session:
        stored = session.scalars(sa.select(PITRChange.event_id).where(PITRChange.project_id == run.project_id,
                                                                      PITRChange.document_path == "outage/d1")).all()
    assert stored == [pitr.change_id("(default)", "outage/d1", version)]
