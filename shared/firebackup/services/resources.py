"""Projects, storage destinations, schedules and webhooks: the configuration an organization owns."""

from __future__ import annotations

import json
import secrets
import time
from datetime import datetime, timezone
from typing import Any, TypeVar

import sqlalchemy as sa

from firebackup.db.models import (Backup, Base, OAuthStateUse, Project, Restore, Schedule, StorageDestination, Webhook,
                                  new_id, utcnow)
from firebackup.egress import check_service_account_key
from firebackup.errors import AccessDenied, BucketNotFound, EgressRefused, FireBackupError, UsageError, is_transient
from firebackup.services.commands import (AddDestination, AddWebhook, CompleteOAuth, ConnectProject, CreateSchedule,
                                          DeleteWithBackups, NextRuns, PageRequest, Retention, Unset, UpdateSchedule)
from firebackup.services.context import Ctx, page
from firebackup.services.cron import parse_cron
from firebackup.services.errors import Conflict, Invalid, NotFound, ServiceError
from firebackup.services.storage_opener import DestinationPolicy
from firebackup.storage.base import Storage

# The rows an organization owns, each with an `id` and an `org_id`.
Owned = TypeVar("Owned", Project, StorageDestination, Schedule, Webhook, Backup, Restore)


def get_in_org(ctx: Ctx, model: type[Owned], org_id: str, obj_id: str, what: str) -> Owned:
    """Fetch by id within the org only: another org's id is simply not found."""
    row = ctx.session.scalar(sa.select(model).where(model.org_id == org_id, model.id == obj_id))
    if row is None:
        raise NotFound(f"{what} not found")
    return row


def _list(ctx: Ctx, model: type[Owned], org_id: str, q: PageRequest) -> tuple[list[Owned], str | None]:
    return page(ctx.session, sa.select(model).where(model.org_id == org_id), model.id, limit=q.limit, cursor=q.cursor)


def _context(model: type[Base], column: str, row_id: str) -> str:
    """The sealing context of a secret: binds the token to its table, column and row."""
    return f"{model.__tablename__}.{column}:{row_id}"


# --- projects ------------------------------------------------------------------------------------

def list_projects(ctx: Ctx, org_id: str, q: PageRequest) -> tuple[list[Project], str | None]:
    return _list(ctx, Project, org_id, q)


def get_project(ctx: Ctx, org_id: str, project_id: str) -> Project:
    return get_in_org(ctx, Project, org_id, project_id, "project")


def _new_project(ctx: Ctx, org_id: str, name: str, gcp: str, db: str, kind: str, secret: bytes) -> Project:
    dup = ctx.session.scalar(sa.select(Project.id).where(
        Project.org_id == org_id, Project.gcp_project_id == gcp, Project.database_id == db))
    if dup:
        raise Conflict(f"{gcp}/{db} is already connected to this organization")
    pid = new_id("prj")
    row = Project(id=pid, org_id=org_id, name=name, gcp_project_id=gcp, database_id=db, auth_kind=kind,
                  credentials_sealed=ctx.ports.sealer.seal(secret, _context(Project, "credentials_sealed", pid)),
                  credentials_fingerprint=ctx.ports.sealer.fingerprint(secret), created_by=ctx.actor_id)
    ctx.session.add(row)
    ctx.session.flush()
    ctx.audit("project.connect", "project", pid, {"auth": kind, "gcp_project_id": gcp, "database_id": db})
    return row


def connect_project(ctx: Ctx, org_id: str, cmd: ConnectProject) -> Project:
    try:
        check_service_account_key(cmd.service_account_key)
    except EgressRefused as e:
        raise Invalid(str(e)) from None
    key = json.dumps(dict(cmd.service_account_key), sort_keys=True).encode()
    return _new_project(ctx, org_id, cmd.name, cmd.gcp_project_id, cmd.database_id, "service_account", key)


_STATE_TTL = 900


def oauth_start(ctx: Ctx, org_id: str) -> dict[str, str]:
    # The state is sealed (authenticated) so the callback can trust which org and caller it was for;
    # its nonce makes it single-use (see _spend_state).
    payload = json.dumps({"org": org_id, "actor": ctx.actor_id, "exp": int(time.time()) + _STATE_TTL,
                          "nonce": secrets.token_urlsafe(24)})
    state = ctx.ports.sealer.seal(payload, "oauth-state")
    ctx.audit("project.oauth_start", "organization", org_id)
    return {"authorization_url": ctx.ports.oauth.authorization_url(state), "state": state}


