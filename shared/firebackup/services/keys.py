"""An organization's key-encryption key (KEK) for its backups, and key rotation by re-wrapping manifests.

By default a backup's data key is wrapped by the organization's BackupKey (a LocalKey sealed in the
database). An organization that brings its own key (BYOK) names a Cloud KMS crypto key: new backups'
data keys are wrapped by it (kek_id "kms:..."), and the BackupKey is not used for them, so the
platform holds nothing that opens them without a KMS call the customer can revoke.

Restore and verify unwrap with the key each manifest names (kek_named), so backups made before a
switch of key stay readable. Rotation re-wraps every completed backup's manifest from the key it names
to the new one (format.manifest.rewrap_manifest; chunks are untouched), then PITR's data: each
project's capture data key and every compacted segment's manifest. It runs as a job: the request
records the new key as current and the old one as previous (both open backups meanwhile) and enqueues
one keys.rotate task on the backup queue (KeyRotations). The task works through the backups in id
order, then the PITR items, records after each where a redelivery resumes, writes each new manifest
and reads it back under the new key (putting the old one back if that fails), and forgets the
previous key only when nothing is left under it.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from firebackup.crypto.keys import CloudKmsClient, KeyEncryptionKey, KmsClient, KmsKey, LocalKey
from firebackup.db.models import (Backup, BackupKey, JobTask, KeyRotation, Organization, PITRConfig, StorageDestination,
                                  new_id)
from firebackup.engine.jobs import ClaimState, Handler, LeaseHeld, one_line, utcnow
from firebackup.engine.tasks import KEYS_ROTATE
from firebackup.errors import BadKey, FireBackupError, is_transient
from firebackup.services.commands import SetOrgEncryption
from firebackup.services.context import Ctx, Ports
from firebackup.services.errors import Conflict, Invalid, NotFound
from firebackup.services.job_store import TaskLeases

if TYPE_CHECKING:
    from firebackup.engine.repository import Repository
    from firebackup.pitr.segments import SegmentRepository
    from firebackup.storage.base import Storage

log = logging.getLogger("firebackup.keys")

LOCAL_SOURCE = "organization backup key"


def kms_client(ports: Ports) -> KmsClient:
    """The injected KMS client, or the real one on first use (no client exists until a key needs it)."""
    if ports.kms_client is None:
        ports.kms_client = CloudKmsClient()
    return ports.kms_client


def _kms_key(ports: Ports, name: str) -> KmsKey:
    try:
        return KmsKey(name, kms_client(ports))
    except BadKey as e:
        raise Invalid(str(e)) from None


def _org(ctx: Ctx, org_id: str) -> Organization:
    org = ctx.session.get(Organization, org_id)
    if org is None:
        raise NotFound(f"organization {org_id} not found")
    return org


def stored_local_kek(ctx: Ctx, org_id: str) -> LocalKey | None:
    """The organization's BackupKey as a KEK, or None if it never made one."""
    row = ctx.session.scalar(sa.select(BackupKey).where(BackupKey.org_id == org_id))
    if row is None:
        return None
    raw = ctx.ports.sealer.open(row.key_sealed, f"backup_keys.key_sealed:{row.id}")
    return LocalKey(base64.b64decode(raw), source=LOCAL_SOURCE)


def org_kms_kek(ctx: Ctx, org_id: str) -> KmsKey | None:
    """The organization's own Cloud KMS key, if it chose one."""
    name = _org(ctx, org_id).kms_key_name
    return KmsKey(name, kms_client(ctx.ports)) if name else None


def current_kek(ctx: Ctx, org_id: str) -> KeyEncryptionKey | None:
    """The organization's KEK for new data keys: its own Cloud KMS key if it chose one, else its BackupKey;
    None if it has neither yet."""
    return org_kms_kek(ctx, org_id) or stored_local_kek(ctx, org_id)


def make_local_kek(ctx: Ctx, org_id: str) -> LocalKey:
    """Make the organization's BackupKey, sealed by the platform's master key, and audit it.

    Two first uses at once both try: the unique org_id makes the second commit fail (IntegrityError).
    """
    raw = os.urandom(32)
    kek, kid = LocalKey(raw, source=LOCAL_SOURCE), new_id("bkk")
    ctx.session.add(BackupKey(id=kid, org_id=org_id, key_id=kek.key_id,
                              key_sealed=ctx.ports.sealer.seal(base64.b64encode(raw), f"backup_keys.key_sealed:{kid}")))
    ctx.audit("backup_key.create", "backup_key", kid, {"key_id": kek.key_id}, org_id=org_id)
    return kek


