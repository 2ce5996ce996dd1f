"""What every service call gets: the session (one transaction), who is asking, the ports, and the audit hook."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from firebackup.crypto.secrets import Sealer
from firebackup.db.models import AuditLog
from firebackup.services.errors import Invalid
from firebackup.services.ports import IdTokenVerifier, OAuthClient, ProjectProber, TaskQueue
from firebackup.settings import Settings

if TYPE_CHECKING:
    from firebackup.services.source_opener import ProjectSources


class Role(enum.IntEnum):
    """Organization roles, ordered: a higher role can do everything a lower one can."""

    viewer = 1
    member = 2
    admin = 3
    owner = 4

    @classmethod
    def parse(cls, name: str) -> "Role":
        try:
            return cls[name]
        except KeyError:
            raise Invalid(f"unknown role {name!r}; use owner, admin, member or viewer") from None


@dataclass
class Principal:
    """Who is calling: a signed-in user, or an API token bound to one organization and role."""

    kind: str  # "user" | "token"
    user_id: str | None
    token_id: str | None = None
    token_org_id: str | None = None
    token_role: Role | None = None

    @property
    def actor_id(self) -> str | None:
        return self.user_id if self.kind == "user" else self.token_id


@dataclass
class Ports:
    settings: Settings
    sealer: Sealer
    queue: TaskQueue
    verifier: IdTokenVerifier
    oauth: OAuthClient
    prober: ProjectProber
    open_storage: Callable[..., Any]
    sources: ProjectSources  # connected projects' Firestore and Auth, with their own credentials


@dataclass
class Ctx:
    session: Session
    ports: Ports
    principal: Principal | None = None
    org_id: str | None = None
    role: Role | None = None
    ip: str | None = None
    user_agent: str | None = None
    audited: list[AuditLog] = field(default_factory=list)

    def audit(self, action: str, resource_type: str | None = None, resource_id: str | None = None,
              details: dict | None = None, *, org_id: str | None | object = "current", result: str = "success") -> None:
        """Record the change in the same transaction as the change itself (org_id=None: outlives the org)."""
        p = self.principal
        row = AuditLog(
            org_id=self.org_id if org_id == "current" else org_id,
            actor_type=p.kind if p else "system",
            actor_id=p.actor_id if p else None,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            ip=(self.ip or "")[:64] or None,
            user_agent=(self.user_agent or "")[:512] or None,
            result=result,
            details=details,
        )
        self.session.add(row)
        self.audited.append(row)


def page(session: Session, stmt: sa.Select, id_col: Any, *, limit: int, cursor: str | None,
         descending: bool = False) -> tuple[list[Any], str | None]:
    """Keyset pagination on a sortable id column; the cursor is the last id of the previous page."""
    if cursor:
        stmt = stmt.where(id_col < cursor if descending else id_col > cursor)
    stmt = stmt.order_by(id_col.desc() if descending else id_col).limit(limit + 1)
    rows = list(session.scalars(stmt))
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, _id_of(rows[-1])
    return rows, None


def _id_of(row: Any) -> str:
    return row.id if hasattr(row, "id") else row.user_id
