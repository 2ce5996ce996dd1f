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


# --- What a deployment sets (terraform/ provisions it; infra/terraform_check.py holds the two equal) ---
# Every function builds Settings.from_env(), so each names the variables it needs in the cloud. Secret ones
# (Settings fields with repr=False) come from Secret Manager, granted only to the functions that name them.

# The control plane every function builds: its database (Cloud SQL, IAM login), the sealer's keys, and
# the task queues it enqueues into (Cloud Tasks, one queue per kind, tasks authenticated by OIDC).
CONTROL_PLANE_ENV: frozenset[str] = frozenset({
    "FIREBACKUP_CLOUDSQL_INSTANCE", "FIREBACKUP_CLOUDSQL_IAM_USER", "FIREBACKUP_CLOUDSQL_DATABASE",
    "FIREBACKUP_MASTER_KEY", "FIREBACKUP_OLD_MASTER_KEYS", "FIREBACKUP_KMS_KEY",
    "FIREBACKUP_FIREBASE_PROJECT", "FIREBACKUP_GCP_PROJECT", "FIREBACKUP_METRICS",
    "FIREBACKUP_QUEUE", "FIREBACKUP_TASKS_PROJECT", "FIREBACKUP_TASKS_LOCATION",
    "FIREBACKUP_TASKS_BACKUP_QUEUE", "FIREBACKUP_TASKS_BACKUP_LIMITS",
    "FIREBACKUP_TASKS_RESTORE_QUEUE", "FIREBACKUP_TASKS_RESTORE_LIMITS",
    "FIREBACKUP_TASKS_WEBHOOK_QUEUE", "FIREBACKUP_TASKS_WEBHOOK_LIMITS",
    "FIREBACKUP_BACKUP_WORKER_URL", "FIREBACKUP_RESTORE_WORKER_URL", "FIREBACKUP_TASKS_SERVICE_ACCOUNT",
    "FIREBACKUP_WORKER_SECRET",
    "FIREBACKUP_DB_POOL_SIZE", "FIREBACKUP_DB_MAX_OVERFLOW", "FIREBACKUP_DB_POOL_TIMEOUT", "FIREBACKUP_DB_POOL_RECYCLE",
})
# Reading a connected project with the credentials its owner granted (OAuth refresh tokens need the client).
_TENANT_SOURCES = frozenset({"FIREBACKUP_OAUTH_CLIENT_ID", "FIREBACKUP_OAUTH_CLIENT_SECRET", "FIREBACKUP_OAUTH_TOKEN_URI"})
# How a task runs: chunk size, chunks per task and the lease another delivery waits out.
_TASK_RUNNER = frozenset({"FIREBACKUP_CHUNK_DOCS", "FIREBACKUP_CHUNKS_PER_TASK", "FIREBACKUP_LEASE_SECONDS"})

ENVIRONMENT: Mapping[str, frozenset[str]] = MappingProxyType({
    "api": CONTROL_PLANE_ENV | _TENANT_SOURCES | {
        "FIREBACKUP_OAUTH_REDIRECT_URI", "FIREBACKUP_MAX_REQUEST_BYTES", "FIREBACKUP_ID_TOKEN_CACHE_SECONDS",
        "FIREBACKUP_TRUSTED_PROXY_HOPS", "FIREBACKUP_RATE_LIMIT_PER_ADDRESS", "FIREBACKUP_RATE_LIMIT_PER_TOKEN",
        "FIREBACKUP_RATE_LIMIT_STORAGE", "FIREBACKUP_API_TOKEN_DAYS", "FIREBACKUP_API_TOKEN_MAX_DAYS",
        "FIREBACKUP_FIREBASE_WEB_API_KEY", "FIREBACKUP_DASHBOARD_GOOGLE_SIGN_IN"},
    "backup_worker": CONTROL_PLANE_ENV | _TENANT_SOURCES | _TASK_RUNNER,
    "restore_worker": CONTROL_PLANE_ENV | _TENANT_SOURCES | _TASK_RUNNER,
    "scheduler": CONTROL_PLANE_ENV,
    "maintenance": CONTROL_PLANE_ENV | {"FIREBACKUP_REAP_AFTER_SECONDS", "FIREBACKUP_AUDIT_PARTITIONS_AHEAD",
                                        "FIREBACKUP_AUDIT_RETENTION_MONTHS", "FIREBACKUP_AUDIT_ARCHIVE_URL",
                                        "FIREBACKUP_PITR_COMPACT_AFTER_SECONDS", "FIREBACKUP_PITR_SEGMENT_CHANGES"},
    # The PITR capture function (Firestore change events): it completes an oversized event by reading
    # the document with the project's own credentials, and enqueues nothing.
    "pitr_capture": (CONTROL_PLANE_ENV - {"FIREBACKUP_WORKER_SECRET"}) | _TENANT_SOURCES
                    | {"FIREBACKUP_PITR_CONFIG_CACHE_SECONDS"},
})

