"""The services know nothing of HTTP: no import of the API layer, no HTTP status on their errors."""

from __future__ import annotations

import ast
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import firebackup.services
from firebackup.services import errors

SERVICES = Path(firebackup.services.__file__).parent


def _imported_modules(tree: ast.AST) -> set[str]:
    """Every module an import statement names, lazy imports inside functions included."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")  # the package imports absolutely; a relative one shows
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def test_no_service_module_imports_the_api_layer_even_lazily() -> None:
    offenders = {}
    for path in sorted(SERVICES.glob("*.py")):
        found = {m for m in _imported_modules(ast.parse(path.read_text()))
                 if m.startswith((".", "firebackup.api", "flask", "pydantic", "werkzeug"))}
        if found:
            offenders[path.name] = sorted(found)
    assert offenders == {}


def test_importing_every_service_module_in_a_fresh_interpreter_loads_nothing_from_the_api_layer() -> None:
    names = [f"firebackup.services.{m.name}" for m in pkgutil.iter_modules([str(SERVICES)])]
    code = ("import sys\n" + "".join(f"import {n}\n" for n in names) +
            "print(sorted(m for m in sys.modules if m == 'firebackup.api' or m.startswith('firebackup.api.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": ":".join(sys.path), "PATH": "/usr/bin:/bin"})
    assert len(names) >= 10 and out.stdout.strip() == "[]"


def test_service_errors_carry_a_message_and_details_but_no_transport_status() -> None:
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.ServiceError)]
    assert len(classes) == 6
    for cls in classes:
        e = cls("what went wrong; what to do", details={"field": "x"})
        assert (str(e), e.details) == ("what went wrong; what to do", {"field": "x"})
        assert not any(hasattr(e, a) for a in ("status", "status_code", "code", "http_status")), cls
