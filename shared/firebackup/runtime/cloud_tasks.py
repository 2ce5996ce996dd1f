"""The TaskQueue port on Google Cloud Tasks: each enqueue is one HTTP task for a worker function.

    queue = CloudTasksQueue(CloudTasksTarget.from_settings(settings))
    queue.ensure_queues()                                      # deploy step: create or update the queues
    queue.enqueue("backup.chunk", {"job": "bkp_1", "task": {...}})
    # -> POST {"task": "backup.chunk", "payload": {...}} to backup_worker, from queue firebackup-backup
    queue.enqueue("webhook_deliver", {"delivery_id": "whd_1", "attempt": 2}, delay_seconds=30)  # schedule_time

One queue per kind of task, each with its own rate limits and retries: backup tasks (backup.*,
verify, delete_backup) and webhook deliveries go to the backup_worker function, restore tasks
(restore.*) to restore_worker. Cloud Tasks delivers each task at least once and retries it on any
non-2xx answer with exponential backoff, which is the contract the handlers are written for.

A task's name is derived from its name and payload, so enqueuing the same task twice (a
redelivered chunk handing on its follow-up again, a redelivered plan enqueuing its chunks) is
refused by Cloud Tasks itself with ALREADY_EXISTS, which is success here: the task is there.
Cloud Tasks keeps a used name for about an hour after its task ran, so a task meant to run again
must differ in its payload (an attempt number, say).

Each task carries an OIDC token that Cloud Tasks mints for the invoker service account, with the
worker's URL as its audience, and, when a worker secret is configured, the shared-secret header
(the emulator mints no tokens). Workers check either (runtime/worker_auth.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Callable

from google.api_core.exceptions import AlreadyExists, GoogleAPICallError
from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError, TransportError
from google.cloud import tasks_v2
from google.protobuf import duration_pb2, field_mask_pb2

from firebackup.errors import TRANSIENT_CODES, QueueError, QueueUnavailable, UsageError, status_of_http
from firebackup.retry import RetryPolicy
from firebackup.runtime.queue import Payload
from firebackup.runtime.worker_auth import SECRET_HEADER
from firebackup.settings import Settings, TaskQueueConfig

log = logging.getLogger("firebackup.cloud_tasks")

BACKUP, RESTORE, WEBHOOKS = "backup", "restore", "webhooks"
KINDS = (BACKUP, RESTORE, WEBHOOKS)

# The fields of a queue that ensure_queues owns; any other property set by hand is left alone.
_QUEUE_FIELDS = ["rate_limits.max_dispatches_per_second", "rate_limits.max_concurrent_dispatches",
                 "retry_config.max_attempts", "retry_config.min_backoff", "retry_config.max_backoff"]
_CALL_TIMEOUT = 30.0
_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def kind_of(task: str) -> str:
    """The kind of a task, which names its queue and its worker: restore, webhooks or backup."""
    if task.startswith("restore."):
        return RESTORE
    if task == "webhook_deliver":
        return WEBHOOKS
    return BACKUP


def queue_configs(settings: Settings) -> dict[str, TaskQueueConfig]:
    """Each kind's queue, as the settings configure it."""
    return {BACKUP: settings.backup_tasks, RESTORE: settings.restore_tasks, WEBHOOKS: settings.webhook_tasks}


def task_body(name: str, payload: Payload) -> bytes:
    """What the worker receives: {"task": name, "payload": payload}, canonical JSON."""
    return json.dumps({"task": name, "payload": payload}, sort_keys=True, separators=(",", ":")).encode()


def task_id(name: str, payload: Payload) -> str:
    """The task's id in its queue: the same for the same (name, payload), and only for it.

    The hash comes first because Cloud Tasks spreads names by their prefix (sequential prefixes
    make hot spots); task name and job follow for whoever reads the queue.
    """
    digest = hashlib.sha256(task_body(name, payload)).hexdigest()[:32]
    job = payload.get("job")
    readable = [name] + ([job] if isinstance(job, str) else [])
    return "-".join([digest, *(_NOT_IN_A_NAME.sub("-", part)[:100] for part in readable)])


