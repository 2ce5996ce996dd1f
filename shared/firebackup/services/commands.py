"""What callers ask the services to do: plain, immutable values with no transport attached.

The HTTP API builds them from its request models, the scheduler from a schedule row, tests by hand.
They live in one module because together they are the services' whole input vocabulary: a caller
imports them without importing the services (and their database layer), and the API's schemas
map onto them in one place. Shape is checked by whoever builds a command; the rules that depend
on stored state (ownership, roles, current job state) are checked by the services.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal

from firebackup.services.context import Role

DestinationKind = Literal["s3", "spaces", "gcs", "s3compat", "local"]
RestoreMode = Literal["overwrite", "skip", "merge"]
StorageEncryptionMode = Literal["sse-s3", "sse-kms", "sse-c", "cmek"]


class Unset(enum.Enum):
    """Marks a field a partial update leaves alone (distinct from None, which may mean "clear")."""

    UNSET = "unset"


UNSET = Unset.UNSET


# --- lists -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PageRequest:
    """One page of a list: at most `limit` items after `cursor` (the last id of the previous page)."""

    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True)
class AuditFilter(PageRequest):
    """A page of the audit log; `action` ending in "." matches every action under that prefix."""

    actor: str | None = None
    action: str | None = None
    resource: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class NextRuns:
    """The next `count` runs of a schedule, or of the cron and time zone given instead (a preview before a change)."""

    cron: str | None = None
    timezone: str | None = None
    count: int = 5


# --- organizations, members, tokens ------------------------------------------------------------------

@dataclass(frozen=True)
class CreateOrg:
    name: str


@dataclass(frozen=True)
class RenameOrg:
    name: str


@dataclass(frozen=True)
class InviteMember:
    email: str
    role: Role


@dataclass(frozen=True)
class ChangeRole:
    role: Role


@dataclass(frozen=True)
class CreateToken:
    """A new API token; it lives `expires_in_days` (None: the settings' default) and may mint tokens
    itself only when `can_create_tokens` (which only a signed-in user can grant)."""

    name: str
    role: Role
    expires_in_days: int | None = None
    can_create_tokens: bool = False


@dataclass(frozen=True)
class DeleteWithBackups:
    """Deleting a project or destination that has backup records: refused unless the caller chooses
    to delete the backups too (objects and rows) or to keep them detached (rows and objects stay)."""

    backups: Literal["delete", "detach"] | None = None


@dataclass(frozen=True)
class SetOrgEncryption:
    """The Cloud KMS key (BYOK) new backups are wrapped with; None: the organization's own BackupKey."""

    kms_key_name: str | None


# --- projects ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConnectProject:
    """Connect with a service-account key: the key file's fields, as downloaded (sealed before storage)."""

    name: str
    gcp_project_id: str
    service_account_key: Mapping[str, Any] = field(repr=False)
    database_id: str = "(default)"


@dataclass(frozen=True)
class CompleteOAuth:
    """Finish the OAuth flow started by oauth_start: its sealed state and Google's authorization code."""

    state: str = field(repr=False)
    code: str = field(repr=False)
    name: str
    gcp_project_id: str
    database_id: str = "(default)"


# --- storage destinations ----------------------------------------------------------------------------

@dataclass(frozen=True)
class StorageCredentials:
    """Access keys (S3-style) or a service-account key (GCS), and an SSE-C customer key (base64 of 32
    bytes) for sse-c encryption; sealed before storage, never returned."""

    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    service_account_key: Mapping[str, Any] | None = field(default=None, repr=False)
    sse_customer_key: str | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The fields that are set, as stored (sealed) and handed to the storage client."""
        out: dict[str, Any] = {"access_key_id": self.access_key_id, "secret_access_key": self.secret_access_key,
                               "service_account_key": dict(self.service_account_key) if self.service_account_key
                               is not None else None, "sse_customer_key": self.sse_customer_key}
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class StorageEncryption:
    """What the storage provider encrypts every object with, under FireBackup's own encryption.

    sse-s3: the provider's managed keys (S3, S3-compatible); sse-kms: an AWS KMS key (kms_key, an id or
    ARN; the account's aws/s3 key if None); sse-c: a customer key sent with every request (the one kind
    Spaces offers; the key travels in the credentials); cmek: a Cloud KMS key for GCS (kms_key, required).
    """

    mode: StorageEncryptionMode
    kms_key: str | None = None


@dataclass(frozen=True)
class AddDestination:
    name: str
    kind: DestinationKind
    url: str
    region: str | None = None
    endpoint_url: str | None = None
    credentials: StorageCredentials | None = None
    encryption: StorageEncryption | None = None

    def options(self) -> dict[str, str]:
        """The destination's stored options (shown by the API; no secrets): region, endpoint, encryption."""
        enc = self.encryption
        out = {"region": self.region, "endpoint_url": self.endpoint_url,
               "encryption": enc.mode if enc else None, "kms_key": enc.kms_key if enc else None}
        return {k: v for k, v in out.items() if v}


