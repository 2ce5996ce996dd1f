"""TEST ONLY: a stand-in for Cloud KMS that keeps its keys as files in one local folder.

NOT a KMS and never for production: whoever can read the folder holds every key. It exists so the
CLI and the control plane can run their BYOK paths (wrap, unwrap, rotation, a deleted key) on a
machine without Google Cloud. It is chosen by FIREBACKUP_KMS=fake:<folder>, which settings.py
refuses unless FIREBACKUP_ALLOW_FAKE_KMS=1 is set too.

It answers like KeyManagementServiceClient (the KmsClient port) and fails with the same
google.api_core exceptions: a key that was never created or was deleted -> NotFound, ciphertext or
associated data that is not this key's -> InvalidArgument. Keys exist only once create_key() made
them, as in Cloud KMS, so a mistyped key name fails instead of minting a key.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from firebackup.crypto.keys import KEY_BYTES, KmsClient

class LocalFolderKms(KmsClient):
    """TEST ONLY: crypto keys as 32-byte files in `folder`, one per key name (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)

    def key_path(self, name: str) -> Path:
        """The file that holds key `name` (named by a digest: key names contain slashes)."""
        return self.folder / (hashlib.sha256(name.encode()).hexdigest()[:32] + ".key")

    def create_key(self, name: str) -> None:
        """Create crypto key `name` (mode 0600); an existing key is kept."""
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.key_path(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        try:
            os.write(fd, os.urandom(KEY_BYTES))
        finally:
            os.close(fd)

    def delete_key(self, name: str) -> None:
        """Destroy key `name`: what it wrapped can no longer be unwrapped."""
        self.key_path(name).unlink(missing_ok=True)

    def _key(self, name: str) -> bytes:
        from google.api_core import exceptions as gexc

        try:
            key = self.key_path(name).read_bytes()
        except FileNotFoundError:
            raise gexc.NotFound(f"CryptoKey {name} not found.") from None  # type: ignore[no-untyped-call]
        if len(key) != KEY_BYTES:
            raise gexc.FailedPrecondition(  # type: ignore[no-untyped-call]
                f"CryptoKey {name} is damaged in the test-only KMS folder.")
        return key

    def encrypt(self, request: dict[str, Any], *, retry: Any = None, timeout: float | None = None) -> Any:
        import google_crc32c

        key = self._key(request["name"])
        nonce = os.urandom(12)
        ct = nonce + AESGCM(key).encrypt(nonce, request["plaintext"], request.get("additional_authenticated_data"))
        return SimpleNamespace(ciphertext=ct, ciphertext_crc32c=google_crc32c.value(ct),
                               verified_plaintext_crc32c="plaintext_crc32c" in request)

    def decrypt(self, request: dict[str, Any], *, retry: Any = None, timeout: float | None = None) -> Any:
        from google.api_core import exceptions as gexc

        key, ct = self._key(request["name"]), bytes(request["ciphertext"])
        try:
            plain = AESGCM(key).decrypt(ct[:12], ct[12:], request.get("additional_authenticated_data"))
        except (InvalidTag, ValueError):
            raise gexc.InvalidArgument(  # type: ignore[no-untyped-call]
                "Decryption failed: the ciphertext is invalid.") from None
        return SimpleNamespace(plaintext=plain)


__all__ = ["LocalFolderKms"]