def oauth_complete(ctx: Ctx, org_id: str, cmd: CompleteOAuth) -> Project:
    try:
        st = json.loads(ctx.ports.sealer.open(cmd.state, "oauth-state"))
    except FireBackupError:
        raise Invalid("OAuth state is not one we issued; start the connection again") from None
    if st.get("org") != org_id or st.get("actor") != ctx.actor_id or st.get("exp", 0) < time.time():
        raise Invalid("OAuth state is expired or for another organization; start the connection again")
    _spend_state(ctx, st.get("nonce"), int(st["exp"]))
    refresh = ctx.ports.oauth.exchange(cmd.code)
    return _new_project(ctx, org_id, cmd.name, cmd.gcp_project_id, cmd.database_id, "oauth", refresh.encode())


def _spend_state(ctx: Ctx, nonce: object, exp: int) -> None:
    """Record the state's nonce as used; a second completion with the same state is a Conflict.

    The unique row is the decision (two completions at once: one insert waits for the other's commit,
    then fails). Rows of states past their expiry are dropped here: such a state is refused for its age.
    """
    if not isinstance(nonce, str) or not nonce or len(nonce) > 64:
        raise Invalid("OAuth state is from an older version; start the connection again")
    now = utcnow()
    ctx.session.execute(sa.delete(OAuthStateUse).where(OAuthStateUse.expires_at < now))
    try:
        with ctx.session.begin_nested():
            ctx.session.add(OAuthStateUse(nonce=nonce, expires_at=datetime.fromtimestamp(exp, timezone.utc)))
    except sa.exc.IntegrityError:
        raise Conflict("this OAuth state was already used; start the connection again") from None


def delete_project(ctx: Ctx, org_id: str, project_id: str, cmd: DeleteWithBackups = DeleteWithBackups()) -> None:
    row = get_project(ctx, org_id, project_id)
    _settle_dependents(ctx, org_id, "project", project_id, cmd)
    for restore in ctx.session.scalars(sa.select(Restore).where(Restore.target_project_id == project_id)):
        # Restore records into the project go with it (their target is gone); each is on record.
        ctx.session.delete(restore)
        ctx.audit("restore.delete", "restore", restore.id, {"reason": "its target project was deleted"})
    ctx.session.delete(row)
    ctx.audit("project.delete", "project", project_id, {"backups": cmd.backups})


def _settle_dependents(ctx: Ctx, org_id: str, what: str, row_id: str, cmd: DeleteWithBackups,
                       storage: Storage | None = None) -> None:
    """Before a project or destination goes: refuse while its work runs or its backups are undecided, then
    remove its schedules and delete or detach its backups, each audited (no silent cascade).

    storage: the destination being deleted, opened, for its backups' objects (see jobs.delete_backup).
    """
    from firebackup.services.jobs import ACTIVE, delete_backup  # jobs builds on this module

    column = Backup.project_id if what == "project" else Backup.destination_id
    backups = list(ctx.session.scalars(sa.select(Backup).where(Backup.org_id == org_id, column == row_id)))
    running = [b.id for b in backups if b.state in ACTIVE]
    running += list(ctx.session.scalars(sa.select(Restore.id).where(
        Restore.state.in_(ACTIVE), sa.or_(Restore.backup_id.in_([b.id for b in backups]),
                                          Restore.target_project_id == row_id))))
    if running:
        raise Conflict(f"the {what} has {len(running)} backup(s) or restore(s) in progress; cancel them first")
    if backups and cmd.backups is None:
        raise Conflict(f"the {what} has {len(backups)} backup(s); add ?backups=delete to delete them too, "
                       "or ?backups=detach to keep them (read-only)")
    because = f"its {what} was deleted"
    sched_column = Schedule.project_id if what == "project" else Schedule.destination_id
    for sch in ctx.session.scalars(sa.select(Schedule).where(Schedule.org_id == org_id, sched_column == row_id)):
        ctx.session.delete(sch)
        ctx.audit("schedule.delete", "schedule", sch.id, {"reason": because})
    for b in backups:
        if cmd.backups == "delete":
            delete_backup(ctx, org_id, b.id, storage=storage, because=because)
        else:
            setattr(b, column.key, None)
            ctx.audit("backup.detach", "backup", b.id, {"reason": because, what: row_id})
    ctx.session.flush()


