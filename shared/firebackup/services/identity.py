"""Authentication: who is calling (Firebase ID token or API token), and their role in an organization."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from firebackup.db.models import ApiToken, User, UserOrganization, utcnow
from firebackup.services.context import Ctx, Principal, Role
from firebackup.services.errors import NotFound, PermissionDenied, Unauthenticated

TOKEN_PREFIX = "fbk_"


def hash_token(token: str) -> str:
    """The stored form of an API token."""
    # Tokens are 256 random bits, so a plain SHA-256 is enough (no password-style stretching needed).
    return hashlib.sha256(token.encode()).hexdigest()


def new_api_token() -> str:
    """A fresh API token (shown to its creator once; only its hash is kept)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def authenticate(ctx: Ctx, authorization: str | None) -> Principal:
    """Resolve the Authorization header to a Principal; raises Unauthenticated."""
    if not authorization or not authorization.startswith("Bearer "):
        raise Unauthenticated("missing bearer token; send Authorization: Bearer <ID token or API token>")
    token = authorization[len("Bearer "):].strip()
    if not token or len(token) > 8192:
        raise Unauthenticated("missing bearer token; send Authorization: Bearer <ID token or API token>")
    if token.startswith(TOKEN_PREFIX):
        return _token_principal(ctx, token)
    claims = ctx.ports.verifier.verify(token)
    return Principal("user", user_id=_user_for(ctx, claims).id)


_MAX_TOKEN_DEPTH = 8  # a chain of tokens minting tokens; longer ones are refused at creation


def _token_principal(ctx: Ctx, token: str) -> Principal:
    """The API token's Principal, its role capped at its creator's role in the organization now.

    A token lives only as long as every token above it (the one that minted it, and so on) and
    its creator's membership: the member's current role is read on every request, so a demoted
    admin's tokens act as the lower role at once, and a removed member's not at all.
    """
    row = ctx.session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None:
        raise Unauthenticated("unknown or revoked API token; create a new one")
    now = utcnow()
    link: ApiToken | None = row
    for _ in range(_MAX_TOKEN_DEPTH):
        if link is None:
            break
        _check_alive(link, now, "API token" if link is row else "the API token that created this one")
        link = ctx.session.get(ApiToken, link.parent_id) if link.parent_id else None
    creator_role = ctx.session.scalar(sa.select(UserOrganization.role).where(
        UserOrganization.org_id == row.org_id, UserOrganization.user_id == row.created_by)) if row.created_by else None
    if creator_role is None:
        raise Unauthenticated("API token's creator is no longer a member of its organization; ask a member for a new one")
    row.last_used_at = now
    return Principal("token", user_id=None, token_id=row.id, token_org_id=row.org_id,
                     token_role=min(Role[row.role], Role[creator_role]), token_creator_id=row.created_by,
                     token_can_create_tokens=row.can_create_tokens, token_expires_at=row.expires_at)


def _check_alive(row: ApiToken, now: datetime, subject: str) -> None:
    if row.revoked_at is not None:
        raise Unauthenticated(f"{subject} was revoked; create a new one")
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthenticated(f"{subject} expired at {row.expires_at:%Y-%m-%d %H:%M} UTC; create a new one")


def _user_for(ctx: Ctx, claims: Mapping[str, Any]) -> User:
    """The user row for these claims; created on first sign-in, or linked to a pending invitation by email."""
    uid = claims.get("uid") or claims.get("sub")
    if not uid or not isinstance(uid, str):
        raise Unauthenticated("ID token has no subject; sign in again")
    user = ctx.session.scalar(sa.select(User).where(User.firebase_uid == uid))
    if user is not None:
        return user
    email = _trusted_email(ctx, claims)
    if email:
        user = ctx.session.scalar(sa.select(User).where(User.email == email, User.firebase_uid.is_(None)))
        if user is None and ctx.session.scalar(sa.select(User.id).where(User.email == email)) is not None:
            # Another Firebase account already holds this address (and its invitations): this one
            # gets a user of its own without it, rather than a unique-key failure on every call.
            email = None
    try:
        with ctx.session.begin_nested():
            if user is None:
                name = claims.get("name")
                user = User(email=email, display_name=name[:200] if isinstance(name, str) else None)
                ctx.session.add(user)
            user.firebase_uid = uid
    except sa.exc.IntegrityError:
        # Two first requests of one new account raced: the other one made the row; use it.
        found = ctx.session.scalar(sa.select(User).where(User.firebase_uid == uid))
        if found is None:
            raise
        return found
    return user


def _trusted_email(ctx: Ctx, claims: Mapping[str, Any]) -> str | None:
    """The lower-cased address to link invitations by, or None when it is not known to belong to the caller.

    An invitation is granted to whoever proves the address, so only a verified one counts; the Auth
    emulator verifies nothing, and its addresses are trusted only when the settings say so.
    """
    email = claims.get("email")
    if not isinstance(email, str) or not email or len(email) > 320:  # over 320: longer than any real address
        return None
    if claims.get("email_verified") is True or ctx.ports.settings.trust_emulator_tokens:
        return email.lower()
    return None


def role_in(ctx: Ctx, org_id: str) -> Role | None:
    """The caller's role in the organization, or None when they have none there."""
    p = ctx.principal
    if p is None:
        return None
    if p.kind == "token":
        return p.token_role if p.token_org_id == org_id else None
    role = ctx.session.scalar(
        sa.select(UserOrganization.role).where(UserOrganization.org_id == org_id, UserOrganization.user_id == p.user_id)
    )
    return Role[role] if role else None


def authorize(ctx: Ctx, org_id: str, minimum: Role) -> Role:
    """The one authorization check: not a member -> 404 (ids do not leak), role too low -> 403."""
    role = role_in(ctx, org_id)
    if role is None:
        raise NotFound("organization not found")
    ctx.org_id, ctx.role = org_id, role
    if role < minimum:
        raise PermissionDenied(f"this needs the {minimum.name} role; you are {role.name}")
    return role


def require_role(ctx: Ctx, minimum: Role, why: str) -> None:
    """A finer rule inside a route (e.g. only owners grant owner); same 403 as authorize."""
    if ctx.role is None or ctx.role < minimum:
        raise PermissionDenied(f"{why} needs the {minimum.name} role")


def require_user(ctx: Ctx) -> str:
    """The signed-in user's id; an API token (or the system) is refused."""
    p = ctx.principal
    if p is None or p.kind != "user" or p.user_id is None:
        raise PermissionDenied("this needs a signed-in user, not an API token")
    return p.user_id
