"""An organization's key-encryption key (KEK) for its backups, and key rotation by re-wrapping manifests.

By default a backup's data key is wrapped by the organization's BackupKey (a LocalKey sealed in the
database). An organization that brings its own key (BYOK) names a Cloud KMS crypto key: new backups'
data keys are wrapped by it (kek_id "kms:..."), and the BackupKey is not used for them, so the
platform holds nothing that opens them without a KMS call the customer can revoke.

Rotation re-wraps every completed backup's manifest from the key it names to the new one
(format.manifest.rewrap_manifest; chunks are untouched). It first records the new key as current and
the old one as previous, so a rotation cut short is finished by asking again: manifests already under
the new key are skipped.
"""

from __future__ import annotations

import base64
from typing import Any

import sqlalchemy as sa

from firebackup.crypto.keys import CloudKmsClient, KeyEncryptionKey, KmsClient, KmsKey, LocalKey
from firebackup.db.models import Backup, BackupKey, Organization, StorageDestination
from firebackup.errors import BadKey, FireBackupError
from firebackup.services.commands import SetOrgEncryption
from firebackup.services.context import Ctx, Ports
from firebackup.services.errors import Invalid, NotFound

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


def get_encryption(ctx: Ctx, org_id: str) -> dict[str, Any]:
    org = _org(ctx, org_id)
    return {"kms_key_name": org.kms_key_name, "rotating_from": org.kms_key_previous}


def _choose(org: Organization, name: str | None) -> None:
    if org.kms_key_name and org.kms_key_name != name:
        org.kms_key_previous = org.kms_key_name  # its backups stay readable until a rotation moves them
    org.kms_key_name = name


def set_encryption(ctx: Ctx, org_id: str, cmd: SetOrgEncryption) -> dict[str, Any]:
    """New backups' data keys are wrapped with cmd.kms_key_name; existing backups keep theirs until rotated."""
    if cmd.kms_key_name is not None:
        _kms_key(ctx.ports, cmd.kms_key_name)  # the name's shape, in one line
    _choose(_org(ctx, org_id), cmd.kms_key_name)
    ctx.audit("org.encryption.set", "organization", org_id, {"kms_key_name": cmd.kms_key_name})
    return get_encryption(ctx, org_id)


def rotate_encryption(ctx: Ctx, org_id: str, cmd: SetOrgEncryption) -> dict[str, Any]:
    """Re-wrap every completed backup's manifest under cmd.kms_key_name (idempotent, resumable, audited)."""
    from firebackup.engine.repository import Repository
    from firebackup.format.manifest import read_manifest_summary, rewrap_manifest
    from firebackup.services.resources import open_destination

    if cmd.kms_key_name is None:
        raise Invalid("rotation needs kms_key_name: the Cloud KMS key to re-wrap every backup under")
    new = _kms_key(ctx.ports, cmd.kms_key_name)
    org = _org(ctx, org_id)
    _choose(org, cmd.kms_key_name)  # first, so a rotation cut short resumes from here (audited below)
    rewrapped, current, failed = 0, 0, []
    rows = ctx.session.scalars(sa.select(Backup).where(Backup.org_id == org_id, Backup.state == "completed",
                                                       Backup.repo_backup_id.is_not(None)).order_by(Backup.id))
    for backup in list(rows):
        dest = ctx.session.get(StorageDestination, backup.destination_id)
        if dest is None or backup.repo_backup_id is None:
            continue
        try:
            storage = open_destination(ctx, dest)
            try:
                repo = Repository(storage)
                key = repo.manifest_key(backup.repo_backup_id)
                data = repo.read_manifest_bytes(backup.repo_backup_id)
                kek_id = read_manifest_summary(data, where=key).get("kek_id")
                if kek_id == new.key_id:
                    current += 1
                    continue
                if not kek_id:
                    continue  # an unencrypted backup has no data key to wrap
                old = kek_named(ctx, org_id, kek_id)
                storage.put(key, rewrap_manifest(data, old_kek=old, new_kek=new, where=key))
                rewrapped += 1
            finally:
                storage.close()
        except FireBackupError as e:
            failed.append({"backup_id": backup.id, "error": str(e).splitlines()[0][:300]})
    if not failed and org.kms_key_previous:
        org.kms_key_previous = None  # nothing is left under the old key
    result = {"kms_key_name": cmd.kms_key_name, "rewrapped": rewrapped, "already_current": current,
              "failed": failed}
    ctx.audit("org.encryption.rotate", "organization", org_id, {k: v for k, v in result.items() if k != "failed"}
              | {"failed": len(failed)}, result="success" if not failed else "failure")
    return result
