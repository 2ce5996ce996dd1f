"""Request and response models: validation and the OpenAPI document come from these same classes.

A request model validates the shape of what arrives and turns it into the service's plain command
(`to_command`); the services never see these classes.
"""

from __future__ import annotations

from abc import abstractmethod
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from firebackup.services import commands as c
from firebackup.services.context import Role

# Patterns stay in the subset where JSON Schema (ECMA) and pydantic (Rust regex) agree: no \s, \S, \w.
# What no name may contain, anywhere: control characters, and the invisible ones that make a name
# read as another (bidi embeddings, overrides and isolates, zero-width characters, the BOM).
_NEVER_IN_A_NAME = (r"\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069"
                    r"\ufeff")
# The one rule for every name (organizations, projects, destinations, schedules, tokens): none of the
# above, and at least one character that is not a space.
NAME_PATTERN = rf"^[^{_NEVER_IN_A_NAME}]*[^{_NEVER_IN_A_NAME}\u0020\u00a0][^{_NEVER_IN_A_NAME}]*$"
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NAME_PATTERN)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=40)]
RoleName = Literal["owner", "admin", "member", "viewer"]
CollectionId = Annotated[str, StringConstraints(min_length=1, max_length=1500, pattern=r"^[^/]+$")]
GcpProjectId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")]
DatabaseId = Annotated[str, StringConstraints(pattern=r"^(\(default\)|[a-z][a-z0-9-]{2,61}[a-z0-9])$")]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=8192)]


class In(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_max_length=8192)


class ApiRequest(In):
    """A whole request body or query string, handed to its service as a command."""

    @abstractmethod
    def to_command(self) -> object:
        """The service command this request asks for."""


T = TypeVar("T")


def _if_sent(model: BaseModel, name: str, value: T) -> T | c.Unset:
    """`value` if the client sent the field (null included), else UNSET: a PATCH leaves unsent fields alone."""
    return value if name in model.model_fields_set else c.UNSET


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: Any = None


class Error(BaseModel):
    error: ErrorInfo


class PageQuery(ApiRequest):
    limit: int = Field(50, ge=1, le=200)
    cursor: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None

    def to_command(self) -> c.PageRequest:
        return c.PageRequest(limit=self.limit, cursor=self.cursor)


class AuditQuery(PageQuery):
    actor: Id | None = None
    action: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    resource: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    since: datetime | None = None
    until: datetime | None = None

    def to_command(self) -> c.AuditFilter:
        return c.AuditFilter(limit=self.limit, cursor=self.cursor, actor=self.actor, action=self.action,
                             resource=self.resource, since=self.since, until=self.until)


class DeleteWithBackupsQuery(ApiRequest):
    """DELETE of a project or destination: what becomes of its backups (none given: refused while any exist)."""

    backups: Literal["delete", "detach"] | None = Field(None, description=(
        "delete: delete the backups too, their stored objects and records; detach: keep both, the records "
        "stay listed read-only and say what is gone"))

    def to_command(self) -> c.DeleteWithBackups:
        return c.DeleteWithBackups(backups=self.backups)


# --- organizations, members, me -------------------------------------------------------------

class OrgIn(ApiRequest):
    name: Name

    def to_command(self) -> c.CreateOrg:
        return c.CreateOrg(name=self.name)


class OrgPatch(ApiRequest):
    name: Name

    def to_command(self) -> c.RenameOrg:
        return c.RenameOrg(name=self.name)


class OrgOut(Out):
    id: str
    name: str
    created_at: datetime
    role: RoleName | None = None


