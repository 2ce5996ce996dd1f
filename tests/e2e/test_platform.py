"""The local platform end to end, over HTTP only: `make run`'s own flow, and a longer drive through schedules
firing on their own, exact counts, a restore that matches, retention pruning the oldest, and the metrics."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from infra.local.demo import diff, dump_firestore, seed_firestore
from infra.local.platform import PROJECT, Client, Platform, _service_account_key

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_make_runs_flow_has_the_scheduler_back_up_on_its_own_and_the_restore_match(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "infra.local.platform", "--workdir", str(tmp_path), "--port", "0",
                           "--exit-after-summary", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["match"] is True and summary["problems"] == []
    assert summary["documents_seeded"] == summary["documents_backed_up"] == summary["documents_restored"] \
        == summary["documents_compared"] > 0
    assert summary["backup_id"].startswith("bkp_") and summary["api"].startswith("http://127.0.0.1:")


@pytest.fixture
def platform(tmp_path) -> Iterator[Platform]:
    saved = dict(os.environ)  # the platform points this process's client libraries at its emulators
    try:
        with Platform(tmp_path, tick_seconds=2, maintenance_seconds=3) as p:
            yield p
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _metric(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}(?:\{{(.*)\}})? ([0-9.e+-]+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


def test_schedules_fire_on_ticks_with_exact_counts_retention_prunes_and_metrics_follow(platform) -> None:
    docs = seed_firestore(PROJECT, "(default)")
    client: Client = platform.sign_in()
    org = client.call("POST", "/orgs", {"name": "E2E"})["id"]
    project = client.call("POST", f"/orgs/{org}/projects", {
        "name": "e2e", "gcp_project_id": PROJECT, "service_account_key": _service_account_key(PROJECT)})["id"]
    destination = client.call("POST", f"/orgs/{org}/destinations", {
        "name": "folder", "kind": "local", "url": (platform.storage / "e2e").as_uri()})["id"]
    schedule = client.call("POST", f"/orgs/{org}/schedules", {
        "name": "minutely", "project_id": project, "destination_id": destination, "cron": "* * * * *",
        "timezone": "UTC", "retention": {"keep_last": 1}})["id"]

    def scheduled(page: dict[str, Any]) -> list[dict[str, Any]]:
        return [b for b in page["items"] if b["schedule_id"] == schedule]

    # Two minutes' ticks start two backups; keep_last=1 then prunes the older one (maintenance).
    first = client.wait(f"/orgs/{org}/backups", lambda p: any(b["state"] == "completed" for b in scheduled(p)),
                        timeout=150, what="the first scheduled backup")
    first_id = next(b["id"] for b in scheduled(first) if b["state"] == "completed")
    client.wait(f"/orgs/{org}/backups", lambda p: any(b["state"] == "completed" and b["id"] != first_id
                                                      for b in scheduled(p)),
                timeout=150, what="the second scheduled backup")
    page = client.wait(f"/orgs/{org}/backups", lambda p: first_id not in {b["id"] for b in scheduled(p)},
                       timeout=60, what="retention pruning the first backup")
    kept = [b for b in scheduled(page) if b["state"] == "completed"]
    assert len(kept) == 1 and all(b["documents"] == docs for b in kept)
    assert not any(p.name == "manifest.fbm" and first_id in str(p) for p in platform.storage.rglob("*"))
    audit = client.call("GET", f"/orgs/{org}/audit?action=backup.")["items"]
    assert any(a["resource_id"] == first_id and "retention" in a["action"] for a in audit), audit

    restore = client.call("POST", f"/orgs/{org}/restores", {
        "backup_id": kept[0]["id"], "target_project_id": project, "target_database": "e2e-copy"})
    done = client.wait(f"/orgs/{org}/restores/{restore['id']}", lambda r: r["state"] in ("completed", "failed"),
                       timeout=120, what="the restore")
    assert done["state"] == "completed" and done["documents_written"] == docs, done
    assert diff(dump_firestore(PROJECT, "(default)"), dump_firestore(PROJECT, "e2e-copy")) == []

    metrics = client.session.get(f"{platform.url}/metrics", timeout=30).text
    assert _metric(metrics, "backup_success_total", organization=org) >= 2
    assert _metric(metrics, "backup_failure_total", organization=org) == 0
    assert _metric(metrics, "api_request_duration_seconds_count", route="POST /v1/orgs/{org_id}/restores") >= 1
    assert "queue_jobs_waiting" in metrics and "queue_jobs_active" in metrics
