"""SQLAlchemy 2 models of the control plane's metadata database.

Columns that hold secrets end in `_sealed` and only ever receive tokens from
firebackup.crypto.secrets; `SEALED_COLUMNS` lists them so key rotation can find every one.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def new_id(prefix: str) -> str:
    """A sortable id: prefix, milliseconds since the epoch, random tail (key order = creation order)."""
    return f"{prefix}_{int(time.time() * 1000):012x}{os.urandom(5).hex()}"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Stores naive UTC, returns aware UTC: SQLite keeps no zone, PostgreSQL would convert it."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)


ID = sa.String(40)
def _org_fk() -> sa.ForeignKey:
    return sa.ForeignKey("organizations.id", ondelete="CASCADE")


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("usr"))
    firebase_uid: Mapped[str | None] = mapped_column(sa.String(128), unique=True)
    email: Mapped[str | None] = mapped_column(sa.String(320), unique=True)
    display_name: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("org"))
    name: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # BYOK: the Cloud KMS key that wraps new backups' data keys (None: the organization's BackupKey),
    # and during a rotation the key being rotated away from.
    kms_key_name: Mapped[str | None] = mapped_column(sa.String(512), nullable=True)
    kms_key_previous: Mapped[str | None] = mapped_column(sa.String(512), nullable=True)


class UserOrganization(Base):
    __tablename__ = "user_organizations"
    user_id: Mapped[str] = mapped_column(ID, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    org_id: Mapped[str] = mapped_column(ID, _org_fk(), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Project(Base):
    """A connected Firebase project (one Firestore database in it)."""

    __tablename__ = "projects"
    __table_args__ = (sa.UniqueConstraint("org_id", "gcp_project_id", "database_id"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("prj"))
    org_id: Mapped[str] = mapped_column(ID, _org_fk(), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    gcp_project_id: Mapped[str] = mapped_column(sa.String(64))
    database_id: Mapped[str] = mapped_column(sa.String(64), default="(default)")
    auth_kind: Mapped[str] = mapped_column(sa.String(32))  # service_account | oauth
    credentials_sealed: Mapped[str | None] = mapped_column(sa.Text)
    credentials_fingerprint: Mapped[str | None] = mapped_column(sa.String(80))
    created_by: Mapped[str | None] = mapped_column(ID)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StorageDestination(Base):
    __tablename__ = "storage_destinations"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("dst"))
    org_id: Mapped[str] = mapped_column(ID, _org_fk(), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    kind: Mapped[str] = mapped_column(sa.String(16))  # s3 | spaces | gcs | s3compat | local
    url: Mapped[str] = mapped_column(sa.String(1024))
    options: Mapped[dict] = mapped_column(sa.JSON, default=dict)  # non-secret: region, endpoint
    credentials_sealed: Mapped[str | None] = mapped_column(sa.Text)
    credentials_fingerprint: Mapped[str | None] = mapped_column(sa.String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


BACKUP_STATES = ("pending", "running", "completed", "failed", "cancelled")


def _active_jobs_index(table: str) -> sa.Index:
    """A partial index on the few jobs still pending or running, out of a table of mostly finished ones."""
    active = sa.text("state IN ('pending', 'running')")
    return sa.Index(f"ix_{table}_active", "state", postgresql_where=active, sqlite_where=active)


class Backup(Base):
    __tablename__ = "backups"
    # The organization's list, newest first by cursor; the active jobs (the reaper, the queue gauges).
    __table_args__ = (sa.Index("ix_backups_org_created", "org_id", "id"), _active_jobs_index("backups"))
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("bkp"))
    org_id: Mapped[str] = mapped_column(ID, _org_fk())
    # NULL once the project or destination is deleted with ?backups=detach: the record stays, read-only.
    project_id: Mapped[str | None] = mapped_column(ID, sa.ForeignKey("projects.id", ondelete="SET NULL"), index=True)
    destination_id: Mapped[str | None] = mapped_column(ID, sa.ForeignKey("storage_destinations.id",
                                                                         ondelete="SET NULL"))
    schedule_id: Mapped[str | None] = mapped_column(ID, sa.ForeignKey("schedules.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(sa.String(16), default="pending")
    repo_backup_id: Mapped[str | None] = mapped_column(sa.String(64))  # id inside the storage location
    collections: Mapped[list | None] = mapped_column(sa.JSON)
    include_auth: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    read_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    documents: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    chunks_total: Mapped[int] = mapped_column(sa.Integer, default=0)
    chunks_done: Mapped[int] = mapped_column(sa.Integer, default=0)
    bytes_raw: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    bytes_stored: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    manifest_key: Mapped[str | None] = mapped_column(sa.String(1024))
    verify_state: Mapped[str | None] = mapped_column(sa.String(16))
    error: Mapped[str | None] = mapped_column(sa.Text)
    requested_by: Mapped[str | None] = mapped_column(ID)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # At-least-once: the plan the tasks share, and the lease of the task that last ran.
    plan: Mapped[dict | None] = mapped_column(sa.JSON)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class BackupChunk(Base):
    __tablename__ = "backup_chunks"
    __table_args__ = (sa.UniqueConstraint("backup_id", "chunk_id"),)
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True)
    backup_id: Mapped[str] = mapped_column(ID, sa.ForeignKey("backups.id", ondelete="CASCADE"))
    chunk_id: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(16), default="docs")
    key: Mapped[str] = mapped_column(sa.String(1024))
    records: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    bytes_raw: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    bytes_stored: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    extra: Mapped[dict | None] = mapped_column(sa.JSON)  # the manifest entry's extra (partition, seq, counts)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JobTask(Base):
    """One task of a backup or restore job: its lease, where a redelivery resumes, its result."""

    __tablename__ = "job_tasks"
    __table_args__ = (sa.UniqueConstraint("job_id", "task_key"),)
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ID)  # a Backup or Restore id (their prefixes differ)
    task_key: Mapped[str] = mapped_column(sa.String(64))
    done: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resume_seq: Mapped[int | None] = mapped_column(sa.Integer)
    resume_after: Mapped[str | None] = mapped_column(sa.Text)
    result: Mapped[dict | None] = mapped_column(sa.JSON)


class Restore(Base):
    __tablename__ = "restores"
    __table_args__ = (_active_jobs_index("restores"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("rst"))
    org_id: Mapped[str] = mapped_column(ID, _org_fk(), index=True)
    backup_id: Mapped[str] = mapped_column(ID, sa.ForeignKey("backups.id", ondelete="CASCADE"))
    target_project_id: Mapped[str] = mapped_column(ID, sa.ForeignKey("projects.id", ondelete="CASCADE"))
    target_database: Mapped[str | None] = mapped_column(sa.String(64))
    mode: Mapped[str] = mapped_column(sa.String(16), default="overwrite")  # overwrite | skip | merge
    collections: Mapped[list | None] = mapped_column(sa.JSON)
    dry_run: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    include_auth: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    state: Mapped[str] = mapped_column(sa.String(16), default="pending")
    chunks_total: Mapped[int] = mapped_column(sa.Integer, default=0)
    chunks_done: Mapped[int] = mapped_column(sa.Integer, default=0)
    documents_written: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    documents_skipped: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    documents_failed: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    auth_users: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(sa.Text)
    requested_by: Mapped[str | None] = mapped_column(ID)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # At-least-once: the plan the tasks share, and the lease of the task that last ran.
    plan: Mapped[dict | None] = mapped_column(sa.JSON)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A point-in-time restore (services/pitr.py): backup_id is its base, at_ns the instant (ns since
    # the epoch; NULL for a restore of a backup as it is), scope a collection or document path.
    at_ns: Mapped[int | None] = mapped_column(sa.BigInteger)
    scope: Mapped[str | None] = mapped_column(sa.Text)
    allow_gaps: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    keep_references: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    warnings: Mapped[list | None] = mapped_column(sa.JSON)  # the gaps it was allowed to cross
    changes_applied: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    documents_deleted: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")


class Schedule(Base):
    __tablename__ = "schedules"
    # The scheduler's tick reads the enabled schedules that are due (or not yet worked out) only.
    __table_args__ = (sa.Index("ix_schedules_due", "next_run_at", postgresql_where=sa.text("enabled"),
                               sqlite_where=sa.text("enabled")),)
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("sch"))
    org_id: Mapped[str] = mapped_column(ID, _org_fk(), index=True)
    project_id: Mapped[str] = mapped_column(ID, sa.ForeignKey("projects.id", ondelete="CASCADE"))
    destination_id: Mapped[str] = mapped_column(ID, sa.ForeignKey("storage_destinations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(200))
    cron: Mapped[str] = mapped_column(sa.String(120))
    timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC")
    # keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_within ("30d")
    retention: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    collections: Mapped[list | None] = mapped_column(sa.JSON)
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the latest due instant started
    # The first due instant after last_run_at (or creation), worked out by the scheduler's tick; None: not
    # yet (a new or changed schedule), so the next tick looks at it.
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ScheduleRun(Base):
    """One due instant of a schedule, started once: the unique (schedule, due_at) row is the decision."""

    __tablename__ = "schedule_runs"
    __table_args__ = (sa.UniqueConstraint("schedule_id", "due_at"),)
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True)
    schedule_id: Mapped[str] = mapped_column(ID, sa.ForeignKey("schedules.id", ondelete="CASCADE"))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    backup_id: Mapped[str | None] = mapped_column(ID, sa.ForeignKey("backups.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Webhook(Base):
    __tablename__ = "webhooks"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("whk"))
    org_id: Mapped[str] = mapped_column(ID, _org_fk(), index=True)
    url: Mapped[str] = mapped_column(sa.String(2048))
    events: Mapped[list] = mapped_column(sa.JSON, default=list)
    secret_sealed: Mapped[str] = mapped_column(sa.Text)
    secret_fingerprint: Mapped[str] = mapped_column(sa.String(80))
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    # Maintenance looks for pending deliveries whose next attempt is overdue (a lost task).
    __table_args__ = (sa.Index("ix_webhook_deliveries_state_next_attempt_at", "state", "next_attempt_at"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("whd"))
    webhook_id: Mapped[str] = mapped_column(ID, sa.ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(sa.String(64))
    payload: Mapped[dict] = mapped_column(sa.JSON)
    state: Mapped[str] = mapped_column(sa.String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    status_code: Mapped[int | None] = mapped_column(sa.Integer)
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # None once delivered or failed
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int | None] = mapped_column(sa.Integer)  # the last attempt's, answer excerpt included
    response_excerpt: Mapped[str | None] = mapped_column(sa.String(256))  # sanitized start of the last answer


class AuditLog(Base):
    """The audit log; on PostgreSQL partitioned by month (db/partitions.py), its key there (id, created_at)."""

    __tablename__ = "audit_log"
    __table_args__ = (sa.Index("ix_audit_org_id", "org_id", "id"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("aud"))
    org_id: Mapped[str | None] = mapped_column(ID, _org_fk())
    actor_type: Mapped[str] = mapped_column(sa.String(16))  # user | token | system
    actor_id: Mapped[str | None] = mapped_column(ID)
    action: Mapped[str] = mapped_column(sa.String(64), index=True)
    resource_type: Mapped[str | None] = mapped_column(sa.String(32))
    resource_id: Mapped[str | None] = mapped_column(sa.String(64))
    ip: Mapped[str | None] = mapped_column(sa.String(64))
    user_agent: Mapped[str | None] = mapped_column(sa.String(512))
    result: Mapped[str] = mapped_column(sa.String(16), default="success")
    details: Mapped[dict | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("tok"))
    org_id: Mapped[str] = mapped_column(ID, _org_fk(), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    role: Mapped[str] = mapped_column(sa.String(16))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))  # first characters, to recognise a token
    # The member the token acts for (a user id): it is capped at their current role, and dies with
    # their membership. A token minted by a token has the same creator and names its parent.
    created_by: Mapped[str | None] = mapped_column(ID)
    parent_id: Mapped[str | None] = mapped_column(ID, sa.ForeignKey("api_tokens.id", ondelete="CASCADE"))
    can_create_tokens: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OAuthStateUse(Base):
    """An OAuth state that has been completed once: its nonce is unique, so a second use is refused.

    Rows are kept until the state would have expired anyway (then it is refused for its age).
    """

    __tablename__ = "oauth_state_uses"
    nonce: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class PITRConfig(Base):
    __tablename__ = "pitr_configs"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("ptc"))
    org_id: Mapped[str] = mapped_column(ID, _org_fk(), index=True)
    project_id: Mapped[str] = mapped_column(ID, sa.ForeignKey("projects.id", ondelete="CASCADE"), unique=True)
    destination_id: Mapped[str] = mapped_column(ID, sa.ForeignKey("storage_destinations.id", ondelete="CASCADE"))
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    retention_days: Mapped[int] = mapped_column(sa.Integer, default=7)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The project's PITR data key, wrapped by the organization's KEK (kek_id names it; pitr/sealing.py).
    wrapped_dek: Mapped[bytes | None] = mapped_column(sa.LargeBinary, nullable=True)
    kek_id: Mapped[str | None] = mapped_column(sa.String(600), nullable=True)
    # Gap detection has compared every completed backup read up to here with the captured changes.
    gaps_checked_through: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class PITRGap(Base):
    """A window in which capture missed writes: instants in (start_ns, end_ns) are uncertain."""

    __tablename__ = "pitr_gaps"
    __table_args__ = (sa.UniqueConstraint("project_id", "start_ns", "end_ns"),)
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    project_id: Mapped[str] = mapped_column(ID, sa.ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    start_ns: Mapped[int] = mapped_column(sa.BigInteger)  # the last captured instant before the missed writes
    end_ns: Mapped[int] = mapped_column(sa.BigInteger)  # the first captured instant after them (or the backup's)
    reason: Mapped[str] = mapped_column(sa.Text)
    backup_id: Mapped[str | None] = mapped_column(ID, nullable=True)  # the backup that saw the missed writes
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PITRChange(Base):
    """One captured document write; (project_id, event_id) makes redelivered events idempotent.

    event_id is the write's identity, not the delivery's: a digest of path and version instant
    (services/pitr.py), so one write delivered twice under two event ids is still one row.
    `after` is the new document sealed with the project's PITR key (None for a delete).
    """

    __tablename__ = "pitr_changes"
    __table_args__ = (
        sa.UniqueConstraint("project_id", "event_id"),
        sa.Index("ix_pitr_changes_project_time", "project_id", "update_time"),
        sa.Index("ix_pitr_changes_project_database_time", "project_id", "database_id", "update_time"),
    )
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(ID, sa.ForeignKey("projects.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(sa.String(128))
    database_id: Mapped[str] = mapped_column(sa.String(64), default="(default)")
    operation: Mapped[str] = mapped_column(sa.String(8), default="update")  # create | update | delete
    document_path: Mapped[str] = mapped_column(sa.Text)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime)
    update_time_nanos: Mapped[int] = mapped_column(sa.Integer, default=0)  # sub-microsecond part
    before: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    after: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    compacted: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BackupKey(Base):
    """An organization's backup key (KEK): wraps each backup's data key; sealed, made on first backup."""

    __tablename__ = "backup_keys"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("bkk"))
    org_id: Mapped[str] = mapped_column(ID, _org_fk(), unique=True)
    key_id: Mapped[str] = mapped_column(sa.String(80))  # the KEK id recorded in manifests (not secret)
    key_sealed: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class KeyRotation(Base):
    """A rotation of an organization's backups to a Cloud KMS key: one job, one task on the backup queue.

    Its task re-wraps each completed backup's manifest in id order, then PITR's data keys and segments; the
    counts and the failures survive a redelivery, and the task's JobTask row says after which item it resumes.
    """

    __tablename__ = "key_rotations"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=lambda: new_id("rot"))
    org_id: Mapped[str] = mapped_column(ID, _org_fk(), index=True)
    kms_key_name: Mapped[str] = mapped_column(sa.String(512))
    state: Mapped[str] = mapped_column(sa.String(16), default="pending")
    rewrapped: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    already_current: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    failed: Mapped[list | None] = mapped_column(sa.JSON)  # [{"backup_id" | "project_id" | "segment_id", "error"}]
    error: Mapped[str | None] = mapped_column(sa.Text)
    requested_by: Mapped[str | None] = mapped_column(ID)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


SEALED_COLUMNS: tuple[tuple[type[Base], str], ...] = (
    (Project, "credentials_sealed"),
    (StorageDestination, "credentials_sealed"),
    (Webhook, "secret_sealed"),
    (BackupKey, "key_sealed"),
)
