"""Configuration, read once at the edge (`Settings.from_env()`) and passed down."""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from typing import Mapping

from firebackup.errors import BadKey, UsageError


@dataclass(frozen=True)
class TaskQueueConfig:
    """One Cloud Tasks queue: its id and the properties ensure_queues() gives it."""

    name: str
    max_dispatches_per_second: float
    max_concurrent_dispatches: int
    max_attempts: int  # every delivery counts; -1: no limit
    min_backoff: float  # seconds before the first retry, doubling up to max_backoff
    max_backoff: float


@dataclass(frozen=True)
class Settings:
    # SQLite file next to the process is the embedded default; PostgreSQL by URL
    # ("postgresql+pg8000://...") or Cloud SQL when an instance connection name is set.
    database_url: str = "sqlite:///firebackup.db"
    cloudsql_instance: str | None = None
    cloudsql_iam_user: str | None = None
    cloudsql_database: str = "firebackup"
    # Master key(s) for sealing secrets: the current one seals, every listed one opens.
    master_key: bytes | None = field(default=None, repr=False)
    old_master_keys: tuple[bytes, ...] = field(default=(), repr=False)
    kms_key_name: str | None = None
    firebase_project_id: str = "demo-firebackup"
    max_request_bytes: int = 1_048_576
    allow_local_storage: bool = False
    # The one folder local destinations must stay under (symlinks resolved); with allow_local_storage
    # on and no root, local destinations are refused.
    local_storage_root: str | None = None
    allow_http_webhooks: bool = False  # development only: production webhooks must use https
    # Development only: accept the Auth emulator's unverified e-mail addresses, so invitations by e-mail
    # can be accepted locally. Never in production: an unverified address can be claimed by anyone.
    trust_emulator_tokens: bool = False
    # How long a verified Firebase ID token is believed before Firebase is asked again whether its user
    # is disabled or signed out everywhere: the most a revoked session keeps working. 0: ask every time.
    id_token_cache_seconds: float = 60.0
    oauth_client_id: str | None = None
    oauth_client_secret: str | None = field(default=None, repr=False)
    oauth_redirect_uri: str | None = None
    # Where a connected project's refresh token is exchanged for access tokens. Google's; tests
    # point it at a fake token endpoint on 127.0.0.1.
    oauth_token_uri: str = "https://oauth2.googleapis.com/token"
    # Task queue: "local" runs tasks in-process (the embedded default), "recording" only keeps
    # them (for a separate worker, or tests), "cloudtasks" sends each to Cloud Tasks, which
    # delivers it to a worker function. Anything else is refused at start-up.
    queue: str = "local"
    # Cloud Tasks: where the queues live (project None: gcp_project, else firebase_project_id) and
    # one queue per kind of task, each with its own rate limits and retries (they are queue
    # properties, set by bootstrap.ensure_task_queues). Chunk tasks each hold a Firestore stream and a database
    # connection, so concurrency stays well below the database's connection limit.
    tasks_project: str | None = None
    tasks_location: str = "us-central1"
    backup_tasks: TaskQueueConfig = TaskQueueConfig("firebackup-backup", 100.0, 50, 50, 1.0, 300.0)
    restore_tasks: TaskQueueConfig = TaskQueueConfig("firebackup-restore", 50.0, 20, 50, 1.0, 300.0)
    webhook_tasks: TaskQueueConfig = TaskQueueConfig("firebackup-webhooks", 10.0, 10, 5, 10.0, 3600.0)
    # The worker functions' URLs: backup and webhook tasks go to the first, restore tasks to the
    # second. Each URL is also the audience of the OIDC tokens its worker accepts.
    backup_worker_url: str | None = None
    restore_worker_url: str | None = None
    # The service account Cloud Tasks mints each task's OIDC token for; workers accept tokens
    # of this account only. None: no OIDC tokens (then the worker secret must be set).
    tasks_service_account: str | None = None
    # A shared secret for where no OIDC token exists (locally, the tasks emulator): queues send
    # it in a header and workers accept it. A worker with neither this nor a service account
    # refuses every task.
    worker_secret: str | None = field(default=None, repr=False)
    # The Cloud Tasks emulator's host:port (development and tests); None: Cloud Tasks itself.
    tasks_emulator_host: str | None = None
    worker_threads: int = 2
    # Emulators (development and tests); None: the real services with their credentials.
    firestore_emulator_host: str | None = None
    auth_emulator_host: str | None = None
    # Tests only: send connected projects' own credentials to the Firestore emulator (it accepts
    # Google access tokens) instead of using none, so the credentials path runs locally.
    firestore_emulator_credentials: bool = False
    # Where a control-plane backup cuts its chunks and hands on (one chunk per task keeps each
    # task well inside a function's timeout); None: the engine's defaults.
    chunk_docs: int | None = None
    chunks_per_task: int = 1
    # A task's lease: another delivery of the task waits this long before it may take over.
    lease_seconds: float = 600.0
    debug: bool = False  # tracebacks on stderr for unexpected errors (the CLI)
    # The API's view of its callers (api/limits.py): how many proxies' X-Forwarded-For entries to
    # believe (1 behind Google's front end; 0 when nothing is in front), and request limits per
    # address and per bearer token ("" turns one off), counted in a flask-limiter store.
    trusted_proxy_hops: int = 0
    rate_limit_per_address: str = "600/minute"
    rate_limit_per_token: str = "1200/minute"
    rate_limit_storage: str = "memory://"
    # An API token's lifetime when its creator names none, and the longest one may ask for: a
    # forgotten token stops working on its own.
    api_token_days: int = 90
    api_token_max_days: int = 365
    # Development only: tenant destinations may come without credentials and then use the server's
    # own identity (AWS default chain, Application Default Credentials), and the environment's
    # endpoints (AWS_ENDPOINT_URL, STORAGE_EMULATOR_HOST) apply to them. Never in production: any
    # member could then write to every bucket the platform can reach (a confused deputy).
    allow_ambient_storage: bool = False
    # Development only: the egress guard lets calls to loopback, private and link-local addresses
    # and plain http through (moto or MinIO on 127.0.0.1). Never in production: tenants would reach
    # the metadata server and the platform's own network.
    allow_private_egress: bool = False
    # With allow_ambient_storage, tenant S3 destinations without an endpoint of their own use this
    # one (development: moto); otherwise they use AWS's regional endpoint.
    s3_endpoint_url: str | None = None
    aws_region: str = "us-east-1"
    # Metrics: "prometheus" serves them at the API's /metrics (the embedded default); "log" writes
    # one JSON line per event on stdout for Cloud Logging's log-based metrics, and has no /metrics.
    metrics: str = "prometheus"
    # The embedded platform's stand-in for Cloud Scheduler (services/local_ticks.py): how often the
    # scheduler and maintenance run in this process.
    local_tick_seconds: float = 30.0
    local_maintenance_seconds: float = 3600.0
    # The maintenance reaper fails a running job whose lease has expired and whose last heartbeat
    # is older than this: no worker is on it any more (killed instance, lost task).
    reap_after_seconds: float = 1800.0
    # Cloud Scheduler publishes the ticks to these Pub/Sub topics (`python -m firebackup.services.ticks
    # ensure` creates the two jobs in this project and location).
    scheduler_topic: str = "firebackup-scheduler-tick"
    maintenance_topic: str = "firebackup-maintenance-tick"
    gcp_project: str | None = None
    scheduler_location: str = "us-central1"
    # TEST ONLY: Cloud KMS replaced by keys kept as files in this folder (crypto/fake_kms.py), from
    # FIREBACKUP_KMS=fake:<folder>, refused unless FIREBACKUP_ALLOW_FAKE_KMS=1. None: Cloud KMS.
    fake_kms_folder: str | None = None
    # The dashboard's sign-in: the Firebase project's Web API key (public by Firebase's design: it names
    # the project to Identity Toolkit, it grants nothing). None with the Auth emulator: any key works there.
    firebase_web_api_key: str | None = None
    # Offer "Sign in with Google" on the dashboard (the provider enabled in Firebase Auth; cloud only).
    dashboard_google_sign_in: bool = False
    # The metadata database's connection budget (docs/database.md has the formula): one process (a
    # function instance) holds at most db_pool_size + db_max_overflow connections, sized to what it
    # runs at once (worker_threads tasks, or the API's concurrent requests). A request that waits
    # db_pool_timeout seconds for one answers 503 with Retry-After (a task: retried later); a
    # connection older than db_pool_recycle seconds is replaced, below the server's and PgBouncer's
    # idle limits.
    db_pool_size: int = 2
    db_max_overflow: int = 1
    db_pool_timeout: float = 10.0
    db_pool_recycle: float = 1800.0
    # Reporting reads (the metrics' queue gauges, the dashboard's overview) on their own engine, e.g. a
    # read replica; None: the primary database.
    reporting_database_url: str | None = None
    # The audit log on PostgreSQL is partitioned by month: maintenance creates partitions this many months
    # ahead, and detaches the ones older than audit_retention_months (0: keep every month), exports them
    # to audit_archive_url (the platform's own storage, as JSON lines, gzip) and only then drops them.
    audit_partitions_ahead: int = 3
    audit_retention_months: int = 0
    audit_archive_url: str | None = None
    # PITR capture: how long a process trusts what it read of a project's PITR configuration (enabled,
    # key) before asking the database again; 0 asks on every event.
    pitr_config_cache_seconds: float = 30.0
    # PITR compaction (maintenance): captured changes older than this move into segment objects, at
    # most pitr_segment_changes per segment.
    pitr_compact_after_seconds: int = 3600
    pitr_segment_changes: int = 100_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from FIREBACKUP_* variables (and a few Google-standard ones)."""
        env = os.environ if env is None else env
        old = tuple(
            _b64key(k.strip(), "FIREBACKUP_OLD_MASTER_KEYS")
            for k in env.get("FIREBACKUP_OLD_MASTER_KEYS", "").split(",")
            if k.strip()
        )
        master = env.get("FIREBACKUP_MASTER_KEY")
        return cls(
            database_url=env.get("FIREBACKUP_DATABASE_URL", cls.database_url),
            cloudsql_instance=env.get("FIREBACKUP_CLOUDSQL_INSTANCE") or None,
            cloudsql_iam_user=env.get("FIREBACKUP_CLOUDSQL_IAM_USER") or None,
            cloudsql_database=env.get("FIREBACKUP_CLOUDSQL_DATABASE", cls.cloudsql_database),
            master_key=_b64key(master, "FIREBACKUP_MASTER_KEY") if master else None,
            old_master_keys=old,
            kms_key_name=env.get("FIREBACKUP_KMS_KEY") or None,
            firebase_project_id=env.get("FIREBACKUP_FIREBASE_PROJECT")
            or env.get("GOOGLE_CLOUD_PROJECT")
            or cls.firebase_project_id,
            max_request_bytes=_int(env, "FIREBACKUP_MAX_REQUEST_BYTES", cls.max_request_bytes),
            allow_local_storage=env.get("FIREBACKUP_ALLOW_LOCAL_STORAGE", "").lower() in ("1", "true", "yes"),
            local_storage_root=env.get("FIREBACKUP_LOCAL_STORAGE_ROOT") or None,
            allow_http_webhooks=env.get("FIREBACKUP_ALLOW_HTTP_WEBHOOKS", "").lower() in ("1", "true", "yes"),
            trust_emulator_tokens=env.get("FIREBACKUP_TRUST_EMULATOR_TOKENS", "").lower() in ("1", "true", "yes"),
            id_token_cache_seconds=_float(env, "FIREBACKUP_ID_TOKEN_CACHE_SECONDS", cls.id_token_cache_seconds,
                                          zero=True),
            oauth_client_id=env.get("FIREBACKUP_OAUTH_CLIENT_ID") or None,
            oauth_client_secret=env.get("FIREBACKUP_OAUTH_CLIENT_SECRET") or None,
            oauth_redirect_uri=env.get("FIREBACKUP_OAUTH_REDIRECT_URI") or None,
            oauth_token_uri=env.get("FIREBACKUP_OAUTH_TOKEN_URI") or cls.oauth_token_uri,
            queue=_choice(env, "FIREBACKUP_QUEUE", QUEUES, cls.queue),
            tasks_project=env.get("FIREBACKUP_TASKS_PROJECT") or None,
            tasks_location=env.get("FIREBACKUP_TASKS_LOCATION") or cls.tasks_location,
            backup_tasks=_task_queue(env, "BACKUP", cls.backup_tasks),
            restore_tasks=_task_queue(env, "RESTORE", cls.restore_tasks),
            webhook_tasks=_task_queue(env, "WEBHOOK", cls.webhook_tasks),
            backup_worker_url=_url(env, "FIREBACKUP_BACKUP_WORKER_URL"),
            restore_worker_url=_url(env, "FIREBACKUP_RESTORE_WORKER_URL"),
            tasks_service_account=env.get("FIREBACKUP_TASKS_SERVICE_ACCOUNT") or None,
            worker_secret=_secret(env, "FIREBACKUP_WORKER_SECRET"),
            tasks_emulator_host=_host(env.get("FIREBACKUP_TASKS_EMULATOR_HOST")),
            worker_threads=_int(env, "FIREBACKUP_WORKER_THREADS", cls.worker_threads),
            firestore_emulator_host=_host(env.get("FIRESTORE_EMULATOR_HOST")),
            auth_emulator_host=_host(env.get("FIREBASE_AUTH_EMULATOR_HOST")),
            firestore_emulator_credentials=env.get("FIREBACKUP_FIRESTORE_EMULATOR_CREDENTIALS", "").lower()
            in ("1", "true", "yes"),
            chunk_docs=_int(env, "FIREBACKUP_CHUNK_DOCS", 0) or None,
            chunks_per_task=_int(env, "FIREBACKUP_CHUNKS_PER_TASK", cls.chunks_per_task),
            lease_seconds=float(_int(env, "FIREBACKUP_LEASE_SECONDS", int(cls.lease_seconds))),
            debug=env.get("FIREBACKUP_DEBUG", "") == "1",
            trusted_proxy_hops=_int(env, "FIREBACKUP_TRUSTED_PROXY_HOPS", cls.trusted_proxy_hops),
            rate_limit_per_address=env.get("FIREBACKUP_RATE_LIMIT_PER_ADDRESS", cls.rate_limit_per_address).strip(),
            rate_limit_per_token=env.get("FIREBACKUP_RATE_LIMIT_PER_TOKEN", cls.rate_limit_per_token).strip(),
            rate_limit_storage=env.get("FIREBACKUP_RATE_LIMIT_STORAGE", cls.rate_limit_storage).strip(),
            api_token_days=_int(env, "FIREBACKUP_API_TOKEN_DAYS", cls.api_token_days),
            api_token_max_days=_int(env, "FIREBACKUP_API_TOKEN_MAX_DAYS", cls.api_token_max_days),
            allow_ambient_storage=_flag(env, "FIREBACKUP_ALLOW_AMBIENT_STORAGE"),
            allow_private_egress=_flag(env, "FIREBACKUP_ALLOW_PRIVATE_EGRESS"),
            s3_endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            aws_region=env.get("AWS_DEFAULT_REGION") or cls.aws_region,
            metrics=_choice(env, "FIREBACKUP_METRICS", METRICS, cls.metrics),
            local_tick_seconds=_float(env, "FIREBACKUP_LOCAL_TICK_SECONDS", cls.local_tick_seconds),
            local_maintenance_seconds=_float(env, "FIREBACKUP_LOCAL_MAINTENANCE_SECONDS",
                                             cls.local_maintenance_seconds),
            reap_after_seconds=float(_int(env, "FIREBACKUP_REAP_AFTER_SECONDS", int(cls.reap_after_seconds))),
            scheduler_topic=env.get("FIREBACKUP_SCHEDULER_TOPIC") or cls.scheduler_topic,
            maintenance_topic=env.get("FIREBACKUP_MAINTENANCE_TOPIC") or cls.maintenance_topic,
            gcp_project=env.get("FIREBACKUP_GCP_PROJECT") or env.get("GOOGLE_CLOUD_PROJECT") or None,
            scheduler_location=env.get("FIREBACKUP_SCHEDULER_LOCATION") or cls.scheduler_location,
            fake_kms_folder=_fake_kms(env),
            firebase_web_api_key=env.get("FIREBACKUP_FIREBASE_WEB_API_KEY") or None,
            dashboard_google_sign_in=_flag(env, "FIREBACKUP_DASHBOARD_GOOGLE_SIGN_IN"),
            db_pool_size=_count(env, "FIREBACKUP_DB_POOL_SIZE", cls.db_pool_size, least=1),
            db_max_overflow=_count(env, "FIREBACKUP_DB_MAX_OVERFLOW", cls.db_max_overflow),
            db_pool_timeout=_float(env, "FIREBACKUP_DB_POOL_TIMEOUT", cls.db_pool_timeout),
            db_pool_recycle=_float(env, "FIREBACKUP_DB_POOL_RECYCLE", cls.db_pool_recycle),
            reporting_database_url=env.get("FIREBACKUP_REPORTING_DATABASE_URL", "").strip() or None,
            audit_partitions_ahead=_count(env, "FIREBACKUP_AUDIT_PARTITIONS_AHEAD", cls.audit_partitions_ahead,
                                          least=1),
            audit_retention_months=_count(env, "FIREBACKUP_AUDIT_RETENTION_MONTHS", cls.audit_retention_months),
            audit_archive_url=env.get("FIREBACKUP_AUDIT_ARCHIVE_URL", "").strip() or None,
            pitr_config_cache_seconds=_float(env, "FIREBACKUP_PITR_CONFIG_CACHE_SECONDS",
                                             cls.pitr_config_cache_seconds, zero=True),
            pitr_compact_after_seconds=_int(env, "FIREBACKUP_PITR_COMPACT_AFTER_SECONDS", cls.pitr_compact_after_seconds),
            pitr_segment_changes=_int(env, "FIREBACKUP_PITR_SEGMENT_CHANGES", cls.pitr_segment_changes),
        )


QUEUES = ("local", "recording", "cloudtasks")
METRICS = ("prometheus", "log")

_LIMITS = {"rate": "max_dispatches_per_second", "concurrent": "max_concurrent_dispatches", "attempts": "max_attempts",
           "min_backoff": "min_backoff", "max_backoff": "max_backoff"}
_MIN_SECRET = 16


def _task_queue(env: Mapping[str, str], kind: str, default: TaskQueueConfig) -> TaskQueueConfig:
    """FIREBACKUP_TASKS_<KIND>_QUEUE (the queue id) and _LIMITS ("rate=100,concurrent=50,attempts=50,
    min_backoff=1,max_backoff=300", any of them; the rest keep their defaults)."""
    name_var, limits_var = f"FIREBACKUP_TASKS_{kind}_QUEUE", f"FIREBACKUP_TASKS_{kind}_LIMITS"
    name = env.get(name_var, "").strip() or default.name
    if not re.fullmatch(r"[A-Za-z0-9-]{1,100}", name):
        raise UsageError(f"{name_var}={name!r} is not a queue id; use letters, digits and hyphens (at most 100)")
    values: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in env.get(limits_var, "").split(","))):
        key, _, raw = item.partition("=")
        if key.strip() not in _LIMITS:
            raise UsageError(f"{limits_var}: unknown limit {key.strip()!r}; use {', '.join(_LIMITS)} as key=value")
        try:
            values[_LIMITS[key.strip()]] = float(raw)
        except ValueError:
            raise UsageError(f"{limits_var}: {key.strip()}={raw.strip()!r} is not a number; set a number") from None
    rate = values.get("max_dispatches_per_second", default.max_dispatches_per_second)
    concurrent = values.get("max_concurrent_dispatches", default.max_concurrent_dispatches)
    attempts = values.get("max_attempts", default.max_attempts)
    low, high = values.get("min_backoff", default.min_backoff), values.get("max_backoff", default.max_backoff)
    # Cloud Tasks' own bounds, so a bad value fails at start-up rather than at deploy.
    if not 0 < rate <= 500:
        raise UsageError(f"{limits_var}: rate={rate:g} is outside Cloud Tasks' range; set 0 < rate <= 500")
    if concurrent != int(concurrent) or not 1 <= concurrent <= 5000:
        raise UsageError(f"{limits_var}: concurrent={concurrent:g} must be a whole number from 1 to 5000")
    if attempts != int(attempts) or not (attempts >= 1 or attempts == -1):
        raise UsageError(f"{limits_var}: attempts={attempts:g} must be a whole number >= 1, or -1 for no limit")
    if not 0 < low <= high:
        raise UsageError(f"{limits_var}: backoff must satisfy 0 < min_backoff <= max_backoff (got {low:g}, {high:g})")
    return TaskQueueConfig(name, rate, int(concurrent), int(attempts), low, high)


