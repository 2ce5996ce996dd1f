"""Backups and restores fanned out over Cloud Tasks for real: the API enqueues through CloudTasksQueue into
the tasks emulator, which sends each task to the backup_worker and restore_worker functions (two
processes each), over PostgreSQL and the Firestore emulator. Counts are compared with the emulator's
own documents; the emulator's log shows every attempt and the worker's answer to it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

import boto3
import pytest

from firebackup.runtime.worker import RETRY_COUNT_HEADER
from firebackup.runtime.worker_auth import SECRET_HEADER
from firebackup.storage import open_storage
from tests.integration.tasks.cloud_world import (SECRET, KillingProxy, Platform, documents, new_tag,
                                                 seed_collections)

pytestmark = pytest.mark.integration

COLLECTIONS = ["users", "orders", "events"]  # one range each on the emulator: three chains of chunk tasks


def start_backup(platform: Platform, project_id: str, destination_id: str) -> str:
    pid = platform.org.project(project_id)
    body = {"project_id": pid, "destination_id": destination_id, "collections": COLLECTIONS}
    return str(platform.org.ok("POST", "/backups", body, 202)["id"])


def local_destination(platform: Platform, project_id: str) -> tuple[str, str]:
    folder = platform.org.tmp / project_id
    return platform.org.destination(folder), folder.as_uri()


def s3_destination(platform: Platform, name: str, endpoint: str, bucket: str) -> str:
    return str(platform.org.ok("POST", "/destinations", {
        "name": name, "kind": "s3compat", "url": f"s3://{bucket}/backups", "endpoint_url": endpoint,
        "region": "us-east-1", "credentials": {"access_key_id": "testing", "secret_access_key": "testing"}}, 201)["id"])


def post(url: str, body: dict[str, Any], headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def completed_backup(platform: Platform, project_id: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Seed the project and back it up to a folder: its documents, the backup as it ended, the folder's URL."""
    source = seed_collections(project_id)
    destination, url = local_destination(platform, project_id)
    backup_id = start_backup(platform, project_id, destination)
    got = platform.wait("backups", backup_id)
    assert got["state"] == "completed", (got["error"], platform.dispatches(backup_id))
    return source, got, url


def test_a_backup_fans_out_over_both_worker_processes_and_finalizes_exactly_once(platform: Platform,
                                                                                 project_id: str) -> None:
    source, got, url = completed_backup(platform, project_id)
    backup_id = got["id"]
    assert got["documents"] == len(source) and got["chunks_done"] == got["chunks_total"]
    names = platform.backed_up_names(backup_id, open_storage(url))
    assert sorted(n.split("/documents/", 1)[1] for n in names) == sorted(source)
    platform.wait_idle()
    sent = platform.dispatches(backup_id)
    assert [d.task for d in sent if "-backup-plan-" in d.task] and all(d.status == 204 for d in sent)
    assert len([d for d in sent if "-backup-finalize-" in d.task]) == 1
    assert platform.audits(backup_id, "backup.completed") == 1
    # chunk_docs=5: one task per chunk, one chain of tasks per collection, and every chain ran in parallel
    # with the others on the two processes, each of which therefore opened its own database connection.
    chunk_tasks = [d for d in sent if "-backup-chunk-" in d.task]
    assert len(chunk_tasks) == len(set(d.task for d in chunk_tasks)) == got["chunks_total"]
    assert len(platform.pids_that_used_the_database(platform.backup_worker)) == 2


def test_a_restore_fans_out_over_the_restore_worker_and_writes_every_document(platform: Platform,
                                                                            project_id: str) -> None:
    source, backup, _ = completed_backup(platform, project_id)
    backup_id = backup["id"]
    target = platform.org.project(project_id + "-copy")
    restore = platform.org.ok("POST", "/restores", {"backup_id": backup_id, "target_project_id": target}, 202)
    got = platform.wait("restores", restore["id"])
    assert got["state"] == "completed", got
    assert got["documents_written"] == len(source) and got["error"] is None
    assert documents(project_id + "-copy") == source
    platform.wait_idle()
    sent = platform.dispatches(restore["id"])
    chunks = [d for d in sent if "-restore-chunk-" in d.task]
    assert len(chunks) == got["chunks_total"] and all(d.status == 204 for d in sent)
    assert len([d for d in sent if "-restore-finalize-" in d.task]) == 1
    assert platform.audits(restore["id"], "restore.completed") == 1


