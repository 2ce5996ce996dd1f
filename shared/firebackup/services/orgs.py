"""Organizations, members, API tokens and the audit log."""

from __future__ import annotations

from datetime import datetime, timezone
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


def leave(ctx: Ctx, org_id: str) -> None:
    user_id = require_user(ctx)
    m = _membership(ctx, org_id, user_id)
    if m.role == "owner" and _owners(ctx, org_id) <= 1:
        raise Conflict("the last owner cannot leave; make someone else owner or delete the organization")
    ctx.session.delete(m)
    ctx.audit("member.leave", "user", user_id)


# --- API tokens ---------------------------------------------------------------------------------

def list_tokens(ctx: Ctx, org_id: str, q: PageRequest) -> tuple[list[ApiToken], str | None]:
    return page(ctx.session, sa.select(ApiToken).where(ApiToken.org_id == org_id), ApiToken.id,
                limit=q.limit, cursor=q.cursor)


def create_token(ctx: Ctx, org_id: str, cmd: CreateToken) -> dict[str, Any]:
    """A new API token for the org, no stronger than the caller; the token itself is in the result, once."""
    if ctx.role is None or cmd.role > ctx.role:
        mine = ctx.role.name if ctx.role else "none"
        raise PermissionDenied(f"a token cannot have more than your own role ({mine})")
    token = new_api_token()
    row = ApiToken(org_id=org_id, name=cmd.name, role=cmd.role.name, token_hash=hash_token(token),
                   prefix=token[:10], created_by=ctx.actor_id)
    ctx.session.add(row)
    ctx.session.flush()
    ctx.audit("token.create", "api_token", row.id, {"role": cmd.role.name})
    # Every column but the hash: the clear token is the caller's to keep, the hash is ours.
    out: dict[str, Any] = {c.key: getattr(row, c.key) for c in ApiToken.__table__.columns if c.key != "token_hash"}
    out["token"] = token
    return out


def revoke_token(ctx: Ctx, org_id: str, token_id: str) -> None:
    row = ctx.session.scalar(sa.select(ApiToken).where(ApiToken.org_id == org_id, ApiToken.id == token_id))
    if row is None:
        raise NotFound("API token not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    ctx.audit("token.revoke", "api_token", token_id)


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