# --- schedules and webhooks --------------------------------------------------------------------------

@dataclass(frozen=True)
class Retention:
    """Which of a schedule's completed backups to keep, restic `forget` style (services/retention.py).

    keep_last: the newest n; keep_hourly ... keep_yearly: the newest backup of each of the n most
    recent hours, days, ISO weeks, months, years (in the schedule's time zone) that have one;
    keep_within: every backup younger than a duration ("30d", "12h", "1y6m") counted back from the
    newest backup. A backup any rule keeps is kept; with no rule at all, every backup is.
    """

    keep_last: int | None = None
    keep_hourly: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None
    keep_within: str | None = None

    def as_dict(self) -> dict[str, int | str]:
        """The rules that are set, as stored on the schedule row."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> "Retention":
        """The rules stored on a schedule row (as_dict's output)."""
        return cls(**{f.name: stored.get(f.name) for f in fields(cls)})

    def is_empty(self) -> bool:
        return not self.as_dict()


@dataclass(frozen=True)
class CreateSchedule:
    name: str
    project_id: str
    destination_id: str
    cron: str
    timezone: str = "UTC"
    retention: Retention = Retention()
    collections: tuple[str, ...] | None = None
    enabled: bool = True


@dataclass(frozen=True)
class UpdateSchedule:
    """A partial update: UNSET leaves a field alone; None does too, except retention, where it clears it."""

    name: str | None | Unset = UNSET
    cron: str | None | Unset = UNSET
    timezone: str | None | Unset = UNSET
    retention: Retention | None | Unset = UNSET
    enabled: bool | None | Unset = UNSET

    def given(self) -> list[str]:
        """Names of the fields the caller sent (None included), sorted."""
        return sorted(f.name for f in fields(self) if getattr(self, f.name) is not UNSET)


@dataclass(frozen=True)
class AddWebhook:
    url: str
    events: tuple[str, ...]
    secret: str = field(repr=False)


# --- jobs --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StartBackup:
    """Back up a connected project to a destination; schedule_id links a scheduled run to its schedule."""

    project_id: str
    destination_id: str
    collections: tuple[str, ...] | None = None
    include_auth: bool = False
    schedule_id: str | None = None


@dataclass(frozen=True)
class StartRestore:
    backup_id: str
    target_project_id: str
    target_database: str | None = None
    mode: RestoreMode = "overwrite"
    collections: tuple[str, ...] | None = None
    dry_run: bool = False
    include_auth: bool = False


# --- point-in-time recovery ------------------------------------------------------------------------

@dataclass(frozen=True)
class ConfigurePitr:
    destination_id: str
    retention_days: int = 7
    enabled: bool = True


@dataclass(frozen=True)
class RestoreAt:
    """Restore a project's database as of `at` (RFC 3339, nanoseconds allowed) into a project of the org."""

    at: str
    target_project_id: str | None = None  # None: the same project
    target_database: str | None = None
    scope: str | None = None  # a collection path (with subcollections) or a document path
    mode: RestoreMode = "overwrite"
    dry_run: bool = False
    allow_gaps: bool = False  # restore even when a gap makes the instant uncertain (then it warns)
    keep_references: bool = False  # default: references into the source database follow the data


@dataclass(frozen=True)
class DocumentHistory:
    """One document's versions; with `at` and `until`, also the field-level diff between those two instants."""

    path: str
    at: str | None = None
    until: str | None = None