def test_an_instance_killed_mid_upload_has_its_chunk_redelivered_and_the_backup_is_exact(
        platform: Platform, project_id: str, s3_server: Any) -> None:
    env = s3_server.env
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
    bucket = f"fb-{project_id}"
    s3.create_bucket(Bucket=bucket)
    upstream = env["AWS_ENDPOINT_URL"].rsplit(":", 1)
    # The second chunk of `orders` (ranges go by collection name: events, orders, users): its first
    # upload kills every backup_worker process.
    proxy = KillingProxy(("127.0.0.1", int(upstream[1])), b"/chunks/d00001-00001.fbc",
                         lambda: platform.worker_pids(platform.backup_worker))
    try:
        source = seed_collections(project_id)
        destination = s3_destination(platform, f"s3-{project_id}", proxy.url, bucket)
        backup_id = start_backup(platform, project_id, destination)
        got = platform.wait("backups", backup_id)
    finally:
        proxy.close()
    assert proxy.killed, "the upload that kills was never made"
    assert got["state"] == "completed", got
    assert got["documents"] == len(source)
    names = platform.backed_up_names(backup_id, open_storage(
        f"s3://{bucket}/backups?endpoint={env['AWS_ENDPOINT_URL']}&region=us-east-1", access_key_id="testing",
        secret_access_key="testing"))
    assert sorted(n.split("/documents/", 1)[1] for n in names) == sorted(source)
    platform.wait_idle()
    killed = [d for d in platform.dispatches(backup_id, "backup.chunk") if d.status == 500]
    assert killed, "no delivery failed when its instance was killed"
    # The killed task ran again (after its lease) and resumed: its chunk exists once in the manifest.
    assert platform.task_attempts(backup_id)["d00001-00001"] >= 2
    assert platform.audits(backup_id, "backup.completed") == 1
    objects = s3.list_objects_v2(Bucket=bucket, Prefix="backups/")["Contents"]
    chunk_objects = [o["Key"] for o in objects if "/chunks/" in o["Key"]]
    assert len(chunk_objects) == len(set(chunk_objects)) == got["chunks_total"]


def test_a_backup_to_a_missing_bucket_fails_once_and_no_task_of_it_is_retried(platform: Platform, project_id: str,
                                                                               s3_server: Any) -> None:
    seed_collections(project_id)
    destination = s3_destination(platform, f"gone-{project_id}", s3_server.env["AWS_ENDPOINT_URL"],
                                 f"no-such-bucket-{project_id}")
    backup_id = start_backup(platform, project_id, destination)
    got = platform.wait("backups", backup_id)
    assert got["state"] == "failed"
    assert got["error"] and "\n" not in got["error"] and "bucket" in got["error"].lower(), got["error"]
    platform.wait_idle()
    sent = platform.dispatches(backup_id)
    assert sent and all(200 <= d.status < 300 for d in sent), sent  # permanent: answered 2xx, not retried
    assert Counter(d.task for d in sent).most_common(1)[0][1] == 1  # each task delivered exactly once
    assert platform.audits(backup_id, "backup.failed") == 1
    assert platform.audits(backup_id, "backup.completed") == 0


def test_the_same_task_enqueued_twice_is_refused_by_name_and_runs_once(platform: Platform) -> None:
    queue, client = platform.queue, platform.queue.client()
    path = queue.target.queue_path("backup")
    client.pause_queue(name=path)
    try:
        payload = {"backup_id": f"bkp_missing_{new_tag()}"}  # verify of a backup that is not there: a no-op
        queue.enqueue("verify", payload)
        queue.enqueue("verify", payload)  # refused by Cloud Tasks (ALREADY_EXISTS): no error, no second task
        held = [t.name for t in client.list_tasks(parent=path)]
        assert len(held) == 1
    finally:
        client.resume_queue(name=path)
    platform.wait_idle()
    sent = [d for d in platform.dispatches() if d.task == held[0].rsplit("/", 1)[-1]]
    assert [(d.attempt, d.status) for d in sent] == [(1, 204)]


def test_an_unauthenticated_request_to_a_worker_gets_401_and_changes_nothing(platform: Platform,
                                                                           project_id: str) -> None:
    seed_collections(project_id)
    destination, _ = local_destination(platform, project_id)
    client = platform.queue.client()
    path = platform.queue.target.queue_path("backup")
    client.pause_queue(name=path)  # the backup stays pending: its plan task waits in the paused queue
    try:
        backup_id = start_backup(platform, project_id, destination)
        plan = {"task": "backup.plan", "payload": {"job": backup_id}}
        for worker in (platform.backup_worker, platform.restore_worker):
            for headers in ({}, {SECRET_HEADER: SECRET[:-1] + "x"}, {"Authorization": "Bearer forged.token.here"},
                            {RETRY_COUNT_HEADER: "0"}):
                assert post(worker.url + "/", plan, headers) == 401, (worker.name, headers)
        got = platform.org.ok("GET", f"/backups/{backup_id}")
        assert got["state"] == "pending" and got["read_time"] is None
        assert platform.task_attempts(backup_id) == {}
        # The same request with the secret runs it; the rest follows through the queue.
        assert post(platform.backup_worker.url + "/", plan, {SECRET_HEADER: SECRET}) == 204
        assert platform.org.ok("GET", f"/backups/{backup_id}")["state"] == "running"
    finally:
        client.resume_queue(name=path)
    assert platform.wait("backups", backup_id)["state"] == "completed"