def kek_named(ctx: Ctx, org_id: str, kek_id: str) -> KeyEncryptionKey:
    """The KEK a manifest names, if it is one of this organization's (current, previous or its BackupKey).

    Never a KMS key the organization did not choose: a manifest in a tenant's bucket could name any.
    """
    org = _org(ctx, org_id)
    for name in (org.kms_key_name, org.kms_key_previous):
        if name and kek_id == "kms:" + name:
            return KmsKey(name, kms_client(ctx.ports))
    local = stored_local_kek(ctx, org_id)
    if local is not None and local.key_id == kek_id:
        return local
    raise BadKey(f"the backup's key {kek_id} is not one of this organization's keys")


def org_keeps(ctx: Ctx, org_id: str, kek_id: str) -> bool:
    """Whether kek_id is still one of the organization's keys, its row locked (shared) until the transaction ends.

    What a write made under a key taken earlier checks before it counts: a rotation forgets a key under the
    row's exclusive lock and lists PITR's segments once more after taking it (KeyRotations._finish), so
    either it sees the segment or this sees the key forgotten.
    """
    ctx.session.get(Organization, org_id, with_for_update={"read": True}, populate_existing=True)
    try:
        kek_named(ctx, org_id, kek_id)
    except (BadKey, NotFound):
        return False
    return True


def get_encryption(ctx: Ctx, org_id: str) -> dict[str, Any]:
    org = _org(ctx, org_id)
    return {"kms_key_name": org.kms_key_name, "rotating_from": org.kms_key_previous}


def _choose(org: Organization, name: str | None) -> None:
    """Make `name` the key of new backups; the one it replaces stays readable as the previous key.

    Only one previous key is remembered: while backups or PITR data may still be under it (a rotation
    not yet finished), switching to a third key would strand them, so it is refused.
    """
    if name == org.kms_key_name:
        return
    if org.kms_key_previous and name != org.kms_key_previous:
        raise Conflict(f"backups under {org.kms_key_previous} are not all re-wrapped yet: finish the rotation to "
                       f"{org.kms_key_name} first (POST /encryption/rotate with it)")
    org.kms_key_previous = org.kms_key_name  # its backups stay readable until a rotation moves them
    org.kms_key_name = name


def set_encryption(ctx: Ctx, org_id: str, cmd: SetOrgEncryption) -> dict[str, Any]:
    """New backups' data keys are wrapped with cmd.kms_key_name; existing backups keep theirs until rotated."""
    if cmd.kms_key_name is not None:
        _kms_key(ctx.ports, cmd.kms_key_name)  # the name's shape, in one line
    _choose(_org(ctx, org_id), cmd.kms_key_name)
    ctx.audit("org.encryption.set", "organization", org_id, {"kms_key_name": cmd.kms_key_name})
    return get_encryption(ctx, org_id)


ACTIVE = ("pending", "running")  # a rotation still to do


def rotation_out(row: KeyRotation) -> dict[str, Any]:
    return {"id": row.id, "state": row.state, "kms_key_name": row.kms_key_name, "rewrapped": row.rewrapped,
            "already_current": row.already_current, "failed": list(row.failed or []), "error": row.error,
            "created_at": row.created_at, "finished_at": row.finished_at}


def rotate_encryption(ctx: Ctx, org_id: str, cmd: SetOrgEncryption) -> dict[str, Any]:
    """Start re-wrapping every completed backup's manifest and the PITR data under cmd.kms_key_name: a job (202).

    Asked again while the same rotation runs, the running job is the answer (and its task is sent again if
    no worker has held it for a lease: a lost task); a rotation that ended with failures is finished by
    asking again (manifests already under the new key are skipped).
    """
    if cmd.kms_key_name is None:
        raise Invalid("rotation needs kms_key_name: the Cloud KMS key to re-wrap every backup under")
    _kms_key(ctx.ports, cmd.kms_key_name)
    org = _org(ctx, org_id)
    running = ctx.session.scalar(sa.select(KeyRotation).where(KeyRotation.org_id == org_id,
                                                              KeyRotation.state.in_(ACTIVE)))
    if running is not None:
        if running.kms_key_name == cmd.kms_key_name:
            lease = dt.timedelta(seconds=ctx.ports.settings.lease_seconds)
            if (running.lease_until or running.created_at + lease) <= utcnow():
                # No worker holds it (its task was lost): asking again sends the task again; it resumes.
                send_again(ctx, running.id)
            return rotation_out(running)
        raise Conflict(f"a rotation to {running.kms_key_name} is in progress ({running.id}); wait for it to end")
    _choose(org, cmd.kms_key_name)
    row = KeyRotation(id=new_id("rot"), org_id=org_id, kms_key_name=cmd.kms_key_name, state="pending",
                      requested_by=ctx.actor_id)
    ctx.session.add(row)
    ctx.session.flush()
    ctx.audit("org.encryption.rotate.start", "key_rotation", row.id, {"kms_key_name": cmd.kms_key_name})
    ctx.ports.queue.enqueue(KEYS_ROTATE, {"job": row.id})  # sent after the commit (AfterCommitQueue)
    return rotation_out(row)