KmsKeyName = Annotated[str, StringConstraints(
    max_length=512, pattern=r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$")]


class EncryptionIn(ApiRequest):
    kms_key_name: KmsKeyName | None

    def to_command(self) -> c.SetOrgEncryption:
        return c.SetOrgEncryption(kms_key_name=self.kms_key_name)


class EncryptionOut(Out):
    kms_key_name: str | None
    rotating_from: str | None


class RotationFailure(Out):
    """An item a rotation could not move: a backup, a project's PITR data key, or a PITR segment (and where)."""

    backup_id: str | None = None
    project_id: str | None = None
    segment_id: str | None = None
    destination_id: str | None = None
    error: str


class RotationOut(Out):
    """A key rotation job: pending, running, completed, or failed (`failed` lists the items it could not move)."""

    id: str
    state: str
    kms_key_name: str
    rewrapped: int
    already_current: int
    failed: list[RotationFailure]
    error: str | None
    created_at: datetime
    finished_at: datetime | None


class MeOut(Out):
    kind: Literal["user", "token"]
    id: str
    email: str | None = None
    org_id: str | None = None
    role: RoleName | None = None


class MemberIn(ApiRequest):
    email: Annotated[str, StringConstraints(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
    role: RoleName

    def to_command(self) -> c.InviteMember:
        return c.InviteMember(email=self.email, role=Role[self.role])


class MemberPatch(ApiRequest):
    role: RoleName

    def to_command(self) -> c.ChangeRole:
        return c.ChangeRole(role=Role[self.role])


class MemberOut(Out):
    user_id: str
    email: str | None
    role: RoleName
    created_at: datetime


# --- projects ---------------------------------------------------------------------------------

class ServiceAccountKey(In):
    """A Google service-account key file, as downloaded (sealed before storage, never returned)."""

    model_config = ConfigDict(extra="allow", str_max_length=8192)
    type: Literal["service_account"]
    project_id: Annotated[str, StringConstraints(max_length=64)] | None = None
    private_key_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    private_key: Secret
    client_email: Annotated[str, StringConstraints(min_length=3, max_length=320)]


class ProjectIn(ApiRequest):
    name: Name
    gcp_project_id: GcpProjectId
    database_id: DatabaseId = "(default)"
    service_account_key: ServiceAccountKey

    def to_command(self) -> c.ConnectProject:
        return c.ConnectProject(name=self.name, gcp_project_id=self.gcp_project_id, database_id=self.database_id,
                                service_account_key=self.service_account_key.model_dump(exclude_none=True))


class OAuthStartOut(Out):
    authorization_url: str
    state: str


class OAuthCompleteIn(ApiRequest):
    state: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    code: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    name: Name
    gcp_project_id: GcpProjectId
    database_id: DatabaseId = "(default)"

    def to_command(self) -> c.CompleteOAuth:
        return c.CompleteOAuth(state=self.state, code=self.code, name=self.name, gcp_project_id=self.gcp_project_id,
                               database_id=self.database_id)


class ProjectOut(Out):
    id: str
    name: str
    gcp_project_id: str
    database_id: str
    auth_kind: Literal["service_account", "oauth"]
    credentials_fingerprint: str | None
    created_at: datetime


class TestResultOut(Out):
    ok: bool
    message: str


# --- storage destinations ------------------------------------------------------------------------

DestinationKind = c.DestinationKind


class StorageCredentials(In):
    access_key_id: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    secret_access_key: Secret | None = None
    service_account_key: ServiceAccountKey | None = None
    sse_customer_key: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None

    def to_value(self) -> c.StorageCredentials:
        key = self.service_account_key
        return c.StorageCredentials(access_key_id=self.access_key_id, secret_access_key=self.secret_access_key,
                                    service_account_key=key.model_dump(exclude_none=True) if key else None,
                                    sse_customer_key=self.sse_customer_key)


class StorageEncryption(In):
    """Provider-side encryption of every object written: sse-s3, sse-kms (kms_key optional), sse-c (the key in
    credentials.sse_customer_key), cmek (GCS, kms_key required)."""

    mode: c.StorageEncryptionMode
    kms_key: Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=r"^[A-Za-z0-9:/_+=.,@-]+$")] | None = None

    def to_value(self) -> c.StorageEncryption:
        return c.StorageEncryption(mode=self.mode, kms_key=self.kms_key)


class DestinationIn(ApiRequest):
    name: Name
    kind: DestinationKind
    url: Annotated[str, StringConstraints(min_length=6, max_length=1024)]
    region: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9-]+$")] | None = None
    endpoint_url: Annotated[str, StringConstraints(min_length=8, max_length=512, pattern=r"^https?://")] | None = None
    credentials: StorageCredentials | None = None
    encryption: StorageEncryption | None = None

    def to_command(self) -> c.AddDestination:
        return c.AddDestination(name=self.name, kind=self.kind, url=self.url, region=self.region,
                                endpoint_url=self.endpoint_url,
                                credentials=self.credentials.to_value() if self.credentials else None,
                                encryption=self.encryption.to_value() if self.encryption else None)


class DestinationOut(Out):
    id: str
    name: str
    kind: DestinationKind
    url: str
    options: dict[str, str]
    credentials_fingerprint: str | None
    created_at: datetime


# --- backups and restores --------------------------------------------------------------------------

# deleting: its objects are being removed by a worker; the row goes when they are gone.
BackupState = Literal["pending", "running", "completed", "failed", "cancelled", "deleting"]


def _tuple(items: list[str] | None) -> tuple[str, ...] | None:
    return tuple(items) if items is not None else None


class BackupIn(ApiRequest):
    project_id: Id
    destination_id: Id
    collections: Annotated[list[CollectionId], Field(max_length=100)] | None = None
    include_auth: bool = False

    def to_command(self) -> c.StartBackup:
        return c.StartBackup(project_id=self.project_id, destination_id=self.destination_id,
                             collections=_tuple(self.collections), include_auth=self.include_auth)


class BackupOut(Out):
    id: str
    project_id: str | None = Field(description="null once the project was deleted and the backup kept (detached)")
    destination_id: str | None = Field(description="null once the destination was deleted and the backup kept")
    detached: list[Literal["project", "destination"]] = Field(description=(
        "what was deleted while this backup was kept; without its destination it is read-only"))
    schedule_id: str | None
    state: BackupState
    collections: list[str] | None
    include_auth: bool
    read_time: datetime | None
    documents: int
    chunks_total: int
    chunks_done: int
    progress: float = Field(ge=0, le=1)
    bytes_raw: int
    bytes_stored: int
    manifest_key: str | None
    verify_state: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class StoredSummaryOut(Out):
    """The manifest's public header, read from the destination (no key needed)."""

    backup_id: str
    created_at: str | None = None
    read_time: str | None = None
    documents: int | None = None
    bytes_stored: int | None = None
    encrypted: bool | None = None
    kek_id: str | None = None
    dek_id: str | None = None
    format_version: int | None = None


class ManifestSummaryOut(Out):
    backup_id: str
    repo_backup_id: str | None
    manifest_key: str | None
    read_time: datetime | None
    documents: int
    chunks: int
    bytes_raw: int
    bytes_stored: int
    stored: StoredSummaryOut | None = Field(None, description="From the manifest in storage; null if unreadable")
    stored_error: str | None = None


class RestoreIn(ApiRequest):
    backup_id: Id
    target_project_id: Id
    target_database: DatabaseId | None = None
    mode: c.RestoreMode = "overwrite"
    collections: Annotated[list[CollectionId], Field(max_length=100)] | None = None
    dry_run: bool = False
    include_auth: bool = False

    def to_command(self) -> c.StartRestore:
        return c.StartRestore(backup_id=self.backup_id, target_project_id=self.target_project_id,
                              target_database=self.target_database, mode=self.mode,
                              collections=_tuple(self.collections), dry_run=self.dry_run,
                              include_auth=self.include_auth)


class RestoreOut(Out):
    id: str
    backup_id: str
    target_project_id: str
    target_database: str | None
    mode: c.RestoreMode
    collections: list[str] | None
    dry_run: bool
    include_auth: bool
    state: BackupState
    chunks_total: int
    chunks_done: int
    progress: float = Field(ge=0, le=1)
    documents_written: int
    documents_skipped: int = 0
    documents_failed: int = 0
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # A point-in-time restore's (POST .../pitr/restore); backup_id is its base backup.
    at: str | None = Field(None, description="the instant restored to (RFC 3339); null for a restore of a backup")
    scope: str | None = None
    allow_gaps: bool = False
    keep_references: bool = False
    warnings: list[str] | None = None
    changes_applied: int = 0
    documents_deleted: int = 0


# --- schedules, webhooks, tokens, audit --------------------------------------------------------

# strict: pydantic would take JSON true for 1 (a schema-violating body accepted, found by the fuzzer).
Count = Annotated[int, Field(ge=1, le=10000, strict=True)]


class RetentionRules(BaseModel):
    """restic `forget` rules; a backup any rule keeps is kept (see services/retention.py)."""

    keep_last: Count | None = None
    keep_hourly: Count | None = None
    keep_daily: Count | None = None
    keep_weekly: Count | None = None
    keep_monthly: Count | None = None
    keep_yearly: Count | None = None
    keep_within: Annotated[str, StringConstraints(pattern=r"^([0-9]{1,5}[ymdh]){1,4}$")] | None = Field(
        default=None, description='a duration counted back from the newest backup: "30d", "12h", "1y6m"')


class Retention(RetentionRules, In):
    def to_value(self) -> c.Retention:
        return c.Retention(**self.model_dump())


class ScheduleIn(ApiRequest):
    name: Name
    project_id: Id
    destination_id: Id
    cron: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "UTC"
    retention: Retention = Retention()
    collections: Annotated[list[CollectionId], Field(max_length=100)] | None = None
    enabled: bool = True

    def to_command(self) -> c.CreateSchedule:
        return c.CreateSchedule(name=self.name, project_id=self.project_id, destination_id=self.destination_id,
                                cron=self.cron, timezone=self.timezone, retention=self.retention.to_value(),
                                collections=_tuple(self.collections), enabled=self.enabled)


class SchedulePatch(ApiRequest):
    name: Name | None = None
    cron: Annotated[str, StringConstraints(min_length=1, max_length=120)] | None = None
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    retention: Retention | None = None
    enabled: bool | None = None

    def to_command(self) -> c.UpdateSchedule:
        retention = self.retention.to_value() if self.retention is not None else None
        return c.UpdateSchedule(name=_if_sent(self, "name", self.name), cron=_if_sent(self, "cron", self.cron),
                                timezone=_if_sent(self, "timezone", self.timezone),
                                retention=_if_sent(self, "retention", retention),
                                enabled=_if_sent(self, "enabled", self.enabled))


class RetentionOut(RetentionRules, Out):
    pass


class KeptBackupOut(Out):
    backup_id: str
    time: datetime
    reasons: list[str]


class RemovedBackupOut(Out):
    backup_id: str
    time: datetime


class RetentionPreviewOut(Out):
    """A dry run of the schedule's retention: what would be removed now, and why each other backup stays."""

    schedule_id: str
    timezone: str
    rules: RetentionOut
    keep: list[KeptBackupOut]
    remove: list[RemovedBackupOut]


class ScheduleOut(Out):
    id: str
    name: str
    project_id: str
    destination_id: str
    cron: str
    timezone: str
    retention: RetentionOut
    collections: list[str] | None
    enabled: bool
    next_run_at: datetime | None
    created_at: datetime


class NextRunsQuery(ApiRequest):
    cron: Annotated[str, StringConstraints(min_length=1, max_length=120)] | None = Field(
        None, description="preview this expression instead of the schedule's own")
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        None, description="preview in this IANA time zone instead of the schedule's own")
    count: int = Field(5, ge=1, le=50)

    def to_command(self) -> c.NextRuns:
        return c.NextRuns(cron=self.cron, timezone=self.timezone, count=self.count)


