"""A Cloud KMS client fake that subclasses the port (crypto.keys.KmsClient), for unit tests."""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.api_core import exceptions as gexc

from firebackup.crypto.keys import KmsClient


class FakeKmsClient(KmsClient):
    """Behaves like KeyManagementServiceClient for encrypt/decrypt: unknown key -> NotFound,
    denied -> PermissionDenied, bad ciphertext or AAD -> InvalidArgument."""

    def __init__(self, names: list[str], *, denied: bool = False):
        import os

        self.keys = {n: os.urandom(32) for n in names}
        self.denied = denied
        self.calls: list[str] = []

    def _key(self, name: str) -> bytes:
        if self.denied:
            raise gexc.PermissionDenied("Permission 'cloudkms.cryptoKeyVersions.useToEncrypt' denied")
        if name not in self.keys:
            raise gexc.NotFound(f"CryptoKey {name} not found.")
        return self.keys[name]

    def encrypt(self, request, *, retry=None, timeout=None):
        import os
        from types import SimpleNamespace

        self.calls.append("encrypt")
        k = self._key(request["name"])
        nonce = os.urandom(12)
        ct = nonce + AESGCM(k).encrypt(nonce, request["plaintext"], request.get("additional_authenticated_data") or None)
        return SimpleNamespace(ciphertext=ct, verified_plaintext_crc32c="plaintext_crc32c" in request)

    def decrypt(self, request, *, retry=None, timeout=None):
        from types import SimpleNamespace

        self.calls.append("decrypt")
        k = self._key(request["name"])
        ct = request["ciphertext"]
        try:
            pt = AESGCM(k).decrypt(ct[:12], ct[12:], request.get("additional_authenticated_data") or None)
        except (InvalidTag, ValueError):
            raise gexc.InvalidArgument("Decryption failed: the ciphertext is invalid.") from None
        return SimpleNamespace(plaintext=pt)


KMS_NAME = "projects/p/locations/global/keyRings/r/cryptoKeys/k"