def project_credentials(ctx: Ctx, row: Project) -> bytes:
    """The project's unsealed key file or refresh token, for the client that talks to Google only."""
    if row.credentials_sealed is None:
        raise Invalid(f"project {row.id} has no stored credentials; connect it again")
    return ctx.ports.sealer.open(row.credentials_sealed, _context(Project, "credentials_sealed", row.id))


def test_project(ctx: Ctx, org_id: str, project_id: str) -> dict[str, Any]:
    row = get_project(ctx, org_id, project_id)
    problem = ctx.ports.prober.probe(row.gcp_project_id, row.database_id, row.auth_kind, project_credentials(ctx, row))
    ctx.audit("project.test", "project", project_id, result="success" if problem is None else "failure")
    return {"ok": problem is None, "message": problem or "connected"}


# --- storage destinations ----------------------------------------------------------------------

def _options(cmd: AddDestination) -> dict[str, str]:
    return cmd.options()


def _check_destination(ctx: Ctx, cmd: AddDestination) -> None:
    """The same rules the storage opener applies each time the destination is opened, as a 422 now."""
    credentials = cmd.credentials.as_dict() if cmd.credentials is not None else None
    try:
        DestinationPolicy.from_settings(ctx.ports.settings).check(cmd.kind, cmd.url, _options(cmd), credentials)
    except UsageError as e:
        raise Invalid(str(e)) from None


def list_destinations(ctx: Ctx, org_id: str, q: PageRequest) -> tuple[list[StorageDestination], str | None]:
    return _list(ctx, StorageDestination, org_id, q)


def get_destination(ctx: Ctx, org_id: str, dest_id: str) -> StorageDestination:
    return get_in_org(ctx, StorageDestination, org_id, dest_id, "storage destination")


def create_destination(ctx: Ctx, org_id: str, cmd: AddDestination) -> StorageDestination:
    _check_destination(ctx, cmd)
    did = new_id("dst")
    row = StorageDestination(id=did, org_id=org_id, name=cmd.name, kind=cmd.kind, url=cmd.url, options=_options(cmd))
    if cmd.credentials is not None:
        secret = json.dumps(cmd.credentials.as_dict(), sort_keys=True).encode()
        row.credentials_sealed = ctx.ports.sealer.seal(secret, _context(StorageDestination, "credentials_sealed", did))
        row.credentials_fingerprint = ctx.ports.sealer.fingerprint(secret)
    ctx.session.add(row)
    ctx.session.flush()
    ctx.audit("destination.create", "storage_destination", did, {"kind": cmd.kind})
    return row


def delete_destination(ctx: Ctx, org_id: str, dest_id: str, cmd: DeleteWithBackups = DeleteWithBackups()) -> None:
    row = get_destination(ctx, org_id, dest_id)
    has_backups = ctx.session.scalar(sa.select(Backup.id).where(Backup.destination_id == dest_id).limit(1))
    if cmd.backups == "delete" and has_backups:
        # The objects go now, in this request: once the row is gone no worker could open the destination.
        try:
            storage = open_destination(ctx, row, bounded=True)
        except FireBackupError as e:
            raise Conflict(probe_failure(e, "open the destination to delete its backups") + "; nothing was deleted"
                           ) from None
        try:
            _settle_dependents(ctx, org_id, "destination", dest_id, cmd, storage)
        except ServiceError:
            raise
        except FireBackupError as e:
            raise Conflict(probe_failure(e, "delete the backups' objects") + "; no record was deleted, try again"
                           ) from None
        finally:
            storage.close()
    else:
        _settle_dependents(ctx, org_id, "destination", dest_id, cmd)
    ctx.session.delete(row)
    ctx.audit("destination.delete", "storage_destination", dest_id, {"backups": cmd.backups})


