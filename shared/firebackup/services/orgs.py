"""Organizations, members, API tokens and the audit log."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from firebackup.db.models import ApiToken, AuditLog, Organization, User, UserOrganization, utcnow
from firebackup.services.commands import (AuditFilter, ChangeRole, CreateOrg, CreateToken, InviteMember, PageRequest,
                                          RenameOrg)
from firebackup.services.context import Ctx, Principal, Role, page
from firebackup.services.errors import Conflict, Invalid, NotFound, PermissionDenied
from firebackup.services.identity import hash_token, new_api_token, require_role, require_user, role_in


def _caller(ctx: Ctx) -> Principal:
    if ctx.principal is None:
        raise PermissionDenied("this needs a signed-in user or an API token")
    return ctx.principal


def me(ctx: Ctx) -> dict[str, Any]:
    p = _caller(ctx)
    if p.kind == "token":
        return {"kind": "token", "id": p.token_id, "org_id": p.token_org_id,
                "role": p.token_role.name if p.token_role else None}
    user = _user(ctx, require_user(ctx))
    return {"kind": "user", "id": user.id, "email": user.email}


def _user(ctx: Ctx, user_id: str) -> User:
    user = ctx.session.get(User, user_id)
    if user is None:
        raise NotFound("user not found")
    return user


def _org(ctx: Ctx, org_id: str) -> Organization:
    org = ctx.session.get(Organization, org_id)
    if org is None:
        raise NotFound("organization not found")
    return org


def list_orgs(ctx: Ctx, q: PageRequest) -> tuple[list[dict[str, Any]], str | None]:
    p = _caller(ctx)
    stmt = sa.select(Organization)
    if p.kind == "token":
        stmt = stmt.where(Organization.id == p.token_org_id)
    else:
        stmt = stmt.join(UserOrganization, UserOrganization.org_id == Organization.id).where(
            UserOrganization.user_id == p.user_id)
    rows, cursor = page(ctx.session, stmt, Organization.id, limit=q.limit, cursor=q.cursor)
    return [_org_out(ctx, o) for o in rows], cursor


def _org_out(ctx: Ctx, org: Organization) -> dict[str, Any]:
    role = role_in(ctx, org.id)
    return {"id": org.id, "name": org.name, "created_at": org.created_at, "role": role.name if role else None}


def create_org(ctx: Ctx, cmd: CreateOrg) -> dict[str, Any]:
    user_id = require_user(ctx)
    org = Organization(name=cmd.name)
    ctx.session.add(org)
    ctx.session.flush()
    ctx.session.add(UserOrganization(user_id=user_id, org_id=org.id, role="owner"))
    ctx.org_id = org.id
    ctx.audit("org.create", "organization", org.id)
    ctx.session.flush()
    return _org_out(ctx, org)


def get_org(ctx: Ctx, org_id: str) -> dict[str, Any]:
    return _org_out(ctx, _org(ctx, org_id))


def rename_org(ctx: Ctx, org_id: str, cmd: RenameOrg) -> dict[str, Any]:
    org = _org(ctx, org_id)
    org.name = cmd.name
    ctx.audit("org.update", "organization", org_id)
    return _org_out(ctx, org)


def delete_org(ctx: Ctx, org_id: str) -> None:
    # The audit row outlives the org (org_id NULL) so deletions stay on record.
    ctx.session.execute(sa.delete(Organization).where(Organization.id == org_id))
    ctx.audit("org.delete", "organization", org_id, org_id=None)


# --- members ------------------------------------------------------------------------------------

def _member_out(m: UserOrganization, u: User) -> dict[str, Any]:
    return {"user_id": u.id, "email": u.email, "role": m.role, "created_at": m.created_at}


def list_members(ctx: Ctx, org_id: str, q: PageRequest) -> tuple[list[dict[str, Any]], str | None]:
    stmt = sa.select(UserOrganization).where(UserOrganization.org_id == org_id)
    rows, cursor = page(ctx.session, stmt, UserOrganization.user_id, limit=q.limit, cursor=q.cursor)
    return [_member_out(m, _user(ctx, m.user_id)) for m in rows], cursor


def invite_member(ctx: Ctx, org_id: str, cmd: InviteMember) -> dict[str, Any]:
    if cmd.role is Role.owner:
        require_role(ctx, Role.owner, "granting owner")
    email = cmd.email.lower()
    if len(email) > 320:  # a few characters grow when lower-cased
        raise Invalid("email address is too long")
    user = ctx.session.scalar(sa.select(User).where(User.email == email))
    if user is None:
        user = User(email=email)  # linked to a Firebase uid at first sign-in with this email
        ctx.session.add(user)
        ctx.session.flush()
    if ctx.session.get(UserOrganization, (user.id, org_id)) is not None:
        raise Conflict("already a member of this organization; change their role instead")
    m = UserOrganization(user_id=user.id, org_id=org_id, role=cmd.role.name)
    ctx.session.add(m)
    ctx.session.flush()
    ctx.audit("member.invite", "user", user.id, {"role": cmd.role.name})
    return _member_out(m, user)


def _membership(ctx: Ctx, org_id: str, user_id: str) -> UserOrganization:
    m = ctx.session.get(UserOrganization, (user_id, org_id))
    if m is None:
        raise NotFound("member not found")
    return m


def _owners(ctx: Ctx, org_id: str) -> int:
    """How many owners the org has, counted under the org's lock (see _lock_owners)."""
    _lock_owners(ctx, org_id)
    return ctx.session.scalar(sa.select(sa.func.count()).select_from(UserOrganization).where(
        UserOrganization.org_id == org_id, UserOrganization.role == "owner")) or 0


