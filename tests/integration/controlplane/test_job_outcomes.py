"""Backup and restore outcomes are audited in the same transaction that records them."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from firebackup.db.models import AuditLog, Backup, Restore
from firebackup.services.context import Ctx
from firebackup.services.jobs import record_outcome
from tests.integration.controlplane.world import build_world

EMAILS = {c: f"out-{c}@example.com" for c in ("owner", "admin", "member", "viewer", "outsider")}



def test_a_backup_outcome_and_its_audit_row_are_committed_together(api) -> None:
    w = build_world(api, EMAILS)
    ports = _harness_ports(api)
    with api.session() as s, s.begin():
        ctx = Ctx(s, ports)
        record_outcome(ctx, s.get(Backup, w.backup_pending), "failed", "chunk d00001-00000: permission denied")
    with api.session() as s:
        assert s.get(Backup, w.backup_pending).state == "failed"
        row = s.scalar(sa.select(AuditLog).where(AuditLog.resource_id == w.backup_pending))
        assert (row.action, row.actor_type, row.result, row.org_id) == ("backup.failed", "system", "failure", w.org)


def test_a_rolled_back_outcome_leaves_no_audit_row(api) -> None:
    w = build_world(api, EMAILS)
    ports = _harness_ports(api)
    with pytest.raises(RuntimeError):
        with api.session() as s, s.begin():
            record_outcome(Ctx(s, ports), s.get(Restore, w.restore), "completed")
            raise RuntimeError("worker crashed before commit")
    with api.session() as s:
        assert s.get(Restore, w.restore).state == "pending"
        assert s.scalar(sa.select(sa.func.count()).select_from(AuditLog).where(AuditLog.resource_id == w.restore)) == 0


def _harness_ports(api):
    from dataclasses import replace

    from firebackup.bootstrap import ports as build_ports

    # The harness's own settings (its local root, its development egress setting for the webhook receivers on
    # 127.0.0.1), with http webhooks allowed too.
    settings = replace(api.app.extensions["firebackup_control_plane"].settings, allow_http_webhooks=True)
    return build_ports(settings, sealer=api.sealer, queue=api.queue, oauth=api.oauth, prober=api.prober)
