"""What every service call gets: the session (one transaction), who is asking, the ports, and the audit hook."""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, ContextManager, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from firebackup.crypto.keys import KmsClient
from firebackup.crypto.secrets import Sealer
from firebackup.db.models import AuditLog
from firebackup.runtime.metrics import Metrics, NullMetrics
from firebackup.runtime.queue import TaskQueue
from firebackup.services.errors import Invalid
from firebackup.services.ports import IdTokenVerifier, OAuthClient, ProjectProber
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
    """Who is calling: a signed-in user, or an API token bound to one organization and role.

    A token's role is already capped at its creator's current role in that organization.
    """

    kind: str  # "user" | "token"
    user_id: str | None
    token_id: str | None = None
    token_org_id: str | None = None
    token_role: Role | None = None
    token_creator_id: str | None = None  # the member the token acts for
    token_can_create_tokens: bool = False
    token_expires_at: datetime | None = None

    @property
    def actor_id(self) -> str | None:
        return self.user_id if self.kind == "user" else self.token_id


_CURRENT = object()  # Ctx.audit's default org: the one the call was authorized for


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
    # bootstrap always builds the configured adapter; the default serves Ports built by hand (unit tests).
    metrics: Metrics = field(default_factory=NullMetrics)
    # Cloud KMS, for organizations that bring their own key; None: the real client, made on first use.
    kms_client: KmsClient | None = None


@dataclass
class Ctx:
    """One service call: its transaction, its caller (None: the system, e.g. the scheduler), the ports."""

    session: Session
    ports: Ports
    principal: Principal | None = None
    org_id: str | None = None
    role: Role | None = None
    ip: str | None = None
    user_agent: str | None = None
    audited: list[AuditLog] = field(default_factory=list)

    @property
    def actor_id(self) -> str | None:
        """Who to record as having asked: the user or token id, None for the system."""
        return self.principal.actor_id if self.principal else None

    def audit(self, action: str, resource_type: str | None = None, resource_id: str | None = None,
              details: dict[str, Any] | None = None, *, org_id: str | None | object = _CURRENT,
              result: str = "success") -> None:
        """Record the change in the same transaction as the change itself (org_id=None: outlives the org)."""
        p = self.principal
        row = AuditLog(
            org_id=self.org_id if org_id is _CURRENT else org_id,
            actor_type=p.kind if p else "system",
            actor_id=self.actor_id,
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


SystemTx = Callable[[], ContextManager[Ctx]]  # `with tx() as ctx:` one short transaction, as the system


def system_transactions(factory: sessionmaker[Session], ports: Ports) -> SystemTx:
    """A SystemTx over a session factory: each `with` commits on success and rolls back on an exception.

    For callers that are no request (the scheduler, maintenance): no principal, audited as `system`.
    """

    @contextlib.contextmanager
    def tx() -> Iterator[Ctx]:
        with factory.begin() as session:
            yield Ctx(session, ports)

    return tx


T = TypeVar("T")


def page(session: Session, stmt: sa.Select[tuple[T]], id_col: InstrumentedAttribute[str], *, limit: int,
         cursor: str | None, descending: bool = False) -> tuple[list[T], str | None]:
    """Keyset pagination on a sortable id column; the cursor is that column's value in the page's last row."""
    if cursor:
        stmt = stmt.where(id_col < cursor if descending else id_col > cursor)
    stmt = stmt.order_by(id_col.desc() if descending else id_col).limit(limit + 1)
    rows = list(session.scalars(stmt))
    if len(rows) > limit:
        rows = rows[:limit]
        last: str = getattr(rows[-1], id_col.key)
        return rows, last
    return rows, None