def _lock_owners(ctx: Ctx, org_id: str) -> None:
    """Serialize every change that could remove an owner of this org until the transaction ends.

    Counting and then writing is a race: two owners demoting each other at once both count two.
    A no-op UPDATE of the organization row takes its row lock on PostgreSQL and the database's
    write lock on SQLite (where SELECT ... FOR UPDATE does nothing), so the second transaction
    counts only after the first has committed.
    """
    ctx.session.execute(sa.update(Organization).where(Organization.id == org_id).values(name=Organization.name))


def change_role(ctx: Ctx, org_id: str, user_id: str, cmd: ChangeRole) -> dict[str, Any]:
    m = _membership(ctx, org_id, user_id)
    new = cmd.role.name
    if "owner" in (m.role, new):
        require_role(ctx, Role.owner, "granting or taking away owner")
    if m.role == "owner" and new != "owner" and _owners(ctx, org_id) <= 1:
        raise Conflict("the last owner cannot be demoted; make someone else owner first")
    before = m.role
    m.role = new
    ctx.audit("member.role_change", "user", user_id, {"from": before, "to": new})
    return _member_out(m, _user(ctx, user_id))


def remove_member(ctx: Ctx, org_id: str, user_id: str) -> None:
    m = _membership(ctx, org_id, user_id)
    if m.role == "owner":
        require_role(ctx, Role.owner, "removing an owner")
        if _owners(ctx, org_id) <= 1:
            raise Conflict("the last owner cannot be removed; make someone else owner first")
    ctx.session.delete(m)
    ctx.audit("member.remove", "user", user_id)
    _revoke_members_tokens(ctx, org_id, user_id, "its creator was removed from the organization")


def leave(ctx: Ctx, org_id: str) -> None:
    user_id = require_user(ctx)
    m = _membership(ctx, org_id, user_id)
    if m.role == "owner" and _owners(ctx, org_id) <= 1:
        raise Conflict("the last owner cannot leave; make someone else owner or delete the organization")
    ctx.session.delete(m)
    ctx.audit("member.leave", "user", user_id)
    _revoke_members_tokens(ctx, org_id, user_id, "its creator left the organization")


# --- API tokens ---------------------------------------------------------------------------------

def _token_out(row: ApiToken, creator_email: str | None) -> dict[str, Any]:
    # Every column but the hash: the clear token is the caller's to keep, the hash is ours.
    out: dict[str, Any] = {c.key: getattr(row, c.key) for c in ApiToken.__table__.columns if c.key != "token_hash"}
    out["created_by_email"] = creator_email
    return out


def list_tokens(ctx: Ctx, org_id: str, q: PageRequest) -> tuple[list[dict[str, Any]], str | None]:
    rows, cursor = page(ctx.session, sa.select(ApiToken).where(ApiToken.org_id == org_id), ApiToken.id,
                        limit=q.limit, cursor=q.cursor)
    creators = {r.created_by for r in rows if r.created_by}
    emails = dict(ctx.session.execute(sa.select(User.id, User.email).where(User.id.in_(creators))).tuples().all())
    return [_token_out(r, emails.get(r.created_by) if r.created_by else None) for r in rows], cursor


