"""What the hourly `maintenance` function runs: retention, the reaper (and lost key rotations sent again),
webhook redelivery, PITR compaction, the audit log's partitions, and keyed fingerprints for secrets
stored before fingerprints were keyed.

Each step runs on its own: one that fails is logged and reported, and the others still run
(a destination that is down must not keep lost jobs `running`, nor stop webhooks).

The reaper: a job (backup or restore) that is `running`, whose lease has expired and whose last
heartbeat is older than `reap_after`, has no worker any more (the instance was killed, the task
lost, its retries exhausted without a dead letter). It becomes `failed` with the reason "no
worker reported for N minutes; the task was lost", audited and announced by webhook
(jobs.record_outcome), and a backup's partial objects are deleted. The job is failed first, so
a task that is in fact still alive stops at its next heartbeat (JobCancelled) instead of
writing on.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import sqlalchemy as sa

from firebackup.db.models import Backup, KeyRotation, Project, Restore, Schedule, StorageDestination, Webhook
from firebackup.engine.jobs import one_line
from firebackup.errors import FireBackupError
from firebackup.services import retention
from firebackup.services.context import SystemTx
from firebackup.services.jobs import record_outcome

log = logging.getLogger("firebackup.maintenance")


@dataclass
class Report:
    """What one maintenance run did; `errors` names each step (or schedule) that failed, in one line."""

    removed: dict[str, list[str]] = field(default_factory=dict)  # schedule id -> backup ids removed
    reaped: list[str] = field(default_factory=list)
    rotations_resent: list[str] = field(default_factory=list)  # key rotations whose lost task was sent again
    webhooks_redelivered: int = 0
    refingerprinted: int = 0
    audit_partitions_created: list[str] = field(default_factory=list)
    audit_partitions_archived: dict[str, int] = field(default_factory=dict)  # partition -> rows, then dropped
    errors: list[str] = field(default_factory=list)


def run(tx: SystemTx, now: dt.datetime, *, reap_after: dt.timedelta) -> Report:
    """Every maintenance step, each isolated from the others' failures."""
    report = Report()

    def webhooks() -> None:
        report.webhooks_redelivered = redeliver_webhooks(tx, now)

    steps: list[tuple[str, Callable[[], None]]] = [
        ("reaper", lambda: report.reaped.extend(reap(tx, now, reap_after))),
        ("rotations", lambda: report.rotations_resent.extend(resend_rotations(tx, now, reap_after))),
        ("retention", lambda: apply_all_retention(tx, now, report)),
        ("webhooks", webhooks),
        ("pitr", lambda: compact_pitr(tx, now)),
        ("fingerprints", lambda: setattr(report, "refingerprinted", refingerprint_secrets(tx))),
        ("audit_partitions", lambda: _audit_partitions(tx, now, report)),
    ]
    for name, step in steps:
        try:
            step()
        except Exception as e:  # noqa: BLE001 - one step's failure must not stop the others
            log.exception("maintenance step %s failed", name)
            report.errors.append(f"{name}: {one_line(e)}")
    return report


# --- retention -----------------------------------------------------------------------------------------

def apply_all_retention(tx: SystemTx, now: dt.datetime, report: Report) -> None:
    """Apply every schedule's retention rules; a schedule whose removal fails is reported and skipped."""
    with tx() as ctx:
        ids = [sid for sid, rules in ctx.session.execute(sa.select(Schedule.id, Schedule.retention)
                                                          .order_by(Schedule.id)) if rules]
    for sid in ids:
        try:
            removed = retention.apply(tx, sid, now)
        except Exception as e:  # noqa: BLE001 - the next schedule's retention still runs
            log.exception("retention of schedule %s failed", sid)
            report.errors.append(f"retention {sid}: {one_line(e)}")
            continue
        if removed:
            report.removed[sid] = removed


# --- the reaper ----------------------------------------------------------------------------------------

JobRow = TypeVar("JobRow", Backup, Restore)


def _silent(model: type[Backup] | type[Restore] | type[KeyRotation], now: dt.datetime,
            cutoff: dt.datetime) -> sa.ColumnElement[bool]:
    """No worker holds it (no lease, or an expired one) and none has reported on it since cutoff."""
    last_sign = sa.func.coalesce(model.heartbeat_at, model.started_at, model.created_at)
    return sa.and_(sa.or_(model.lease_until.is_(None), model.lease_until < now), last_sign < cutoff)


def _lost(model: type[JobRow], now: dt.datetime, cutoff: dt.datetime) -> sa.ColumnElement[bool]:
    return sa.and_(model.state == "running", _silent(model, now, cutoff))


def reap(tx: SystemTx, now: dt.datetime, reap_after: dt.timedelta) -> list[str]:
    """Fail every running job no worker has reported on within `reap_after`; returns their ids."""
    cutoff = now - reap_after
    return _reap(tx, Backup, now, cutoff) + _reap(tx, Restore, now, cutoff)


def resend_rotations(tx: SystemTx, now: dt.datetime, reap_after: dt.timedelta) -> list[str]:
    """Send again the task of every key rotation no worker has reported on within `reap_after`; their ids.

    Unlike a backup, a rotation is not failed: it resumes after the last item it moved and moves
    nothing twice, and until it ends the organization keeps its previous key.
    """
    from firebackup.services.keys import ACTIVE, send_again

    with tx() as ctx:
        lost = list(ctx.session.scalars(sa.select(KeyRotation.id).where(
            KeyRotation.state.in_(ACTIVE), _silent(KeyRotation, now, now - reap_after)).order_by(KeyRotation.id)))
        for rotation_id in lost:
            send_again(ctx, rotation_id)
    return lost