class NextRunOut(Out):
    at: datetime = Field(description="the run's instant, UTC")
    local: str = Field(description="the same instant as wall time in the time zone, ISO 8601 with its offset")


class NextRunsOut(Out):
    schedule_id: str
    cron: str
    timezone: str
    enabled: bool = Field(description="a disabled schedule would run at these times once enabled")
    runs: list[NextRunOut]


WebhookEvent = Literal["backup.completed", "backup.failed", "restore.completed", "restore.failed"]


class WebhookIn(ApiRequest):
    url: Annotated[str, StringConstraints(min_length=8, max_length=2048, pattern=r"^https?://[!-~]+$")]
    events: Annotated[list[WebhookEvent], Field(min_length=1, max_length=4)]
    secret: Annotated[str, StringConstraints(min_length=16, max_length=256)]

    def to_command(self) -> c.AddWebhook:
        return c.AddWebhook(url=self.url, events=tuple(self.events), secret=self.secret)


class WebhookOut(Out):
    id: str
    url: str
    events: list[str]
    secret_fingerprint: str
    enabled: bool
    created_at: datetime


class WebhookDeliveryOut(Out):
    """One delivery in a webhook's log: its state and its last attempt (never the secret or the whole answer)."""

    id: str
    webhook_id: str
    event: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    status_code: int | None = Field(description="the receiver's HTTP status at the last attempt")
    error: str | None = Field(description="why the last attempt failed, in one line")
    response_excerpt: str | None = Field(description="the start of the receiver's last answer, sanitized")
    duration_ms: int | None = Field(description="how long the last attempt took")
    created_at: datetime
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None = Field(description="when a pending delivery is tried again")
    delivered_at: datetime | None