def create_token(ctx: Ctx, org_id: str, cmd: CreateToken) -> dict[str, Any]:
    """A new API token for the org, no stronger than the caller; the token itself is in the result, once.

    It acts for the member who made it (a token's own creator when a token makes it), capped at that
    member's role on every request. A token may make tokens only when a signed-in user allowed it to;
    its children then die with it: each names its parent, authentication checks every parent, and
    expires no later than it.
    """
    p = _caller(ctx)
    if ctx.role is None or cmd.role > ctx.role:
        mine = ctx.role.name if ctx.role else "none"
        raise PermissionDenied(f"a token cannot have more than your own role ({mine})")
    days = ctx.ports.settings.api_token_days if cmd.expires_in_days is None else cmd.expires_in_days
    if not 1 <= days <= ctx.ports.settings.api_token_max_days:
        raise Invalid(f"expires_in_days must be between 1 and {ctx.ports.settings.api_token_max_days}")
    expires_at = utcnow() + timedelta(days=days)
    parent_id: str | None = None
    if p.kind == "token":
        if not p.token_can_create_tokens:
            raise PermissionDenied("this API token cannot create tokens; a signed-in member can, "
                                   "or can make a token with can_create_tokens")
        if cmd.can_create_tokens:
            raise PermissionDenied("only a signed-in member can make a token that creates tokens")
        parent_id, creator = p.token_id, p.token_creator_id
        if p.token_expires_at is not None:
            expires_at = min(expires_at, p.token_expires_at)
    else:
        creator = require_user(ctx)
    token = new_api_token()
    row = ApiToken(org_id=org_id, name=cmd.name, role=cmd.role.name, token_hash=hash_token(token),
                   prefix=token[:10], created_by=creator, parent_id=parent_id, expires_at=expires_at,
                   can_create_tokens=cmd.can_create_tokens)
    ctx.session.add(row)
    ctx.session.flush()
    ctx.audit("token.create", "api_token", row.id, {"role": cmd.role.name, "expires_at": expires_at.isoformat(),
                                                    "can_create_tokens": cmd.can_create_tokens,
                                                    **({"parent_id": parent_id} if parent_id else {})})
    out = _token_out(row, _user(ctx, creator).email if creator else None)
    out["token"] = token
    return out


def revoke_token(ctx: Ctx, org_id: str, token_id: str) -> None:
    row = ctx.session.scalar(sa.select(ApiToken).where(ApiToken.org_id == org_id, ApiToken.id == token_id))
    if row is None:
        raise NotFound("API token not found")
    _revoke(ctx, [row], "revoked")


def _revoke(ctx: Ctx, rows: list[ApiToken], reason: str) -> None:
    """Revoke these tokens and every token they minted (and so on down), one audit row each."""
    now = utcnow()
    seen: set[str] = set()
    while rows:
        for row in rows:
            seen.add(row.id)
            if row.revoked_at is None:
                row.revoked_at = now
                ctx.audit("token.revoke", "api_token", row.id, {"reason": reason})
        reason = "its parent token was revoked"
        rows = [r for r in ctx.session.scalars(sa.select(ApiToken).where(ApiToken.parent_id.in_([r.id for r in rows])))
                if r.id not in seen]


def _revoke_members_tokens(ctx: Ctx, org_id: str, user_id: str, reason: str) -> None:
    """A member who leaves takes their tokens with them (authentication refuses them anyway; this makes it visible)."""
    _revoke(ctx, list(ctx.session.scalars(sa.select(ApiToken).where(
        ApiToken.org_id == org_id, ApiToken.created_by == user_id, ApiToken.revoked_at.is_(None)))), reason)


# --- audit log ----------------------------------------------------------------------------------

def list_audit(ctx: Ctx, org_id: str, q: AuditFilter) -> tuple[list[AuditLog], str | None]:
    stmt = sa.select(AuditLog).where(AuditLog.org_id == org_id)
    if q.actor:
        stmt = stmt.where(AuditLog.actor_id == q.actor)
    if q.action:
        # "backup." matches every backup action; anything else matches exactly.
        stmt = stmt.where(AuditLog.action.startswith(q.action, autoescape=True) if q.action.endswith(".")
                          else AuditLog.action == q.action)
    if q.resource:
        stmt = stmt.where(sa.or_(AuditLog.resource_id == q.resource, AuditLog.resource_type == q.resource))
    if q.since:
        stmt = stmt.where(AuditLog.created_at >= _aware(q.since))
    if q.until:
        stmt = stmt.where(AuditLog.created_at < _aware(q.until))
    return page(ctx.session, stmt, AuditLog.id, limit=q.limit, cursor=q.cursor, descending=True)


def _aware(t: datetime) -> datetime:
    """The filter instant in UTC (naive means UTC); one past what datetime holds in UTC clamps to that limit.

    0001-01-01T00:00+01:00 is a valid instant whose UTC form is before year 1: as a lower bound it
    means "from the beginning", and 9999-12-31T23:59-01:00 as an upper bound "until the end".
    """
    aware = t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    try:
        return aware.astimezone(timezone.utc)
    except OverflowError:
        edge = datetime.min if aware.year == datetime.min.year else datetime.max
        return edge.replace(tzinfo=timezone.utc)