def _url(env: Mapping[str, str], name: str) -> str | None:
    url = env.get(name, "").strip()
    if url and not re.match(r"https?://[^/\s]+", url):
        raise UsageError(f"{name}={url!r} is not an http(s) URL; set the worker function's URL")
    return url or None


def _secret(env: Mapping[str, str], name: str) -> str | None:
    secret = env.get(name, "")
    if secret and len(secret) < _MIN_SECRET:
        raise UsageError(f"{name} has {len(secret)} characters; set at least {_MIN_SECRET} random ones")
    return secret or None


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = env.get(name, default).strip().lower() or default
    if value not in allowed:
        raise UsageError(f"{name}={value!r} is not one of {', '.join(allowed)}; set one of them or unset it")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    """A development switch: on only when explicitly set to 1, true or yes."""
    return env.get(name, "").strip().lower() in ("1", "true", "yes")


def _fake_kms(env: Mapping[str, str]) -> str | None:
    """FIREBACKUP_KMS: unset or "cloud" is Cloud KMS; "fake:<folder>" the test-only stand-in, behind its own flag."""
    raw = env.get("FIREBACKUP_KMS", "").strip()
    if raw in ("", "cloud"):
        return None
    if not raw.startswith("fake:") or not raw[5:].strip():
        raise UsageError(f"FIREBACKUP_KMS={raw!r} is not 'cloud' or 'fake:<folder>'; unset it to use Cloud KMS")
    if not _flag(env, "FIREBACKUP_ALLOW_FAKE_KMS"):
        raise UsageError("FIREBACKUP_KMS=fake:... keeps keys in local files and is for tests only; set "
                         "FIREBACKUP_ALLOW_FAKE_KMS=1 in a test, or unset FIREBACKUP_KMS to use Cloud KMS")
    return raw[5:].strip()