class TokenIn(ApiRequest):
    name: Name
    role: RoleName
    expires_in_days: int | None = Field(None, ge=1, le=36500, strict=True, description=(
        "how long the token lives; default and maximum are set by the platform (90 and 365 days unless changed)"))
    can_create_tokens: bool = Field(False, description=(
        "whether the token may create tokens itself (only a signed-in member can grant it); "
        "its tokens are revoked with it"))

    def to_command(self) -> c.CreateToken:
        return c.CreateToken(name=self.name, role=Role[self.role], expires_in_days=self.expires_in_days,
                             can_create_tokens=self.can_create_tokens)


class TokenOut(Out):
    id: str
    name: str
    role: RoleName = Field(description="the most it can do; it never does more than its creator's current role")
    prefix: str
    created_by: str | None = Field(description="the member the token acts for (user id)")
    created_by_email: str | None
    parent_id: str | None = Field(description="the token that created this one; revoking it revokes this one")
    can_create_tokens: bool
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreatedOut(TokenOut):
    token: str = Field(description="The token itself; shown once, store it now.")


class AuditOut(Out):
    id: str
    actor_type: str
    actor_id: str | None
    action: str
    resource_type: str | None
    resource_id: str | None
    ip: str | None
    user_agent: str | None
    result: str
    details: dict[str, Any] | None
    created_at: datetime


