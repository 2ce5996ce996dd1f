"""terraform/, checked offline: formatting, checkov, and held to the code by infra/terraform_check.py.

No provider can be downloaded here, so `terraform init/validate` cannot run; these are the checks
that can. A missing terraform or checkov fails, naming what to install.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from infra import functions, terraform_check

pytestmark = pytest.mark.integration

ROOT = functions.REPO_ROOT
TERRAFORM = ROOT / "terraform"
# infra/bootstrap.sh installs checkov into a venv of its own (its pins conflict with ours).
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
# What a copy of the tree needs for the check to run on it.
COPIED = ("shared", "infra", "functions", "terraform", "docs", "pyproject.toml")


def _tool(path: str | Path, hint: str) -> str:
    found = shutil.which(str(path))
    if found is None:
        pytest.fail(f"{path} is missing; {hint}")
    return found


def test_terraform_files_are_formatted() -> None:
    terraform = _tool("terraform", "install Terraform >= 1.9 (https://developer.hashicorp.com/terraform/install)")
    run = subprocess.run([terraform, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"terraform fmt would change these files:\n{run.stdout}{run.stderr}"


def test_checkov_finds_no_failed_check_and_every_skip_says_why() -> None:
    checkov = _tool(CHECKOV, "run `bash infra/bootstrap.sh` (it installs checkov into .venv-checkov)")
    run = subprocess.run([checkov, "-d", str(TERRAFORM), "--framework", "terraform", "--output", "json",
                          "--quiet", "--skip-download"],
                         capture_output=True, text=True, timeout=600,
                         # Offline: no fetch of Prisma Cloud's guideline mappings.
                         env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    reports = json.loads(run.stdout or "[]")
    reports = reports if isinstance(reports, list) else [reports]
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']}:{c['file_line_range'][0]})"
              for r in reports for c in r.get("results", {}).get("failed_checks", [])]
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    skipped = [c for r in reports for c in r.get("results", {}).get("skipped_checks", [])]
    unexplained = [f"{c['check_id']} {c['resource']}" for c in skipped
                   if len((c.get("check_result", {}).get("suppress_comment") or "").strip()) < 20]
    assert not unexplained, "checkov skips without a reason next to the resource:\n" + "\n".join(unexplained)
    passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
    assert passed > 40, f"checkov passed only {passed} checks: did it parse terraform/?"


def test_terraform_provisions_exactly_what_the_code_needs() -> None:
    assert terraform_check.problems(ROOT) == []


def test_the_roles_table_is_read_from_the_deployment_guide() -> None:
    rows = terraform_check.roles_table((ROOT / "docs" / "deployment.md").read_text(encoding="utf-8"))
    assert ("api", "roles/cloudtasks.enqueuer", "project") in rows
    assert not any(a == "api" and ("storage" in r or "datastore" in r) for a, r, _ in rows)
    assert {(a, s) for a, r, s in rows if r == "roles/run.invoker"} == {
        ("tasks", "backup_worker"), ("tasks", "restore_worker"), ("ticks", "scheduler"), ("ticks", "maintenance")}


# --- the check fails, naming what is missing, when the code gains what terraform lacks ----------------


def _copy_tree(tmp_path: Path) -> Path:
    copy = tmp_path / "tree"
    copy.mkdir()
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, copy / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", ".terraform", "node_modules"))
        else:
            shutil.copy2(src, copy / name)
    return copy


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is no longer in {path}; update the mutation"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def _check_copy(copy: Path) -> tuple[int, str]:
    """infra/terraform_check run on the copy, importing the copy's code."""
    env = {**os.environ, "PYTHONPATH": f"{copy / 'shared'}{os.pathsep}{copy}"}
    run = subprocess.run([sys.executable, "-m", "infra.terraform_check", "--root", str(copy)], cwd=copy, env=env,
                         capture_output=True, text=True, timeout=120)
    return run.returncode, run.stderr


def _add_function(copy: Path) -> None:
    _edit(copy / "infra" / "functions.py", "\n)\n\n\ndef by_name",
          '\n    Function("audit_export", "http", _UNKNOWN_TASK),\n)\n\n\ndef by_name')
    _append(copy / "infra" / "functions.py",
            '\nENVIRONMENT = MappingProxyType({**ENVIRONMENT, "audit_export": CONTROL_PLANE_ENV})\n')


def _add_setting(copy: Path, field: str, variable: str, *, secret: bool = False) -> None:
    settings = copy / "shared" / "firebackup" / "settings.py"
    declared = "field(default=None, repr=False)" if secret else "None"
    _edit(settings, '    scheduler_location: str = "us-central1"\n',
          f'    scheduler_location: str = "us-central1"\n    {field}: str | None = {declared}\n')
    _edit(settings, "            scheduler_location=",
          f'            {field}=env.get("{variable}") or None,\n            scheduler_location=')


def _declare_for_api(copy: Path, variable: str) -> None:
    _append(copy / "infra" / "functions.py",
            f'\nENVIRONMENT = MappingProxyType({{**ENVIRONMENT, "api": ENVIRONMENT["api"] | {{"{variable}"}}}})\n')


def _add_variable(copy: Path) -> None:
    _add_setting(copy, "audit_bucket", "FIREBACKUP_AUDIT_BUCKET")
    _declare_for_api(copy, "FIREBACKUP_AUDIT_BUCKET")


def _add_undeclared_variable(copy: Path) -> None:
    _add_setting(copy, "audit_bucket", "FIREBACKUP_AUDIT_BUCKET")


def _add_queue(copy: Path) -> None:
    _edit(copy / "shared" / "firebackup" / "settings.py", "    # The worker functions' URLs",
          '    audit_tasks: TaskQueueConfig = TaskQueueConfig("firebackup-audit", 5.0, 5, 10, 1.0, 60.0)\n'
          "    # The worker functions' URLs")


def _add_secret(copy: Path) -> None:
    _add_setting(copy, "audit_token", "FIREBACKUP_AUDIT_TOKEN", secret=True)
    _declare_for_api(copy, "FIREBACKUP_AUDIT_TOKEN")


@pytest.mark.parametrize(("mutate", "expected"), [
    (_add_function, "function audit_export (infra/functions.py) has no entry in terraform"),
    (_add_variable, "function api reads FIREBACKUP_AUDIT_BUCKET (infra/functions.py ENVIRONMENT) but terraform "
                    "does not set it"),
    (_add_undeclared_variable, "settings.py reads FIREBACKUP_AUDIT_BUCKET but infra/functions.py names it in "
                               "neither"),
    (_add_queue, "queue firebackup-audit (settings.py) has no entry in terraform/tasks.tf"),
    (_add_secret, "secret FIREBACKUP_AUDIT_TOKEN (settings.py) has no Secret Manager secret in terraform"),
], ids=["function", "environment-variable", "undeclared-variable", "queue", "secret"])
def test_the_check_fails_naming_what_terraform_lacks_when_the_code_gains_it(
        tmp_path: Path, mutate: Callable[[Path], None], expected: str) -> None:
    copy = _copy_tree(tmp_path)
    mutate(copy)
    code, stderr = _check_copy(copy)
    assert code == 1
    assert expected in stderr, stderr


def test_the_unmutated_copy_passes_the_check(tmp_path: Path) -> None:
    """The mutation tests fail for their mutation, not for the copy."""
    code, stderr = _check_copy(_copy_tree(tmp_path))
    assert (code, stderr) == (0, "")