@dataclass(frozen=True)
class CloudTasksTarget:
    """Where tasks go: the queues' project and location, each kind's queue and worker URL, and the
    credentials each task carries for its worker."""

    project: str
    location: str
    queues: dict[str, TaskQueueConfig]
    urls: dict[str, str]
    service_account: str | None = None
    secret: str | None = field(default=None, repr=False)
    emulator_host: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "CloudTasksTarget":
        """The target the settings describe; a missing setting is one line saying which to set."""
        missing = [name for name, value in (("FIREBACKUP_BACKUP_WORKER_URL", settings.backup_worker_url),
                                            ("FIREBACKUP_RESTORE_WORKER_URL", settings.restore_worker_url))
                   if not value]
        if missing:
            raise UsageError(f"FIREBACKUP_QUEUE=cloudtasks needs {' and '.join(missing)}; "
                             "set them to the worker functions' URLs")
        if not (settings.tasks_service_account or settings.worker_secret):
            raise UsageError("FIREBACKUP_QUEUE=cloudtasks sends tasks no worker would accept; set "
                             "FIREBACKUP_TASKS_SERVICE_ACCOUNT (OIDC tokens) or FIREBACKUP_WORKER_SECRET (locally)")
        assert settings.backup_worker_url is not None and settings.restore_worker_url is not None
        return cls(
            project=settings.tasks_project or settings.gcp_project or settings.firebase_project_id,
            location=settings.tasks_location,
            queues=queue_configs(settings),
            urls={BACKUP: settings.backup_worker_url, RESTORE: settings.restore_worker_url,
                  WEBHOOKS: settings.backup_worker_url},
            service_account=settings.tasks_service_account,
            secret=settings.worker_secret,
            emulator_host=settings.tasks_emulator_host,
        )

    def queue_path(self, kind: str) -> str:
        return f"projects/{self.project}/locations/{self.location}/queues/{self.queues[kind].name}"

    def task(self, name: str, payload: Payload, *, not_before: dt.datetime | None = None) -> tasks_v2.Task:
        """The Cloud Tasks task for (name, payload): named, addressed and authenticated; sent at once,
        or not before `not_before`."""
        kind = kind_of(name)
        url = self.urls[kind]
        headers = {"Content-Type": "application/json"}
        if self.secret:
            headers[SECRET_HEADER] = self.secret
        request = tasks_v2.HttpRequest(http_method=tasks_v2.HttpMethod.POST, url=url, headers=headers,
                                       body=task_body(name, payload))
        if self.service_account:
            request.oidc_token = tasks_v2.OidcToken(service_account_email=self.service_account, audience=url)
        task = tasks_v2.Task(name=f"{self.queue_path(kind)}/tasks/{task_id(name, payload)}", http_request=request)
        if not_before is not None:
            task.schedule_time = not_before
        return task


def _client(emulator_host: str | None) -> tasks_v2.CloudTasksClient:
    """A Cloud Tasks client: the emulator over plain gRPC when set, else Application Default Credentials."""
    if emulator_host:
        import grpc
        from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

        channel = grpc.insecure_channel(emulator_host)
        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    return tasks_v2.CloudTasksClient()


