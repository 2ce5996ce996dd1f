"""CloudTasksQueue: task names, routing to queues and workers, credentials, and errors, over a fake client."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from google.api_core.exceptions import AlreadyExists, NotFound, ServiceUnavailable
from google.cloud import tasks_v2
from google.protobuf import field_mask_pb2

from firebackup.errors import QueueError, QueueUnavailable, UsageError, is_transient
from firebackup.retry import RetryPolicy
from firebackup.runtime.cloud_tasks import CloudTasksQueue, CloudTasksTarget, kind_of, task_id
from firebackup.runtime.queue import TaskQueue
from firebackup.runtime.worker_auth import SECRET_HEADER
from firebackup.settings import Settings, TaskQueueConfig

BACKUP_URL, RESTORE_URL = "https://backup-worker.example.test/", "https://restore-worker.example.test/"
SA = "tasks-invoker@proj.iam.gserviceaccount.com"
SECRET = "s3cret-s3cret-s3cret"


class FakeTasksClient(tasks_v2.CloudTasksClient):
    """Cloud Tasks as far as the queue uses it: named tasks are unique; errors are scripted."""

    def __init__(self, errors: list[Exception] | None = None) -> None:  # no transport, no credentials
        self.tasks: dict[str, tasks_v2.Task] = {}
        self.parents: list[str] = []
        self.queues: list[tuple[tasks_v2.Queue, field_mask_pb2.FieldMask]] = []
        self.errors = list(errors or [])
        self.calls = 0

    def create_task(self, request: Any = None, *, parent: str | None = None, task: tasks_v2.Task | None = None,
                    **kw: Any) -> tasks_v2.Task:
        self.calls += 1
        assert kw.get("retry") is None  # one retry loop: ours
        if self.errors:
            raise self.errors.pop(0)
        assert task is not None and parent is not None
        if task.name in self.tasks:
            raise AlreadyExists(f"Requested entity already exists: {task.name}")  # type: ignore[no-untyped-call]
        self.parents.append(parent)
        self.tasks[task.name] = task
        return task

    def update_queue(self, request: Any = None, *, queue: tasks_v2.Queue | None = None,
                     update_mask: field_mask_pb2.FieldMask | None = None, **kw: Any) -> tasks_v2.Queue:
        assert queue is not None and update_mask is not None
        self.queues.append((queue, update_mask))
        return queue


def settings(**kw: Any) -> Settings:
    base: dict[str, Any] = dict(queue="cloudtasks", tasks_project="proj", tasks_location="europe-west1",
                                backup_worker_url=BACKUP_URL, restore_worker_url=RESTORE_URL,
                                tasks_service_account=SA)
    base.update(kw)
    return Settings(**base)


def queue_over(client: FakeTasksClient, **kw: Any) -> CloudTasksQueue:
    return CloudTasksQueue(CloudTasksTarget.from_settings(settings(**kw)), client=lambda: client,
                           retry=RetryPolicy(attempts=3, sleep=lambda s: None))


def test_each_kind_of_task_goes_to_its_own_queue_and_worker() -> None:
    client = FakeTasksClient()
    queue = queue_over(client)
    assert isinstance(queue, TaskQueue)
    for name in ("backup.plan", "backup.chunk", "verify", "delete_backup", "restore.chunk", "webhook_deliver"):
        queue.enqueue(name, {"job": "j1"} if "." in name else {"id": name})
    sent = {json.loads(t.http_request.body)["task"]: (t.name.split("/tasks/")[0], t.http_request.url)
            for t in client.tasks.values()}
    base = "projects/proj/locations/europe-west1/queues/"
    assert sent == {
        "backup.plan": (base + "firebackup-backup", BACKUP_URL),
        "backup.chunk": (base + "firebackup-backup", BACKUP_URL),
        "verify": (base + "firebackup-backup", BACKUP_URL),
        "delete_backup": (base + "firebackup-backup", BACKUP_URL),
        "restore.chunk": (base + "firebackup-restore", RESTORE_URL),
        "webhook_deliver": (base + "firebackup-webhooks", BACKUP_URL),
    }
    assert [kind_of(n) for n in ("restore.plan", "webhook_deliver", "backup.finalize")] == [
        "restore", "webhooks", "backup"]


def test_a_task_is_a_json_post_with_an_oidc_token_for_the_invoker_addressed_to_its_worker() -> None:
    client = FakeTasksClient()
    queue_over(client).enqueue("restore.chunk", {"job": "rst_1", "chunk": "d00000-00003"})
    (task,) = client.tasks.values()
    req = task.http_request
    assert req.http_method == tasks_v2.HttpMethod.POST
    assert json.loads(req.body) == {"task": "restore.chunk", "payload": {"job": "rst_1", "chunk": "d00000-00003"}}
    assert dict(req.headers) == {"Content-Type": "application/json"}  # no secret configured: none sent
    assert req.oidc_token.service_account_email == SA and req.oidc_token.audience == RESTORE_URL


def test_the_worker_secret_is_sent_only_when_configured_and_then_without_a_token_if_no_account() -> None:
    client = FakeTasksClient()
    queue_over(client, tasks_service_account=None, worker_secret=SECRET).enqueue("backup.plan", {"job": "b"})
    (task,) = client.tasks.values()
    assert dict(task.http_request.headers)[SECRET_HEADER] == SECRET
    assert not task.http_request.oidc_token.service_account_email
    assert SECRET not in repr(CloudTasksTarget.from_settings(settings(worker_secret=SECRET)))


def test_a_delayed_task_is_scheduled_for_its_time_and_an_immediate_one_is_not() -> None:
    client = FakeTasksClient()
    now = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc)
    queue = CloudTasksQueue(CloudTasksTarget.from_settings(settings()), client=lambda: client, clock=lambda: now)
    queue.enqueue("webhook_deliver", {"delivery_id": "whd_1", "attempt": 2}, delay_seconds=90)
    queue.enqueue("webhook_deliver", {"delivery_id": "whd_1", "attempt": 1})
    by_attempt = {json.loads(t.http_request.body)["payload"]["attempt"]: t for t in client.tasks.values()}
    assert by_attempt[2].schedule_time == now + dt.timedelta(seconds=90)
    assert by_attempt[1].schedule_time is None  # unset: Cloud Tasks sends it at once


def test_task_ids_are_the_same_for_the_same_task_and_differ_for_any_other() -> None:
    chunk: dict[str, Any] = {"job": "bkp_1", "task": {"partition": 0, "seq": 2, "after": "x"}}
    same = task_id("backup.chunk", {"task": {"after": "x", "seq": 2, "partition": 0}, "job": "bkp_1"})
    assert task_id("backup.chunk", chunk) == same
    others = {task_id("backup.chunk", {**chunk, "task": {**chunk["task"], "seq": 3}}),
              task_id("backup.chunk", {**chunk, "job": "bkp_2"}), task_id("restore.chunk", chunk), same}
    assert len(others) == 4
    assert re.fullmatch(r"[0-9a-f]{32}-backup-chunk-bkp_1", same)  # hash first: Cloud Tasks shards by prefix
    weird = task_id("webhook_deliver", {"delivery_id": "d/1 ?", "job": "a.b/c" * 100})
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,500}", weird)


def test_enqueuing_the_same_task_twice_is_refused_by_name_and_that_is_success() -> None:
    client = FakeTasksClient()
    queue = queue_over(client)
    queue.enqueue("backup.finalize", {"job": "bkp_1"})
    queue.enqueue("backup.finalize", {"job": "bkp_1"})  # a second task deciding on finalize
    assert client.calls == 2 and len(client.tasks) == 1


def test_an_unavailable_service_is_retried_then_raised_as_a_transient_queue_error() -> None:
    client = FakeTasksClient([ServiceUnavailable("try later")])  # type: ignore[no-untyped-call]
    queue = queue_over(client)
    queue.enqueue("backup.plan", {"job": "b1"})
    assert client.calls == 2 and len(client.tasks) == 1
    client.errors = [ServiceUnavailable("down")] * 3  # type: ignore[no-untyped-call]
    with pytest.raises(QueueUnavailable) as caught:
        queue.enqueue("backup.plan", {"job": "b2"})
    assert is_transient(caught.value) and "UNAVAILABLE" in str(caught.value)
    assert "gave up after 3 attempts" in str(caught.value)


def test_a_missing_queue_is_one_permanent_line_saying_to_create_the_queues() -> None:
    client = FakeTasksClient([NotFound("Queue does not exist.\nmore detail")])  # type: ignore[no-untyped-call]
    with pytest.raises(QueueError) as caught:
        queue_over(client).enqueue("backup.plan", {"job": "b1"})
    assert client.calls == 1 and not is_transient(caught.value)
    message = str(caught.value)
    assert "\n" not in message and "NOT_FOUND" in message and "ensure_task_queues" in message
    assert "firebackup-backup" in message


def test_ensure_queues_sets_each_queues_limits_and_retries_and_only_those_fields() -> None:
    client = FakeTasksClient()
    queue = queue_over(client, webhook_tasks=TaskQueueConfig("hooks", 2.5, 3, -1, 0.5, 60.0))
    names = queue.ensure_queues()
    assert names == [f"projects/proj/locations/europe-west1/queues/{q}"
                     for q in ("firebackup-backup", "firebackup-restore", "hooks")]
    hooks, mask = client.queues[2]
    assert hooks.rate_limits.max_dispatches_per_second == 2.5 and hooks.rate_limits.max_concurrent_dispatches == 3
    assert hooks.retry_config.max_attempts == -1
    assert hooks.retry_config.min_backoff.total_seconds() == 0.5
    assert hooks.retry_config.max_backoff.total_seconds() == 60
    assert set(mask.paths) == {"rate_limits.max_dispatches_per_second", "rate_limits.max_concurrent_dispatches",
                               "retry_config.max_attempts", "retry_config.min_backoff", "retry_config.max_backoff"}
    assert queue.ensure_queues() == names  # idempotent: the same updates again


def test_cloud_tasks_without_worker_urls_or_any_credential_is_refused_in_one_line() -> None:
    with pytest.raises(UsageError, match="needs FIREBACKUP_RESTORE_WORKER_URL; set them"):
        CloudTasksTarget.from_settings(settings(restore_worker_url=None))
    with pytest.raises(UsageError, match="FIREBACKUP_TASKS_SERVICE_ACCOUNT .* or FIREBACKUP_WORKER_SECRET"):
        CloudTasksTarget.from_settings(settings(tasks_service_account=None))
    assert CloudTasksTarget.from_settings(settings(tasks_project=None)).project == Settings().firebase_project_id