def _host(raw: str | None) -> str | None:
    """An emulator's host:port as the Google tools write it (a scheme is tolerated and dropped)."""
    host = (raw or "").strip()
    if "://" in host:
        host = host.split("://", 1)[1]
    return host.rstrip("/") or None


def _b64key(text: str, name: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadKey(f"{name} is not base64; set it to 32 random bytes, base64-encoded") from e
    if len(key) != 32:
        raise BadKey(f"{name} decodes to {len(key)} bytes, not 32; set it to 32 random bytes, base64-encoded")
    return key


def _float(env: Mapping[str, str], name: str, default: float, *, zero: bool = False) -> float:
    """A number of seconds, positive (or zero when `zero` allows it: a cache turned off)."""
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not (value >= 0 if zero else value > 0):
        least = "zero or more" if zero else "a positive number of"
        raise UsageError(f"{name}={raw!r} is not {least} seconds; set e.g. 30")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as e:
        raise UsageError(f"{name}={raw!r} is not an integer; set a whole number") from e


def _count(env: Mapping[str, str], name: str, default: int, *, least: int = 0) -> int:
    """A whole number of at least `least` (a pool size, a number of months)."""
    value = _int(env, name, default)
    if value < least:
        raise UsageError(f"{name}={value} is below {least}; set a whole number of at least {least}")
    return value