def page_of(item: type[BaseModel]) -> type[BaseModel]:
    """The list envelope for `item`: {items, next_cursor}."""
    from pydantic import create_model

    return create_model(f"{item.__name__.removesuffix('Out')}Page", __base__=Out,
                        items=(list[item], ...),  # type: ignore[valid-type]  # a model chosen at run time
                        next_cursor=(str | None, None))




# --- point-in-time recovery --------------------------------------------------------------------------

class PitrIn(ApiRequest):
    destination_id: Id
    retention_days: int = Field(default=7, ge=1, strict=True)
    enabled: bool = True

    def to_command(self) -> c.ConfigurePitr:
        return c.ConfigurePitr(destination_id=self.destination_id, retention_days=self.retention_days,
                               enabled=self.enabled)


class PitrGapOut(Out):
    start: str
    end: str
    reason: str


class PitrOut(Out):
    project_id: str
    enabled: bool
    retention_days: int
    destination_id: str | None
    kek_id: str | None
    earliest_restorable: str | None
    latest_captured: str | None
    gaps: list[PitrGapOut]


class PitrRestoreIn(ApiRequest):
    at: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    target_project_id: Id | None = None
    target_database: DatabaseId | None = None
    scope: Annotated[str, StringConstraints(min_length=1, max_length=6000)] | None = None
    mode: c.RestoreMode = "overwrite"
    dry_run: bool = False
    allow_gaps: bool = False
    keep_references: bool = False

    def to_command(self) -> c.RestoreAt:
        return c.RestoreAt(at=self.at, target_project_id=self.target_project_id, target_database=self.target_database,
                           scope=self.scope, mode=self.mode, dry_run=self.dry_run, allow_gaps=self.allow_gaps,
                           keep_references=self.keep_references)


class PitrHistoryQuery(ApiRequest):
    path: Annotated[str, StringConstraints(min_length=1, max_length=6000)]
    at: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        None, description="with until: diff the document's fields between these two instants (RFC 3339)")
    until: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None

    def to_command(self) -> c.DocumentHistory:
        return c.DocumentHistory(path=self.path, at=self.at, until=self.until)


class PitrVersionOut(Out):
    at: str
    source: str
    operation: str
    fields: dict[str, Any] | None


class PitrFieldChangeOut(Out):
    field: str
    change: Literal["added", "removed", "changed"]
    before: Any = None
    after: Any = None


class PitrHistoryOut(Out):
    path: str
    versions: list[PitrVersionOut]
    diff: list[PitrFieldChangeOut] | None = None