# Read by settings.py but set by no deployment, each with the reason.
NOT_DEPLOYED: Mapping[str, str] = MappingProxyType({
    "FIREBACKUP_DATABASE_URL": "the embedded SQLite default or a self-hosted PostgreSQL; the cloud uses Cloud SQL",
    "FIREBACKUP_ALLOW_LOCAL_STORAGE": "development only: local folders as destinations",
    "FIREBACKUP_LOCAL_STORAGE_ROOT": "development only: where local destinations may live",
    "FIREBACKUP_ALLOW_HTTP_WEBHOOKS": "development only: production webhooks use https",
    "FIREBACKUP_TRUST_EMULATOR_TOKENS": "development only: the Auth emulator's unverified addresses",
    "FIREBACKUP_TASKS_EMULATOR_HOST": "development and tests: the Cloud Tasks emulator",
    "FIREBACKUP_WORKER_THREADS": "the embedded platform's in-process task threads",
    "FIRESTORE_EMULATOR_HOST": "development and tests: the Firestore emulator",
    "FIREBASE_AUTH_EMULATOR_HOST": "development and tests: the Auth emulator",
    "FIREBACKUP_FIRESTORE_EMULATOR_CREDENTIALS": "tests only",
    "FIREBACKUP_DEBUG": "the CLI's tracebacks",
    "FIREBACKUP_ALLOW_AMBIENT_STORAGE": "development only: never in production (a confused deputy)",
    "FIREBACKUP_ALLOW_PRIVATE_EGRESS": "development only: never in production (the metadata server)",
    "AWS_ENDPOINT_URL": "development only, with FIREBACKUP_ALLOW_AMBIENT_STORAGE",
    "AWS_DEFAULT_REGION": "the platform's own AWS default; tenants' S3 destinations name their region",
    "FIREBACKUP_LOCAL_TICK_SECONDS": "the embedded platform's stand-in for Cloud Scheduler",
    "FIREBACKUP_LOCAL_MAINTENANCE_SECONDS": "the embedded platform's stand-in for Cloud Scheduler",
    "FIREBACKUP_SCHEDULER_TOPIC": "read by `python -m firebackup.services.ticks`; terraform creates the topics",
    "FIREBACKUP_MAINTENANCE_TOPIC": "read by `python -m firebackup.services.ticks`; terraform creates the topics",
    "FIREBACKUP_SCHEDULER_LOCATION": "read by `python -m firebackup.services.ticks`; terraform creates the jobs",
    "FIREBACKUP_KMS": "tests only: `fake:<folder>` (with FIREBACKUP_ALLOW_FAKE_KMS=1) selects the test KMS; unset, Cloud KMS",
    "FIREBACKUP_REPORTING_DATABASE_URL": "a self-hosted read replica by URL; Cloud SQL replicas through the connector "
                                         "have no setting yet, so deployments read reports from the primary",
    "GOOGLE_CLOUD_PROJECT": "a fallback for FIREBACKUP_GCP_PROJECT and FIREBACKUP_FIREBASE_PROJECT, which are set",
})
