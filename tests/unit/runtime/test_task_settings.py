"""The Cloud Tasks and worker settings, read from the environment: defaults, limits, and bad input in one line."""

from __future__ import annotations

import pytest

from firebackup.errors import UsageError
from firebackup.settings import Settings, TaskQueueConfig


def test_the_defaults_give_each_kind_its_own_queue_and_no_credentials() -> None:
    s = Settings.from_env({})
    assert s.queue == "local"
    assert (s.backup_tasks.name, s.restore_tasks.name, s.webhook_tasks.name) == (
        "firebackup-backup", "firebackup-restore", "firebackup-webhooks")
    assert s.worker_secret is None and s.tasks_service_account is None and s.tasks_emulator_host is None


def test_cloud_tasks_settings_are_read_from_their_variables() -> None:
    s = Settings.from_env({
        "FIREBACKUP_QUEUE": "cloudtasks", "FIREBACKUP_TASKS_PROJECT": "ops",
        "FIREBACKUP_TASKS_LOCATION": "europe-west1",
        "FIREBACKUP_TASKS_RESTORE_QUEUE": "restores-eu", "FIREBACKUP_TASKS_RESTORE_LIMITS": "rate=2.5, attempts=-1",
        "FIREBACKUP_BACKUP_WORKER_URL": "https://b.example.test/",
        "FIREBACKUP_RESTORE_WORKER_URL": "http://127.0.0.1:8081",
        "FIREBACKUP_TASKS_SERVICE_ACCOUNT": "inv@ops.iam.gserviceaccount.com",
        "FIREBACKUP_WORKER_SECRET": "0123456789abcdef", "FIREBACKUP_TASKS_EMULATOR_HOST": "http://127.0.0.1:9022/"})
    assert (s.queue, s.tasks_project, s.tasks_location) == ("cloudtasks", "ops", "europe-west1")
    assert s.restore_tasks == TaskQueueConfig("restores-eu", 2.5, 20, -1, 1.0, 300.0)
    assert s.backup_tasks == Settings().backup_tasks
    assert (s.backup_worker_url, s.restore_worker_url) == ("https://b.example.test/", "http://127.0.0.1:8081")
    assert s.tasks_service_account == "inv@ops.iam.gserviceaccount.com"
    assert s.worker_secret == "0123456789abcdef" and "0123456789abcdef" not in repr(s)
    assert s.tasks_emulator_host == "127.0.0.1:9022"


@pytest.mark.parametrize("env, says", [
    ({"FIREBACKUP_TASKS_BACKUP_LIMITS": "speed=3"}, "FIREBACKUP_TASKS_BACKUP_LIMITS: unknown limit 'speed'"),
    ({"FIREBACKUP_TASKS_BACKUP_LIMITS": "rate=fast"}, "rate='fast' is not a number"),
    ({"FIREBACKUP_TASKS_WEBHOOK_LIMITS": "rate=501"}, "0 < rate <= 500"),
    ({"FIREBACKUP_TASKS_BACKUP_LIMITS": "concurrent=1.5"}, "concurrent=1.5 must be a whole number"),
    ({"FIREBACKUP_TASKS_BACKUP_LIMITS": "attempts=0"}, "attempts=0 must be a whole number >= 1, or -1"),
    ({"FIREBACKUP_TASKS_BACKUP_LIMITS": "min_backoff=10,max_backoff=5"}, "0 < min_backoff <= max_backoff"),
    ({"FIREBACKUP_TASKS_RESTORE_QUEUE": "restores_eu"}, "is not a queue id"),
    ({"FIREBACKUP_BACKUP_WORKER_URL": "backup-worker"}, "is not an http(s) URL"),
    ({"FIREBACKUP_WORKER_SECRET": "short"}, "FIREBACKUP_WORKER_SECRET has 5 characters; set at least 16"),
    ({"FIREBACKUP_QUEUE": "pubsub"}, "'pubsub' is not one of local, recording, cloudtasks"),
], ids=["unknown-limit", "not-a-number", "rate-too-high", "fractional-concurrency", "zero-attempts",
        "backoff-inverted", "bad-queue-id", "bad-url", "short-secret", "unknown-queue"])
def test_bad_task_settings_are_refused_at_start_up_in_one_line(env: dict[str, str], says: str) -> None:
    with pytest.raises(UsageError) as caught:
        Settings.from_env(env)
    assert says in str(caught.value) and "\n" not in str(caught.value)
    assert "short" not in str(caught.value) or "FIREBACKUP_WORKER_SECRET" not in env  # never echo a secret
