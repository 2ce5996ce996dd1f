"""The worker functions as deployed: functions-framework loads functions/<name>/main.py, which runs one
task of its own kinds per request for an authenticated caller and imports nothing of the HTTP API."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from firebackup import bootstrap
from firebackup.errors import UsageError
from firebackup.runtime.worker_auth import SECRET_HEADER
from firebackup.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
SECRET = "function-test-secret-0123456789"

# A task each worker answers 204 to without touching anything: its row does not exist.
NO_OP = {"backup_worker": {"task": "verify", "payload": {"backup_id": "bkp_not_there"}},
         "restore_worker": {"task": "restore.plan", "payload": {"job": "rst_not_there"}}}

PROBE = """
import json, sys
import functions_framework

target, source, secret, no_op = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
client = functions_framework.create_app(target=target, source=source).test_client()
statuses = [
    client.post("/", json=no_op).status_code,
    client.post("/", json={"task": "nope", "payload": {}}, headers={"X-FireBackup-Worker-Secret": secret}).status_code,
    client.post("/", json=no_op, headers={"X-FireBackup-Worker-Secret": secret}).status_code,
]
api = sorted(m for m in sys.modules if m == "firebackup.api" or m.startswith("firebackup.api."))
print(json.dumps({"statuses": statuses, "api": api}))
"""


def settings(tmp_path: Path, **kw: object) -> Settings:
    base: dict[str, object] = dict(database_url=f"sqlite:///{tmp_path / 'fb.db'}", master_key=os.urandom(32),
                                   queue="recording", worker_secret=SECRET)
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("worker", ["backup_worker", "restore_worker"])
def test_a_worker_function_in_a_fresh_interpreter_runs_tasks_without_loading_the_api_layer(
        tmp_path: Path, worker: str) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": os.pathsep.join(sys.path),
           "FIREBACKUP_DATABASE_URL": f"sqlite:///{tmp_path / 'fb.db'}",
           "FIREBACKUP_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
           "FIREBACKUP_QUEUE": "recording", "FIREBACKUP_WORKER_SECRET": SECRET}
    source = ROOT / "functions" / worker / "main.py"
    out = subprocess.run([sys.executable, "-c", PROBE, worker, str(source), SECRET, json.dumps(NO_OP[worker])],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # unauthenticated: 401; a task it does not know: 400; its own task: 204 (the control plane was built)
    assert result == {"statuses": [401, 400, 204], "api": []}


def test_each_worker_runs_the_tasks_of_its_own_kinds_only(tmp_path: Path) -> None:
    backup = bootstrap.task_endpoint(settings(tmp_path), "backup_worker")
    restore = bootstrap.task_endpoint(settings(tmp_path), "restore_worker")
    assert set(backup.handlers) == {"backup.plan", "backup.chunk", "backup.auth", "backup.finalize", "keys.rotate",
                                    "verify", "delete_backup", "webhook_deliver"}
    assert set(restore.handlers) == {"restore.plan", "restore.chunk", "restore.auth", "restore.changes",
                                     "restore.finalize"}


def test_a_worker_with_no_way_to_authenticate_its_caller_refuses_every_task(tmp_path: Path) -> None:
    endpoint = bootstrap.task_endpoint(settings(tmp_path, worker_secret=None), "backup_worker")
    body = json.dumps(NO_OP["backup_worker"]).encode()
    for headers in ({}, {SECRET_HEADER: SECRET}, {SECRET_HEADER: ""}, {"Authorization": "Bearer x"}):
        assert endpoint.respond(headers, body)[1] == 401


def test_a_worker_is_refused_at_start_up_with_the_in_process_queue_or_without_its_url_for_oidc(
        tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="^FIREBACKUP_QUEUE=local runs tasks in the process that enqueues them; "
                                         "backup_worker needs FIREBACKUP_QUEUE=cloudtasks$"):
        bootstrap.task_endpoint(settings(tmp_path, queue="local"), "backup_worker")
    with pytest.raises(UsageError, match="^restore_worker checks OIDC tokens addressed to its URL; set "
                                         "FIREBACKUP_RESTORE_WORKER_URL$"):
        bootstrap.task_endpoint(settings(tmp_path, tasks_service_account="inv@p.iam.gserviceaccount.com"),
                                "restore_worker")
    with pytest.raises(UsageError, match="unknown worker 'api'"):
        bootstrap.task_endpoint(settings(tmp_path), "api")
