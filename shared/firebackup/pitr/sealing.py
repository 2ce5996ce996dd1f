"""Captured documents sealed at rest with a project's PITR data key (docs/format.md, "Captured changes").

Each project with PITR has one data key (DEK), wrapped by the organization's key-encryption key
like a backup's (BYOK included) with context "pitr:" + project id, so a process unwraps it once
and seals every event with no KMS call. A sealed document is nonce (12, random) ‖ AES-GCM(K_p,
nonce, document, aad), where the AAD binds it to its project, path and version instant: a row
copied onto another document or version does not open.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from firebackup.crypto.aead import NONCE_BYTES, change_key
from firebackup.crypto.keys import DataKey, KeyEncryptionKey
from firebackup.errors import WrongKeyOrTampered

_AAD = b"firebackup pitr change v1\x00"


def wrap_context(project_id: str) -> bytes:
    """What a project's PITR data key is wrapped for: it unwraps for no other project or backup."""
    return b"pitr:" + project_id.encode("ascii")


def _aad(project_id: str, path: str, version: int) -> bytes:
    return b"\x00".join((_AAD + project_id.encode("ascii"), path.encode("utf-8"), str(version).encode("ascii")))


class ChangeSealer:
    """Seals and opens captured documents of one project under its PITR data key."""

    __slots__ = ("project_id", "key_id", "_aead")

    def __init__(self, project_id: str, dek: DataKey):
        self.project_id = project_id
        self.key_id = dek.key_id
        self._aead = AESGCM(change_key(dek))

    @classmethod
    def unwrap(cls, project_id: str, wrapped: bytes, kek: KeyEncryptionKey) -> "ChangeSealer":
        return cls(project_id, kek.unwrap(wrapped, wrap_context(project_id)))

    def seal(self, path: str, version: int, document: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, document, _aad(self.project_id, path, version))

    def open(self, path: str, version: int, sealed: bytes) -> bytes:
        try:
            return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:],
                                      _aad(self.project_id, path, version))
        except InvalidTag:
            raise WrongKeyOrTampered(f"captured change of {path} at {version}: wrong key, or the data was altered") \
                from None
