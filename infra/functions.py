"""The Cloud Functions FireBackup deploys, spelt once for the build, its test and the deploy.

Each one lives in `functions/<name>/main.py` and its entry point is named like its folder.
`sample` is a request every built function must answer as stated without any backend but its
database: the vendoring test sends it to each function started from its built folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

REPO_ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS_DIR = REPO_ROOT / "functions"

Signature = Literal["http", "cloudevent"]


@dataclass(frozen=True)
class HttpCall:
    """An HTTP request, answered with a status in `status` and a JSON object holding `json_key`."""

    method: str
    path: str
    json: Mapping[str, object] | None
    status: range
    json_key: str


@dataclass(frozen=True)
class PubSubMessage:
    """A Pub/Sub message, delivered as Eventarc delivers it (a CloudEvent) and answered with 2xx."""

    topic: str
    data: bytes
    attributes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class FirestoreWrite:
    """A Firestore document write, delivered as Eventarc delivers `document.v1.written` (binary, protobuf)."""

    project: str
    database: str
    document: str  # path relative to documents/
    fields: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # string fields of the new version


@dataclass(frozen=True)
class Function:
    """One deployable function: its signature type and a request it must answer."""

    name: str
    signature: Signature
    sample: HttpCall | PubSubMessage | FirestoreWrite

    @property
    def entry_point(self) -> str:
        return self.name

    @property
    def source(self) -> Path:
        return FUNCTIONS_DIR / self.name


# A task a worker does not know, sent without credentials: refused with a 4xx JSON error
# (unauthenticated or unknown), never a 500 and never run.
_UNKNOWN_TASK = HttpCall("POST", "/", {"task": "no.such.task", "payload": {}}, range(400, 500), "error")

FUNCTIONS: tuple[Function, ...] = (
    Function("api", "http", HttpCall("GET", "/v1/openapi.json", None, range(200, 201), "openapi")),
    Function("backup_worker", "http", _UNKNOWN_TASK),
    Function("restore_worker", "http", _UNKNOWN_TASK),
    # Cloud Scheduler ticks: the functions read the time, not the message, so any payload does.
    Function("scheduler", "cloudevent", PubSubMessage("firebackup-scheduler-tick", b"tick")),
    Function("maintenance", "cloudevent", PubSubMessage("firebackup-maintenance-tick", b"tick")),
    # A write in a project nobody enabled PITR for: acknowledged (2xx) and dropped with a log line.
    Function("pitr_capture", "cloudevent", FirestoreWrite("demo-unknown", "(default)", "users/u1/orders/o1",
                                                         MappingProxyType({"item": "book"}))),
)


def by_name() -> dict[str, Function]:
    """The table keyed by function name."""
    return {f.name: f for f in FUNCTIONS}


def present(functions_dir: Path = FUNCTIONS_DIR) -> list[str]:
    """Names of the function folders in the tree (those with a main.py), sorted."""
    return sorted(p.parent.name for p in functions_dir.glob("*/main.py"))
