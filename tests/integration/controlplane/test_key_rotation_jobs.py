"""BYOK through the control plane with the test-only KMS (FIREBACKUP_KMS=fake:<folder>, selected by the settings):
restore and verify use the key each manifest names after a switch of key, and a key rotation is a job on the
backup queue that resumes after an interruption and leaves every backup, and PITR's data keys, captured rows and
segments, readable under the new key alone."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from google.api_core import exceptions as gexc

from firebackup.bootstrap import api_app as build_app
from firebackup.crypto.fake_kms import LocalFolderKms
from firebackup.crypto.secrets import LocalMasterKey, Sealer
from firebackup.crypto.keys import KmsKey
from firebackup.db.models import AuditLog, Backup, JobTask, PITRConfig, Project
from firebackup.db.session import make_session_factory
from firebackup.engine.repository import Repository
from firebackup.engine.tasks import KEYS_ROTATE
from firebackup.pitr.events import CREATE, CapturedWrite, instant_ns
from firebackup.pitr.restore import Change
from firebackup.pitr.segments import SegmentRepository, read_segment, write_segment
from firebackup.services import pitr
from firebackup.services.context import system_transactions
from firebackup.services.ports import RecordingQueue
from firebackup.storage import open_storage
from tests.integration.controlplane.conftest import FakeFirestoreProber, FakeGoogleOAuth
from tests.integration.controlplane.jobs_world import Org, drain, make_org, seed, settings_for

KEY_A = "projects/cust/locations/global/keyRings/backups/cryptoKeys/a"
KEY_B = "projects/cust/locations/global/keyRings/backups/cryptoKeys/b"
NOW = dt.datetime.now(dt.timezone.utc)
DAY = dt.timedelta(days=1)


class FlakyKms(LocalFolderKms):
    """The test-only KMS with an outage: once `up_for` more encrypts have succeeded, every call fails (a Cloud KMS
    outage in mid-rotation, outlasting the calls' own retries) until the test ends it."""

    def __init__(self, folder: Path):
        super().__init__(folder)
        self.encrypts, self.up_for = 0, None

    def encrypt(self, request: dict[str, Any], *, retry: Any = None, timeout: float | None = None) -> Any:
        if self.up_for is not None and self.encrypts >= self.up_for:
            raise gexc.ServiceUnavailable("KMS is unavailable")  # type: ignore[no-untyped-call]
        self.encrypts += 1
        return super().encrypt(request, retry=retry, timeout=timeout)


def _org(engine, tmp_path: Path, **overrides: Any) -> Org:
    key = os.urandom(32)
    settings = settings_for(engine, key, fake_kms_folder=str(tmp_path / "kms"))
    app = build_app(settings, engine=engine, sealer=Sealer(LocalMasterKey(key)), oauth=FakeGoogleOAuth(),
                    prober=FakeFirestoreProber(), **overrides)
    return make_org(app, make_session_factory(engine), tmp_path)


@pytest.fixture
def kms(tmp_path: Path) -> LocalFolderKms:
    kms = LocalFolderKms(tmp_path / "kms")
    kms.create_key(KEY_A)
    kms.create_key(KEY_B)
    return kms


def _kek_id(org: Org, backup_id: str) -> str:
    return str(org.ok("GET", f"/backups/{backup_id}/manifest")["stored"]["kek_id"])


def test_after_a_switch_of_key_older_backups_still_restore_and_verify_under_the_key_their_manifest_names(
        engine, firestore_emulator, monkeypatch, tmp_path, kms, project_id) -> None:
    firestore_emulator.apply(monkeypatch)
    org = _org(engine, tmp_path)
    try:
        count = seed(project_id)
        pid, did = org.project(project_id), org.destination(org.tmp / "loc")
        org.ok("PUT", "/encryption", {"kms_key_name": KEY_A})
        under_a = org.ok("POST", "/backups", {"project_id": pid, "destination_id": did}, 202)["id"]
        org.run()
        assert org.ok("PUT", "/encryption", {"kms_key_name": KEY_B}) == {"kms_key_name": KEY_B,
                                                                         "rotating_from": KEY_A}
        under_b = org.ok("POST", "/backups", {"project_id": pid, "destination_id": did}, 202)["id"]
        org.run()
        assert (_kek_id(org, under_a), _kek_id(org, under_b)) == ("kms:" + KEY_A, "kms:" + KEY_B)
        for n, backup_id in enumerate((under_a, under_b)):
            rst = org.ok("POST", "/restores", {"backup_id": backup_id,
                                               "target_project_id": org.project(f"{project_id}-{n}")}, 202)
            org.ok("POST", f"/backups/{backup_id}/verify", None, 202)
            org.run()
            got = org.ok("GET", f"/restores/{rst['id']}")
            assert got["state"] == "completed" and got["documents_written"] == count, got
            assert org.ok("GET", f"/backups/{backup_id}")["verify_state"] == "ok"
        # A third key while A's backups are not re-wrapped would strand them: refused, nothing changed.
        third = org.call("PUT", "/encryption", {"kms_key_name": KEY_A.replace("/a", "/c")})
        assert third.status_code == 409 and KEY_A in third.get_json()["error"]["message"]
        assert org.ok("GET", "/encryption")["kms_key_name"] == KEY_B
    finally:
        org.queue.close()


def test_a_rotation_is_a_job_that_resumes_after_an_interruption_and_then_the_old_key_is_not_needed(
        engine, firestore_emulator, monkeypatch, tmp_path, kms, project_id) -> None:
    firestore_emulator.apply(monkeypatch)
    flaky, queue = FlakyKms(kms.folder), RecordingQueue()
    org = _org(engine, tmp_path, kms_client=flaky, queue=queue)
    workers = org.app.extensions["firebackup_control_plane"].workers
    count = seed(project_id)
    pid, did = org.project(project_id), org.destination(org.tmp / "loc")
    org.ok("PUT", "/encryption", {"kms_key_name": KEY_A})
    backups = []
    for _ in range(3):
        backups.append(org.ok("POST", "/backups", {"project_id": pid, "destination_id": did}, 202)["id"])
        drain(queue, workers)
    assert {_kek_id(org, b) for b in backups} == {"kms:" + KEY_A}

    flaky.encrypts, flaky.up_for = 0, 1  # KMS goes away while the second manifest is re-wrapped
    job = org.ok("POST", "/encryption/rotate", {"kms_key_name": KEY_B}, 202)
    assert job["state"] == "pending" and queue.tasks == [(KEYS_ROTATE, {"job": job["id"]})]
    assert org.ok("POST", "/encryption/rotate", {"kms_key_name": KEY_B}, 202)["id"] == job["id"]  # asked twice
    assert len(queue.tasks) == 1
    with pytest.raises(Exception, match="KMS encrypt .* failed"):
        drain(queue, workers)  # a transient error: the queue would deliver the task again
    half = org.ok("GET", f"/encryption/rotations/{job['id']}")
    assert half["state"] == "running" and half["rewrapped"] == 1
    assert [_kek_id(org, b) for b in backups] == ["kms:" + KEY_B, "kms:" + KEY_A, "kms:" + KEY_A]
    assert org.ok("GET", "/encryption")["rotating_from"] == KEY_A  # both keys open backups meanwhile

    flaky.up_for = None  # KMS is back: the queue delivers the task again
    queue.enqueue(KEYS_ROTATE, {"job": job["id"]})
    drain(queue, workers)
    done = org.ok("GET", f"/encryption/rotations/{job['id']}")
    assert (done["state"], done["rewrapped"], done["already_current"], done["failed"]) == ("completed", 3, 0, [])
    assert flaky.encrypts == 3  # resumed after the first backup: nothing was re-wrapped twice
    assert org.ok("GET", "/encryption") == {"kms_key_name": KEY_B, "rotating_from": None}
    with org.factory() as s:
        assert s.scalar(sa.select(JobTask.attempts).where(JobTask.job_id == job["id"])) == 2
        audited = s.scalars(sa.select(AuditLog.result).where(AuditLog.org_id == org.id,
                                                             AuditLog.action == "org.encryption.rotate")).all()
        repo_ids = [s.get(Backup, b).repo_backup_id for b in backups]
    assert audited == ["success"]

    kms.delete_key(KEY_A)  # the customer destroys the old key: every backup must read under B alone
    repo = Repository(open_storage((org.tmp / "loc").as_uri()))
    for repo_id in repo_ids:
        assert repo.read_summary(repo_id)["kek_id"] == "kms:" + KEY_B
    rst = org.ok("POST", "/restores", {"backup_id": backups[0], "target_project_id": org.project(project_id + "-r")},
                 202)
    drain(queue, workers)
    got = org.ok("GET", f"/restores/{rst['id']}")
    assert got["state"] == "completed" and got["documents_written"] == count, got


class PitrWorld:
    """An organization under KEY_A whose project has PITR on: captured rows and two compacted segments."""

    def __init__(self, org: Org, queue: RecordingQueue, kms: LocalFolderKms, **project: str) -> None:
        self.org, self.queue, self.kms = org, queue, kms
        plane = org.app.extensions["firebackup_control_plane"]
        self.workers, self.tx = plane.workers, system_transactions(plane.factory, plane.ports)
        self.location = org.tmp / "loc"
        self.pid, self.did = project.get("pid") or org.project("pitr-src"), org.destination(self.location)
        org.ok("PUT", "/encryption", {"kms_key_name": KEY_A})
        assert org.ok("PUT", f"/projects/{self.pid}/pitr",
                      {"destination_id": self.did, "retention_days": 7})["kek_id"] == "kms:" + KEY_A
        with org.factory() as s:
            self.source = s.get(Project, self.pid).gcp_project_id
        capture = pitr.Capture(self.tx)
        for days in (12, 9, 7.5, 6, 1):
            capture.record(CapturedWrite(self.source, "(default)", f"c/d{days}", CREATE,
                                         instant_ns(NOW - days * DAY), f"doc {days}".encode()))
        # the four older changes go into two segments of two; the newest stays a captured row
        done = pitr.compact_all(self.tx, NOW, older_than=2 * DAY, max_changes=2)
        assert (done.segments, done.changes) == (2, 4)

    def segments(self) -> SegmentRepository:
        return SegmentRepository(open_storage(self.location.as_uri()))

    def kek_ids(self) -> list[str]:
        """The key of each segment's manifest, then of the project's PITR data key."""
        repo = self.segments()
        with self.org.factory() as s:
            config = s.scalar(sa.select(PITRConfig).where(PITRConfig.project_id == self.pid))
        return [repo.read_summary(seg)["kek_id"] for seg in repo.backup_ids()[0]] + [config.kek_id]

    def rotate(self, name: str) -> dict[str, Any]:
        job = self.org.ok("POST", "/encryption/rotate", {"kms_key_name": name}, 202)
        drain(self.queue, self.workers)
        return self.org.ok("GET", f"/encryption/rotations/{job['id']}")

    def assert_everything_reads_under_b_alone(self) -> None:
        self.kms.delete_key(KEY_A)  # the customer destroys the old key
        assert self.kek_ids() == ["kms:" + KEY_B] * 3
        everything = {f"c/d{days}": f"doc {days}".encode() for days in (12, 9, 7.5, 6, 1)}
        with self.tx() as ctx:  # the captured row opens with the data key, unwrapped by B
            assert {c.path: c.document for c in pitr.changes(ctx, self.pid, after=-1, upto=2**63 - 1)} == {
                "c/d1": b"doc 1"}
        repo, b = self.segments(), KmsKey(KEY_B, self.kms)
        read = {c.path: c.document for seg in repo.backup_ids()[0] for c in read_segment(repo, seg, b)[1]}
        assert read == {k: v for k, v in everything.items() if k != "c/d1"}
        with self.tx() as ctx:  # what a point-in-time restore reads: rows and segments under the org's keys
            got = list(pitr.captured_changes(ctx, self.pid, after=-1, upto=2**63 - 1))
        assert {c.path: c.document for c in got} == everything
        assert self.org.ok("GET", f"/projects/{self.pid}/pitr")["latest_captured"] is not None


def test_a_rotation_moves_pitr_data_keys_and_segments_so_the_old_key_is_forgotten_and_a_further_switch_accepted(
        engine, firestore_emulator, monkeypatch, tmp_path, kms, project_id) -> None:
    firestore_emulator.apply(monkeypatch)
    queue = RecordingQueue()
    org = _org(engine, tmp_path, queue=queue)
    seed(project_id)
    world = PitrWorld(org, queue, kms, pid=org.project(project_id))
    org.ok("POST", "/backups", {"project_id": world.pid, "destination_id": world.did}, 202)
    drain(queue, world.workers)
    assert world.kek_ids() == ["kms:" + KEY_A] * 3

    done = world.rotate(KEY_B)
    # the backup, the project's PITR data key and its two segments
    assert (done["state"], done["rewrapped"], done["already_current"], done["failed"]) == ("completed", 4, 0, [])
    assert org.ok("GET", "/encryption") == {"kms_key_name": KEY_B, "rotating_from": None}
    world.assert_everything_reads_under_b_alone()
    key_c = KEY_A.replace("/a", "/c")
    assert org.ok("PUT", "/encryption", {"kms_key_name": key_c}) == {"kms_key_name": key_c, "rotating_from": KEY_B}


def test_a_kms_outage_in_the_pitr_phase_resumes_without_re_wrapping_anything_twice(
        engine, tmp_path, kms) -> None:
    flaky, queue = FlakyKms(kms.folder), RecordingQueue()
    org = _org(engine, tmp_path, kms_client=flaky, queue=queue)
    world = PitrWorld(org, queue, kms)
    flaky.encrypts, flaky.up_for = 0, 2  # KMS goes away after the data key and the first segment
    job = org.ok("POST", "/encryption/rotate", {"kms_key_name": KEY_B}, 202)
    with pytest.raises(Exception, match="KMS encrypt .* failed"):
        drain(queue, workers := world.workers)
    half = org.ok("GET", f"/encryption/rotations/{job['id']}")
    assert (half["state"], half["rewrapped"]) == ("running", 2)
    assert sorted(world.kek_ids()) == ["kms:" + KEY_A, "kms:" + KEY_B, "kms:" + KEY_B]
    assert org.ok("GET", "/encryption")["rotating_from"] == KEY_A

    flaky.up_for = None  # KMS is back: the queue delivers the task again
    queue.enqueue(KEYS_ROTATE, {"job": job["id"]})
    drain(queue, workers)
    done = org.ok("GET", f"/encryption/rotations/{job['id']}")
    assert (done["state"], done["rewrapped"], done["already_current"], done["failed"]) == ("completed", 3, 0, [])
    assert flaky.encrypts == 3  # resumed after the first segment: nothing was re-wrapped twice
    queue.enqueue(KEYS_ROTATE, {"job": job["id"]})  # a late duplicate of the task finds the job done
    drain(queue, workers)
    assert flaky.encrypts == 3 and org.ok("GET", "/encryption")["rotating_from"] is None
    world.assert_everything_reads_under_b_alone()


class HookedKms(LocalFolderKms):
    """The test-only KMS that runs the test's hook once, just after the n-th encrypt from now."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.countdown, self.hook = 0, None

    def after(self, encrypts: int, hook: Any) -> None:
        self.countdown, self.hook = encrypts, hook

    def encrypt(self, request: dict[str, Any], *, retry: Any = None, timeout: float | None = None) -> Any:
        answer = super().encrypt(request, retry=retry, timeout=timeout)
        if self.hook is not None:
            self.countdown -= 1
            if self.countdown == 0:
                hook, self.hook = self.hook, None
                hook()
        return answer


def test_a_segment_written_under_the_old_key_during_the_rotation_keeps_that_key_until_a_further_rotation(
        engine, tmp_path, kms) -> None:
    hooked, queue = HookedKms(kms.folder), RecordingQueue()
    org = _org(engine, tmp_path, kms_client=hooked, queue=queue)
    world = PitrWorld(org, queue, kms)
    # A compaction that took KEY_A before the switch writes its segment after the rotation listed the segments
    # (after the data key's and both segments' encrypts).
    hooked.after(3, lambda: write_segment(world.segments(), [Change("c/late", instant_ns(NOW), CREATE, b"late")],
                                          project=world.source, database="(default)", kek=KmsKey(KEY_A, kms)))
    done = world.rotate(KEY_B)
    assert (done["state"], done["rewrapped"], done["failed"]) == ("failed", 3, [])
    assert "PITR segment" in done["error"] and "rotate again" in done["error"]
    assert org.ok("GET", "/encryption") == {"kms_key_name": KEY_B, "rotating_from": KEY_A}  # it still opens one

    again = world.rotate(KEY_B)  # the next request moves what is left, then forgets A
    assert (again["state"], again["rewrapped"], again["already_current"]) == ("completed", 1, 3)
    assert org.ok("GET", "/encryption") == {"kms_key_name": KEY_B, "rotating_from": None}
    kms.delete_key(KEY_A)
    with world.tx() as ctx:
        got = list(pitr.captured_changes(ctx, world.pid, after=-1, upto=2**63 - 1))
    assert len(got) == 6 and b"late" in {c.document for c in got}


def test_a_compaction_whose_key_a_rotation_forgot_meanwhile_compacts_its_rows_again_under_the_new_key(
        engine, tmp_path, kms) -> None:
    hooked, queue = HookedKms(kms.folder), RecordingQueue()
    org = _org(engine, tmp_path, kms_client=hooked, queue=queue)
    world = PitrWorld(org, queue, kms)
    pitr.Capture(world.tx).record(CapturedWrite(world.source, "(default)", "c/d3", CREATE,
                                                instant_ns(NOW - 3 * DAY), b"doc 3"))
    rotated: list[dict[str, Any]] = []
    # The compaction took KEY_A; the whole rotation runs while it wraps its segment's data key under A.
    hooked.after(1, lambda: rotated.append(world.rotate(KEY_B)))
    done = pitr.compact_all(world.tx, NOW, older_than=2 * DAY, max_changes=2)
    assert [(r["state"], r["rewrapped"]) for r in rotated] == [("completed", 3)]
    assert org.ok("GET", "/encryption") == {"kms_key_name": KEY_B, "rotating_from": None}
    assert (done.segments, done.changes) == (1, 1)  # the segment under A went; the rows stayed for one under B
    kms.delete_key(KEY_A)
    assert world.kek_ids() == ["kms:" + KEY_B] * 4
    with world.tx() as ctx:
        got = list(pitr.captured_changes(ctx, world.pid, after=-1, upto=2**63 - 1))
        rows = list(pitr.changes(ctx, world.pid, after=-1, upto=2**63 - 1))
    assert len(got) == 6 and b"doc 3" in {c.document for c in got} and [c.path for c in rows] == ["c/d1"]


def test_a_rotation_whose_task_was_lost_is_sent_again_by_maintenance_and_then_completes(
        engine, firestore_emulator, monkeypatch, tmp_path, kms, project_id) -> None:
    from firebackup.services import maintenance

    firestore_emulator.apply(monkeypatch)
    queue = RecordingQueue()
    org = _org(engine, tmp_path, queue=queue)
    plane = org.app.extensions["firebackup_control_plane"]
    tx = system_transactions(plane.factory, plane.ports)
    seed(project_id)
    pid, did = org.project(project_id), org.destination(org.tmp / "loc")
    org.ok("PUT", "/encryption", {"kms_key_name": KEY_A})
    backup = org.ok("POST", "/backups", {"project_id": pid, "destination_id": did}, 202)["id"]
    drain(queue, plane.workers)
    job = org.ok("POST", "/encryption/rotate", {"kms_key_name": KEY_B}, 202)
    queue.tasks.clear()  # the task never reaches a worker
    reap_after = dt.timedelta(minutes=30)

    soon = maintenance.run(tx, dt.datetime.now(dt.timezone.utc), reap_after=reap_after)
    assert soon.rotations_resent == [] and queue.tasks == []  # not lost yet: a worker may still take it
    later = dt.datetime.now(dt.timezone.utc) + reap_after + dt.timedelta(minutes=1)
    assert maintenance.run(tx, later, reap_after=reap_after).rotations_resent == [job["id"]]
    [(name, payload)] = queue.tasks
    assert name == KEYS_ROTATE and payload["job"] == job["id"]
    assert maintenance.run(tx, later, reap_after=reap_after).rotations_resent == [job["id"]]
    assert queue.tasks[1][1] != payload  # each resend a task of its own: Cloud Tasks refuses a name used recently
    drain(queue, plane.workers)

    done = org.ok("GET", f"/encryption/rotations/{job['id']}")
    assert (done["state"], done["rewrapped"], done["already_current"]) == ("completed", 1, 0)
    assert _kek_id(org, backup) == "kms:" + KEY_B
    assert org.ok("GET", "/encryption") == {"kms_key_name": KEY_B, "rotating_from": None}
    assert maintenance.run(tx, later, reap_after=reap_after).rotations_resent == []  # nothing left to send