def _reap(tx: SystemTx, model: type[JobRow], now: dt.datetime, cutoff: dt.datetime) -> list[str]:
    with tx() as ctx:
        ids = list(ctx.session.scalars(sa.select(model.id).where(_lost(model, now, cutoff)).order_by(model.id)))
    reaped: list[str] = []
    for job_id in ids:
        target = _fail_lost(tx, model, job_id, now, cutoff)
        if target is None:
            continue  # it reported meanwhile, or ended
        reaped.append(job_id)
        dest_id, repo_id = target
        if repo_id:
            try:
                retention.delete_backup_objects(tx, dest_id, repo_id)
            except FireBackupError as e:
                # The job is failed either way; its tasks delete what is left when next delivered.
                log.warning("reaper: partial objects of backup %s stay for now: %s", job_id, one_line(e))
    return reaped


def _fail_lost(tx: SystemTx, model: type[JobRow], job_id: str, now: dt.datetime,
               cutoff: dt.datetime) -> tuple[str | None, str | None] | None:
    """Fail the job if it is still lost (checked again under its row lock); returns where its objects are."""
    with tx() as ctx:
        row = ctx.session.scalar(sa.select(model).where(model.id == job_id, _lost(model, now, cutoff))
                                 .with_for_update())
        if row is None:
            return None
        last = row.heartbeat_at or row.started_at or row.created_at
        minutes = max(1, int((now - last).total_seconds() // 60))
        row.lease_until = None
        record_outcome(ctx, row, "failed", f"no worker reported for {minutes} minutes; the task was lost")
        if isinstance(row, Backup):
            return row.destination_id, row.repo_backup_id
        return "", None  # a restore writes into Firestore only: no objects of its own to delete


# --- hooks for what other modules own -----------------------------------------------------------------

def _audit_partitions(tx: SystemTx, now: dt.datetime, report: Report) -> None:
    """The audit log's monthly partitions (PostgreSQL): created ahead, expired ones archived (services/audit_archive.py)."""
    from firebackup.services.audit_archive import maintain

    done = maintain(tx, now)
    report.audit_partitions_created, report.audit_partitions_archived = done.created, done.archived


def redeliver_webhooks(tx: SystemTx, now: dt.datetime) -> int:
    """Hand the webhook deliveries whose task was lost (overdue) back to the webhook queue; returns how many.

    The queue's delayed tasks space the attempts; this only catches the ones a lost task or a dead
    local timer left behind (services.webhooks.redeliver_due decides which).
    """
    from firebackup.services.webhooks import redeliver_due

    with tx() as ctx:
        return len(redeliver_due(ctx, now))


def compact_pitr(tx: SystemTx, now: dt.datetime) -> None:
    """PITR: captured changes older than the setting into encrypted segments, then PITR retention."""
    from firebackup.services.pitr import compact_all

    with tx() as ctx:
        settings = ctx.ports.settings
    done = compact_all(tx, now, older_than=dt.timedelta(seconds=settings.pitr_compact_after_seconds),
                       max_changes=settings.pitr_segment_changes)
    log.info("pitr compaction: %s", done)


# --- keyed fingerprints ----------------------------------------------------------------------------------

# Each sealed secret with the column that shows its label (crypto.secrets.fingerprint).
FINGERPRINTED = ((Project, "credentials_sealed", "credentials_fingerprint"),
                 (StorageDestination, "credentials_sealed", "credentials_fingerprint"),
                 (Webhook, "secret_sealed", "secret_fingerprint"))
KEYED_PREFIX = "hmac:"


def refingerprint_secrets(tx: SystemTx, *, batch: int = 100) -> int:
    """Replace every unkeyed fingerprint (the old plain "sha256:" form, which lets a Viewer test guesses of a
    low-entropy secret offline) with the keyed one; returns how many rows changed.

    Rows are opened a batch at a time; a compare-and-set keeps a label written meanwhile. Once no old
    row is left, each run is one indexed-free scan that finds nothing.
    """
    changed = 0
    for model, sealed, label in FINGERPRINTED:
        table = model.metadata.tables[model.__tablename__]
        pk, sealed_col, label_col = table.c.id, table.c[sealed], table.c[label]
        after = ""
        while True:
            with tx() as ctx:
                rows = ctx.session.execute(
                    sa.select(pk, sealed_col, label_col).where(
                        pk > after, sealed_col.is_not(None), label_col.is_not(None),
                        sa.not_(label_col.startswith(KEYED_PREFIX))).order_by(pk).limit(batch)).all()
                for row_id, token, old in rows:
                    secret = ctx.ports.sealer.open(token, f"{table.name}.{sealed}:{row_id}")
                    done = ctx.session.connection().execute(
                        sa.update(table).where(pk == row_id, label_col == old)
                        .values({label: ctx.ports.sealer.fingerprint(secret)}))
                    changed += done.rowcount
            if len(rows) < batch:
                break
            after = rows[-1][0]
    if changed:
        log.info("re-fingerprinted %d secrets with the server's key", changed)
    return changed