def destination_credentials(ctx: Ctx, row: StorageDestination) -> dict[str, Any] | None:
    """The destination's unsealed credentials, or None when it has none (refused outside development)."""
    if not row.credentials_sealed:
        return None
    ctx_name = _context(StorageDestination, "credentials_sealed", row.id)
    creds: dict[str, Any] = json.loads(ctx.ports.sealer.open(row.credentials_sealed, ctx_name))
    return creds


def open_destination(ctx: Ctx, row: StorageDestination, *, bounded: bool = False) -> Storage:
    """A Storage for this destination, with its unsealed credentials handed to the client only.

    bounded: for a call an HTTP request waits on (one try, a few seconds' timeouts).
    """
    storage: Storage = ctx.ports.open_storage(row.kind, row.url, row.options or {}, destination_credentials(ctx, row),
                                              bounded=bounded)
    return storage


def test_destination(ctx: Ctx, org_id: str, dest_id: str) -> dict[str, Any]:
    row = get_destination(ctx, org_id, dest_id)
    key = f".firebackup-probe/{new_id('probe')}"
    try:
        storage = open_destination(ctx, row, bounded=True)
        try:
            storage.put(key, b"firebackup connection test\n")
            storage.delete(key)
        finally:
            storage.close()
        ok, message = True, "wrote and deleted a probe object"
    except FireBackupError as e:
        ok, message = False, probe_failure(e)
    ctx.audit("destination.test", "storage_destination", dest_id, result="success" if ok else "failure")
    return {"ok": ok, "message": message}


def probe_failure(e: FireBackupError, doing: str = "write a probe object") -> str:
    """What went wrong with a destination, in our words only: a remote server's body or error page never
    reaches the caller (it could be an internal service's answer, or the server's own credentials' names)."""
    if isinstance(e, UsageError):  # refused by our own rules before anything was sent
        return f"could not open the destination: {str(e).splitlines()[0][:300]}"
    if isinstance(e, AccessDenied):
        reason = "access denied"
    elif isinstance(e, BucketNotFound):
        reason = "the bucket does not exist"
    elif is_transient(e):
        reason = "no answer in time, or the service is unavailable"
    else:
        reason = "the storage service refused the request"
    return f"could not {doing}: {reason}"


# --- schedules -----------------------------------------------------------------------------------

def _schedule_out(row: Schedule) -> dict[str, Any]:
    cron = parse_cron(row.cron, row.timezone)
    nxt = cron.next_after(utcnow()) if row.enabled else None
    out = {c: getattr(row, c) for c in ("id", "name", "project_id", "destination_id", "cron", "timezone",
                                        "collections", "enabled", "created_at")}
    out["retention"] = row.retention or {}
    out["next_run_at"] = nxt.astimezone(timezone.utc) if nxt else None
    return out


def list_schedules(ctx: Ctx, org_id: str, q: PageRequest) -> tuple[list[dict[str, Any]], str | None]:
    rows, cursor = _list(ctx, Schedule, org_id, q)
    return [_schedule_out(r) for r in rows], cursor


def get_schedule(ctx: Ctx, org_id: str, schedule_id: str) -> dict[str, Any]:
    return _schedule_out(get_in_org(ctx, Schedule, org_id, schedule_id, "schedule"))


def next_runs(ctx: Ctx, org_id: str, schedule_id: str, q: NextRuns) -> dict[str, Any]:
    """The schedule's next runs (disabled or not), each in UTC and as wall time in its time zone."""
    row = get_in_org(ctx, Schedule, org_id, schedule_id, "schedule")
    expr, tz = q.cron or row.cron, q.timezone or row.timezone
    cron = parse_cron(expr, tz)
    runs: list[dict[str, Any]] = []
    at = utcnow()
    while len(runs) < q.count:
        nxt = cron.next_after(at)
        if nxt is None:
            break
        runs.append({"at": nxt, "local": nxt.astimezone(cron.tz).isoformat()})
        at = nxt
    return {"schedule_id": row.id, "cron": cron.expr, "timezone": tz, "enabled": row.enabled, "runs": runs}


def _check_retention(rules: Retention) -> None:
    from firebackup.services.retention import check_rules  # retention builds on this module

    check_rules(rules)


