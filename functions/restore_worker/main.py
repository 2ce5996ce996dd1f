"""Cloud Function `restore_worker`: one restore task per request, from Cloud Tasks.

Request body {"task": "<name>", "payload": {...}}; the caller proves itself with an OIDC token of
the invoker service account (or, locally, the worker secret). Statuses: runtime/worker.py.
"""

from __future__ import annotations

from typing import Any

import functions_framework

from firebackup import bootstrap
from firebackup.runtime.worker import TaskEndpoint
from firebackup.settings import Settings


def _build() -> TaskEndpoint:
    bootstrap.log_to_stderr()
    return bootstrap.task_endpoint(Settings.from_env(), "restore_worker")


_endpoint = bootstrap.once(_build)


@functions_framework.http
def restore_worker(request: Any) -> Any:
    return _endpoint().respond(request.headers, request.get_data())
