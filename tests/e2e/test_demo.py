"""`make run`'s job, end to end: seed the emulators, back up encrypted, verify, restore, compare."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from infra.local.stack import REPO_ROOT

pytestmark = pytest.mark.e2e


def test_the_demo_restores_an_exact_copy_of_every_document_and_auth_user(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "infra.local.demo", "--workdir", str(tmp_path), "--json"],
                          cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["match"] is True, summary["problems"]
    assert summary["problems"] == []
    assert summary["verify_ok"] is True
    assert summary["encrypted"] is True
    assert summary["documents_seeded"] == summary["documents_backed_up"] == summary["documents_restored"] \
        == summary["documents_compared"] > 200
    assert summary["auth_users_seeded"] == summary["auth_users_restored"] == summary["auth_users_compared"] > 0
    assert (tmp_path / "demo.key").exists()
    assert any((tmp_path / "backups").rglob("manifest.fbm"))
