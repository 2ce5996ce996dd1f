"""Configuration, read once at the edge (`Settings.from_env()`) and passed down."""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field
from typing import Mapping

from firebackup.errors import BadKey, UsageError


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
    # them (for a separate worker, or tests). Anything else is refused at start-up.
    queue: str = "local"
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
        )


QUEUES = ("local", "recording")
METRICS = ("prometheus", "log")


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = env.get(name, default).strip().lower() or default
    if value not in allowed:
        raise UsageError(f"{name}={value!r} is not one of {', '.join(allowed)}; set one of them or unset it")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    """A development switch: on only when explicitly set to 1, true or yes."""
    return env.get(name, "").strip().lower() in ("1", "true", "yes")


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