def send_again(ctx: Ctx, rotation_id: str) -> None:
    """Send a rotation's task once more (its last one was lost); the task resumes where the job stopped.

    The payload carries a fresh token: Cloud Tasks refuses a task name used within the hour, which
    would make this a silent no-op right after a task that ran and died.
    """
    ctx.ports.queue.enqueue(KEYS_ROTATE, {"job": rotation_id, "sent": new_id("snd")})


def get_rotation(ctx: Ctx, org_id: str, rotation_id: str) -> dict[str, Any]:
    row = ctx.session.get(KeyRotation, rotation_id)
    if row is None or row.org_id != org_id:
        raise NotFound(f"key rotation {rotation_id} not found")
    return rotation_out(row)


_TASK = "rotate"  # the one task of a rotation job (its JobTask key)
# Resume points of the PITR phase, after the backups': a project's data key, then a segment.
_PITR, _PITR_KEY, _PITR_SEGMENT = "pitr:", "pitr:key:", "pitr:seg:"


class KeyRotations:
    """The keys.rotate task handler: re-wraps an organization's manifests and PITR keys, at least once, resumable."""

    def __init__(self, factory: sessionmaker[Session], ports: Ports, *, clock: Callable[[], dt.datetime] = utcnow,
                 lease_seconds: float = 600.0):
        self.factory, self.ports, self.clock = factory, ports, clock
        self.leases = TaskLeases(factory, ports, KeyRotation, clock=clock, lease_seconds=lease_seconds)

    def handlers(self) -> dict[str, Handler]:
        return {KEYS_ROTATE: self.rotate}

    def rotate(self, payload: dict[str, Any]) -> None:
        job_id = payload.get("job") if isinstance(payload, dict) else None
        if not isinstance(job_id, str):
            log.warning("refused keys.rotate task: it names no job")
            return
        claim = self.leases.claim(job_id, _TASK)
        if claim.state in (ClaimState.GONE, ClaimState.DONE):
            return
        if claim.state is ClaimState.BUSY:
            raise LeaseHeld(job_id, _TASK)
        try:
            self._run(job_id, claim.resume_after)
        except Exception as e:
            if is_transient(e):
                self.leases.release(job_id, _TASK)  # the queue delivers it again; it resumes where it stopped
                raise
            self.fail(job_id, one_line(e))

    def _run(self, job_id: str, after: str | None) -> None:
        with self.factory.begin() as s:
            row = s.get(KeyRotation, job_id)
            if row is None:
                return
            org_id, name = row.org_id, row.kms_key_name
            ctx = Ctx(s, self.ports)
            new = _kms_key(self.ports, name)
            if _org(ctx, org_id).kms_key_name != name:
                raise FireBackupError(f"the organization's key is no longer {name}; rotate to its current key")
        if not (after or "").startswith(_PITR):
            while True:
                with self.factory() as s:
                    backup = s.scalar(sa.select(Backup.id).where(
                        Backup.org_id == org_id, Backup.state == "completed", Backup.repo_backup_id.is_not(None),
                        Backup.id > (after or "")).order_by(Backup.id).limit(1))
                if backup is None:
                    break
                self._record(job_id, backup, self._attempt(lambda: self._rewrap(org_id, backup, new)),
                             {"backup_id": backup})
                after = backup
        self._rewrap_pitr(job_id, org_id, new, after if after and after.startswith(_PITR) else "")
        self._finish(job_id, new)

    @staticmethod
    def _attempt(move: Callable[[], str]) -> str:
        """The outcome of moving one item; a permanent error is its outcome (one line), a transient one is raised."""
        try:
            return move()
        except FireBackupError as e:
            if is_transient(e):
                raise
            return one_line(e)[:300]

    def _storage(self, org_id: str, destination_id: str | None) -> Storage | None:
        """The organization's destination opened, or None if it is gone or not the organization's."""
        from firebackup.services.resources import open_destination

        with self.factory.begin() as s:
            dest = s.get(StorageDestination, destination_id) if destination_id else None
            if dest is None or dest.org_id != org_id:
                return None
            return open_destination(Ctx(s, self.ports), dest)

    def _rewrap(self, org_id: str, backup_id: str, new: KmsKey) -> str:
        """Move one backup's manifest under `new`: "rewrapped", "current" (already there) or "unencrypted"."""
        from firebackup.engine.repository import Repository

        with self.factory() as s:
            row = s.get(Backup, backup_id)
            repo_id, dest_id = (row.repo_backup_id, row.destination_id) if row is not None else (None, None)
        storage = self._storage(org_id, dest_id) if repo_id is not None else None
        if storage is None or repo_id is None:
            return "gone"  # deleted or detached since: nothing reachable to re-wrap
        try:
            return self._move_manifest(org_id, Repository(storage), repo_id, new)
        finally:
            storage.close()

    def _move_manifest(self, org_id: str, repo: Repository, manifest_id: str, new: KmsKey) -> str:
        """Re-wrap one manifest (a backup's or a PITR segment's) under `new`: "rewrapped", "current" or
        "unencrypted". The new manifest is read back under `new`, else the old one is put back."""
        from firebackup.format.manifest import decode_manifest, read_manifest_summary, rewrap_manifest

        key = repo.manifest_key(manifest_id)
        data = repo.read_manifest_bytes(manifest_id)
        kek_id = read_manifest_summary(data, where=key).get("kek_id")
        if kek_id == new.key_id:
            return "current"
        if not kek_id:
            return "unencrypted"  # no data key to wrap
        with self.factory() as s:
            old = kek_named(Ctx(s, self.ports), org_id, kek_id)
        rewrapped = rewrap_manifest(data, old_kek=old, new_kek=new, where=key)
        repo.storage.put(key, rewrapped)
        try:
            decode_manifest(repo.storage.get(key), kek=new, where=key)  # it reads under the new key, or ...
        except FireBackupError:
            repo.storage.put(key, data)  # ... the old manifest goes back: never a manifest nothing opens
            raise
        return "rewrapped"

    def _rewrap_pitr(self, job_id: str, org_id: str, new: KmsKey, after: str) -> None:
        """After the backups, PITR: each project's data key, then every segment in the PITR destinations.

        Resumable like the backups: the resume point names the last item done ("pitr:key:<config>" or
        "pitr:seg:<destination>/<segment>", in that order). An item already under `new` costs no KMS call,
        so a redelivery that does the phase again moves nothing twice.
        """
        configs = self._pitr_configs(org_id)
        for config in configs:
            at = _PITR_KEY + config.id
            if at > after:
                self._record(job_id, at, self._attempt(lambda: self._rewrap_data_key(org_id, config.id, new)),
                             {"project_id": config.project_id})
        for dest_id, repo, segment in self._segments(org_id, configs):
            at = f"{_PITR_SEGMENT}{dest_id}/{segment}"
            if at > after:
                self._record(job_id, at, self._attempt(lambda: self._move_manifest(org_id, repo, segment, new)),
                             {"segment_id": segment, "destination_id": dest_id})

    def _pitr_configs(self, org_id: str) -> Sequence[Any]:
        """The organization's PITR configurations: (id, project_id, destination_id, kek_id), in id order."""
        with self.factory() as s:
            return s.execute(sa.select(PITRConfig.id, PITRConfig.project_id, PITRConfig.destination_id,
                                       PITRConfig.kek_id).where(PITRConfig.org_id == org_id)
                             .order_by(PITRConfig.id)).all()

    def _segments(self, org_id: str, configs: Sequence[Any]) -> Iterator[tuple[str, SegmentRepository, str]]:
        """(destination id, its segments, segment id) of every complete segment in the configurations' destinations,
        in that order; each destination is listed when reached and closed after its last segment."""
        from firebackup.pitr.segments import SegmentRepository

        for dest_id in sorted({c.destination_id for c in configs}):
            storage = self._storage(org_id, dest_id)
            if storage is None:
                continue
            try:
                repo = SegmentRepository(storage)
                for segment in repo.backup_ids()[0]:
                    yield dest_id, repo, segment
            finally:
                storage.close()

    def _rewrap_data_key(self, org_id: str, config_id: str, new: KmsKey) -> str:
        """Move one project's PITR data key under `new` (same wrap context): "rewrapped", "current" or "gone".

        Its captured rows are sealed by the data key itself, so they need no change.
        """
        from firebackup.errors import IntegrityError
        from firebackup.pitr.sealing import wrap_context

        with self.factory.begin() as s:
            config = s.get(PITRConfig, config_id, with_for_update=True)
            if config is None or config.org_id != org_id or config.wrapped_dek is None or config.kek_id is None:
                return "gone"
            if config.kek_id == new.key_id:
                return "current"
            context = wrap_context(config.project_id)
            dek = kek_named(Ctx(s, self.ports), org_id, config.kek_id).unwrap(config.wrapped_dek, context)
            wrapped = new.wrap(dek, context)
            if new.unwrap(wrapped, context) != dek:  # never store a data key nothing opens
                raise IntegrityError(f"project {config.project_id}'s PITR data key did not unwrap under {new.key_id}")
            config.wrapped_dek, config.kek_id = wrapped, new.key_id
        return "rewrapped"

    def _record(self, job_id: str, at: str, outcome: str, item: dict[str, str]) -> None:
        """One item done: its outcome counted and the resume point moved to `at`, in one transaction."""
        now = self.clock()
        with self.factory.begin() as s:
            row = s.get(KeyRotation, job_id, with_for_update=True)
            if row is None:
                return
            if outcome == "rewrapped":
                row.rewrapped += 1
            elif outcome == "current":
                row.already_current += 1
            elif outcome not in ("gone", "unencrypted"):
                row.failed = [*(row.failed or []), {**item, "error": outcome}]
            row.heartbeat_at, row.lease_until = now, now + self.leases.lease
            s.execute(sa.update(JobTask).where(JobTask.job_id == job_id, JobTask.task_key == _TASK)
                      .values(resume_after=at, heartbeat_at=now, lease_until=now + self.leases.lease))

    def _pitr_left(self, org_id: str, new: KmsKey) -> list[str]:
        """The PITR data keys and segments of the organization not under `new`, listed afresh.

        A compaction that took the old key before the switch may write a segment after the phase listed
        its destination: such a segment keeps the previous key until a further rotation moves it.
        """
        configs = self._pitr_configs(org_id)
        left = [f"project {c.project_id}'s PITR data key" for c in configs if c.kek_id not in (None, new.key_id)]
        for _, repo, segment in self._segments(org_id, configs):
            try:
                kek_id = repo.read_summary(segment).get("kek_id")
            except FireBackupError as e:
                if is_transient(e):
                    raise
                kek_id = "unreadable"
            if kek_id not in (None, new.key_id):
                left.append(f"PITR segment {segment}")
        return left

    def _finish(self, job_id: str, new: KmsKey) -> None:
        with self.factory.begin() as s:
            row = s.get(KeyRotation, job_id, with_for_update=True)
            if row is None or row.state not in ACTIVE:
                return
            org = s.get(Organization, row.org_id, with_for_update=True)
            # Listed under the lock: a compaction's segment made under the old key either is seen here or,
            # committed after, finds that key forgotten (org_keeps) and is made again under the new one.
            left = self._pitr_left(row.org_id, new)
            failed = len(row.failed or [])
            in_flight = s.scalar(sa.select(sa.func.count()).select_from(Backup).where(
                Backup.org_id == row.org_id, Backup.state.in_(ACTIVE))) or 0
            if org is not None and not failed and not in_flight and not left and org.kms_key_name == row.kms_key_name:
                org.kms_key_previous = None  # nothing is left under the old key
            error = f"{failed} item(s) could not be re-wrapped; their key is still needed" if failed else None
            if left and not failed:
                error = (f"{len(left)} PITR item(s) were written under the previous key during the rotation "
                         f"({', '.join(left[:3])}); it is kept: rotate again to move them")
                log.warning("rotation %s: %s", job_id, error)
            s.execute(sa.update(JobTask).where(JobTask.job_id == job_id, JobTask.task_key == _TASK)
                      .values(done=True, lease_until=None))
            self._end(s, row, "failed" if error else "completed", error)

    def fail(self, job_id: str, reason: str) -> None:
        """The rotation ends failed with a one-line reason (a permanent error, or the queue gave up)."""
        with self.factory.begin() as s:
            row = s.get(KeyRotation, job_id, with_for_update=True)
            if row is not None and row.state in ACTIVE:
                self._end(s, row, "failed", reason)

    def _end(self, s: Session, row: KeyRotation, state: str, error: str | None) -> None:
        row.state, row.error, row.finished_at, row.lease_until = state, error, self.clock(), None
        Ctx(s, self.ports).audit("org.encryption.rotate", "key_rotation", row.id,
                                 {"kms_key_name": row.kms_key_name, "rewrapped": row.rewrapped,
                                  "already_current": row.already_current, "failed": len(row.failed or []),
                                  **({"error": error} if error else {})},
                                 org_id=row.org_id, result="success" if state == "completed" else "failure")