class CloudTasksQueue:
    """A TaskQueue whose tasks Cloud Tasks delivers to the worker functions (at least once).

    enqueue() returns once Cloud Tasks holds the task (or already held one of that name).
    A transient failure to reach it is retried here, then raised as QueueUnavailable (the task
    that enqueued is then retried by its own queue); anything else raises QueueError.
    """

    def __init__(self, target: CloudTasksTarget, *,
                 client: Callable[[], tasks_v2.CloudTasksClient] | None = None,
                 retry: RetryPolicy = RetryPolicy(attempts=5, deadline=60.0),
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)):
        self.target, self._clock = target, clock
        self._make_client = client or (lambda: _client(target.emulator_host))
        self._retry = retry
        self._lock = threading.Lock()
        self._client: tasks_v2.CloudTasksClient | None = None

    def client(self) -> tasks_v2.CloudTasksClient:
        # Made on first use, in the process that uses it (gRPC channels do not survive a fork).
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def enqueue(self, name: str, payload: Payload, *, delay_seconds: float = 0.0) -> None:
        not_before = self._clock() + dt.timedelta(seconds=delay_seconds) if delay_seconds > 0 else None
        task = self.target.task(name, payload, not_before=not_before)
        self._retry.call(self._create, self.target.queue_path(kind_of(name)), task)

    def _create(self, queue: str, task: tasks_v2.Task) -> None:
        try:
            # retry=None: one retry loop (ours), never two nested.
            self.client().create_task(parent=queue, task=task, retry=None, timeout=_CALL_TIMEOUT)
        except AlreadyExists:
            log.debug("task %s is already queued (or ran recently): not enqueued twice", task.name)
        except (GoogleAPICallError, GoogleAuthError) as e:
            raise _translate(e, f"enqueue task {task.name.rsplit('/', 1)[-1]} on {queue}") from e

    def ensure_queues(self) -> list[str]:
        """Create each kind's queue, or update its rate limits and retries to the settings; idempotent.

        Returns the queues' resource names. UpdateQueue creates a queue that does not exist.
        """
        names = []
        for kind in KINDS:
            config, path = self.target.queues[kind], self.target.queue_path(kind)
            if path in names:
                continue  # two kinds configured to share one queue
            queue = tasks_v2.Queue(
                name=path,
                rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=config.max_dispatches_per_second,
                                                max_concurrent_dispatches=config.max_concurrent_dispatches),
                retry_config=tasks_v2.RetryConfig(max_attempts=config.max_attempts,
                                                  min_backoff=_duration(config.min_backoff),
                                                  max_backoff=_duration(config.max_backoff)))
            mask = field_mask_pb2.FieldMask(paths=_QUEUE_FIELDS)
            self._retry.call(self._update, queue, mask)
            names.append(path)
        return names

    def _update(self, queue: tasks_v2.Queue, mask: field_mask_pb2.FieldMask) -> None:
        try:
            self.client().update_queue(queue=queue, update_mask=mask, timeout=_CALL_TIMEOUT, retry=None)
        except (GoogleAPICallError, GoogleAuthError) as e:
            raise _translate(e, f"create or update queue {queue.name}") from e

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.transport.close()  # type: ignore[no-untyped-call]


def _duration(seconds: float) -> duration_pb2.Duration:
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=int(round((seconds - whole) * 1e9)))


def _translate(e: GoogleAPICallError | GoogleAuthError, what: str) -> QueueError:
    """Our error for a Cloud Tasks failure: one line, transient or not by its status."""
    if isinstance(e, DefaultCredentialsError):
        return QueueError(f"could not {what}: no Google credentials; run where Application Default Credentials "
                          "exist, or set FIREBACKUP_TASKS_EMULATOR_HOST for the emulator")
    if isinstance(e, GoogleAuthError):
        kind = QueueUnavailable if isinstance(e, TransportError) else QueueError
        return kind(f"could not {what}: the credentials failed ({type(e).__name__}); check the service account")
    if e.grpc_status_code is not None:
        code = e.grpc_status_code.name
    else:
        code = status_of_http(e.code) if e.code is not None else "UNKNOWN"
    detail = (str(e.message).strip().splitlines() or [code])[0][:200]
    hint = {"NOT_FOUND": "; create the queues first (bootstrap.ensure_task_queues)",
            "PERMISSION_DENIED": "; grant the caller roles/cloudtasks.enqueuer (and roles/iam.serviceAccountUser "
                                 "on the invoker service account)"}.get(code, "")
    kind = QueueUnavailable if code in TRANSIENT_CODES else QueueError
    return kind(f"could not {what}: {code}: {detail}{hint}")


__all__ = ["BACKUP", "RESTORE", "WEBHOOKS", "KINDS", "CloudTasksQueue", "CloudTasksTarget", "kind_of", "queue_configs",
           "task_body", "task_id"]