def create_schedule(ctx: Ctx, org_id: str, cmd: CreateSchedule) -> dict[str, Any]:
    parse_cron(cmd.cron, cmd.timezone)
    _check_retention(cmd.retention)
    get_project(ctx, org_id, cmd.project_id)
    get_destination(ctx, org_id, cmd.destination_id)
    row = Schedule(id=new_id("sch"), org_id=org_id, name=cmd.name, project_id=cmd.project_id,
                   destination_id=cmd.destination_id, cron=cmd.cron, timezone=cmd.timezone,
                   retention=cmd.retention.as_dict(),
                   collections=list(cmd.collections) if cmd.collections is not None else None, enabled=cmd.enabled)
    ctx.session.add(row)
    ctx.session.flush()
    ctx.audit("schedule.create", "schedule", row.id, {"cron": cmd.cron, "timezone": cmd.timezone})
    return _schedule_out(row)


def update_schedule(ctx: Ctx, org_id: str, schedule_id: str, cmd: UpdateSchedule) -> dict[str, Any]:
    """Apply the fields given; null leaves a required field as it is, and clears the retention rules."""
    row = get_in_org(ctx, Schedule, org_id, schedule_id, "schedule")
    cron = cmd.cron if isinstance(cmd.cron, str) and cmd.cron else row.cron
    tz = cmd.timezone if isinstance(cmd.timezone, str) and cmd.timezone else row.timezone
    parse_cron(cron, tz)
    if (cron, tz) != (row.cron, row.timezone):
        row.next_run_at = None  # the scheduler's next tick works it out again
    row.cron, row.timezone = cron, tz
    if isinstance(cmd.name, str):
        row.name = cmd.name
    if isinstance(cmd.enabled, bool):
        row.enabled = cmd.enabled
    if not isinstance(cmd.retention, Unset):
        if cmd.retention is not None:
            _check_retention(cmd.retention)
        row.retention = cmd.retention.as_dict() if cmd.retention is not None else {}
    ctx.audit("schedule.update", "schedule", schedule_id, {"fields": cmd.given()})
    return _schedule_out(row)


def delete_schedule(ctx: Ctx, org_id: str, schedule_id: str) -> None:
    ctx.session.delete(get_in_org(ctx, Schedule, org_id, schedule_id, "schedule"))
    ctx.audit("schedule.delete", "schedule", schedule_id)


# --- webhooks --------------------------------------------------------------------------------------

def list_webhooks(ctx: Ctx, org_id: str, q: PageRequest) -> tuple[list[Webhook], str | None]:
    return _list(ctx, Webhook, org_id, q)


def get_webhook(ctx: Ctx, org_id: str, webhook_id: str) -> Webhook:
    return get_in_org(ctx, Webhook, org_id, webhook_id, "webhook")


def create_webhook(ctx: Ctx, org_id: str, cmd: AddWebhook) -> Webhook:
    if not cmd.url.startswith("https://") and not ctx.ports.settings.allow_http_webhooks:
        raise Invalid("webhook URLs must use https (the payload and its signature would travel in clear)")
    from firebackup.services.webhooks import egress_guard

    try:  # checked again at every delivery, on the address actually connected to (DNS rebinding)
        # A name that does not resolve yet is taken: every delivery checks the address it connects to.
        egress_guard(ctx.ports.settings).check_url(cmd.url, what="webhook URL", must_resolve=False)
    except EgressRefused as e:
        raise Invalid(str(e)) from None
    wid = new_id("whk")
    row = Webhook(id=wid, org_id=org_id, url=cmd.url, events=list(dict.fromkeys(cmd.events)),
                  secret_sealed=ctx.ports.sealer.seal(cmd.secret, _context(Webhook, "secret_sealed", wid)),
                  secret_fingerprint=ctx.ports.sealer.fingerprint(cmd.secret))
    ctx.session.add(row)
    ctx.session.flush()
    ctx.audit("webhook.create", "webhook", wid, {"events": row.events})
    return row


def delete_webhook(ctx: Ctx, org_id: str, webhook_id: str) -> None:
    ctx.session.delete(get_webhook(ctx, org_id, webhook_id))
    ctx.audit("webhook.delete", "webhook", webhook_id)


def webhook_secret(ctx: Ctx, row: Webhook) -> bytes:
    """The webhook's unsealed signing secret."""
    return ctx.ports.sealer.open(row.secret_sealed, _context(Webhook, "secret_sealed", row.id))
