"""Sealing secrets at rest (service-account keys, OAuth refresh tokens, storage credentials, webhook secrets).

A sealed token is text: "fbs1." + base64url(binary), binary =
    u8 len(key_id) | key_id | u16 len(wrapped_dek) | wrapped_dek | 12-byte nonce | AES-256-GCM(ciphertext+tag)
Each secret gets its own random data key, wrapped by the master key named by key_id (a local
key from the environment, or a Cloud KMS key). The context (table, column, row id) is bound as
associated data, so a token copied to another row or column does not open. Rotation re-seals
under the current master key while every key in the keyring still opens old tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from typing import Iterable, Protocol, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from firebackup.crypto.keys import KMS_RETRY, KmsClient, kms_call
from firebackup.errors import BadKey, CorruptData, WrongKeyOrTampered
from firebackup.retry import RetryPolicy

PREFIX = "fbs1."


class MasterKey(Protocol):
    """Wraps per-secret data keys. unwrap raises WrongKeyOrTampered when the key or data is wrong."""

    key_id: str

    def wrap(self, dek: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes: ...


class LocalMasterKey:
    """A 32-byte master key held by the process (env or Secret Manager)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise BadKey(f"master key is {len(key)} bytes, not 32; generate 32 random bytes, base64-encoded")
        self._aead = AESGCM(key)
        self.key_id = "local:" + hashlib.sha256(b"firebackup master key id\0" + key).hexdigest()[:16]
        # A separate key for fingerprints, so a fingerprint says nothing about the master key.
        self.fingerprint_key = hmac.new(key, b"firebackup fingerprint key v1", hashlib.sha256).digest()

    def __repr__(self) -> str:
        return f"LocalMasterKey({self.key_id})"

    def wrap(self, dek: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, dek, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:12], wrapped[12:], aad)
        except InvalidTag as e:
            raise WrongKeyOrTampered(where="sealed secret") from e


class KmsMasterKey:
    """A Cloud KMS symmetric key (customer-managed); the client is passed in (a KeyManagementServiceClient).

    Calls go through crypto.keys.kms_call: retried when transient, and reported as what they
    are (KmsAccessDenied, KmsUnavailable, ...); only KMS's "not this key's ciphertext" reads
    as WrongKeyOrTampered.
    """

    def __init__(self, key_name: str, client: KmsClient, *, retry: RetryPolicy = KMS_RETRY) -> None:
        self.key_name = key_name
        self.key_id = "kms:" + key_name
        self._client = client
        self._retry = retry

    def wrap(self, dek: bytes, aad: bytes) -> bytes:
        request = {"name": self.key_name, "plaintext": dek, "additional_authenticated_data": aad}
        resp = kms_call(self._client, "encrypt", request, key_name=self.key_name, retry=self._retry)
        return bytes(resp.ciphertext)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        request = {"name": self.key_name, "ciphertext": wrapped, "additional_authenticated_data": aad}
        try:
            resp = kms_call(self._client, "decrypt", request, key_name=self.key_name, retry=self._retry)
        except WrongKeyOrTampered as e:
            raise WrongKeyOrTampered(where=f"sealed secret (KMS {self.key_name})") from e
        return bytes(resp.plaintext)


def fingerprint(secret: bytes | str, key: bytes) -> str:
    """A short, stable label for a secret, safe to show and log: an HMAC under the server's key.

    Keyed, because whoever sees the label (a Viewer) must not be able to test guesses of a
    low-entropy secret (a webhook secret someone typed) offline against it.
    """
    data = secret.encode() if isinstance(secret, str) else secret
    return "hmac:" + hmac.new(key, data, hashlib.sha256).hexdigest()[:16]


class SealingSettings(Protocol):
    """The settings Sealer.from_settings reads (firebackup.settings.Settings has them)."""

    @property
    def master_key(self) -> bytes | None: ...

    @property
    def old_master_keys(self) -> Sequence[bytes]: ...

    @property
    def kms_key_name(self) -> str | None: ...


class Sealer:
    """Seals with the current master key; opens with any key in the keyring."""

    def __init__(self, current: MasterKey, others: Iterable[MasterKey] = (), *,
                 fingerprint_key: bytes | None = None) -> None:
        self.current = current
        self._keys = {k.key_id: k for k in others}
        self._keys[current.key_id] = current
        if fingerprint_key is None and isinstance(current, LocalMasterKey):
            fingerprint_key = current.fingerprint_key
        self._fingerprint_key = fingerprint_key

    def fingerprint(self, secret: bytes | str) -> str:
        """The keyed label of a secret (see fingerprint())."""
        if self._fingerprint_key is None:
            raise BadKey("no key for secret fingerprints; with FIREBACKUP_KMS_KEY also set FIREBACKUP_MASTER_KEY "
                         "(32 random bytes, base64): it keys the fingerprints")
        return fingerprint(secret, self._fingerprint_key)

    @classmethod
    def from_settings(cls, settings: SealingSettings, kms_client: KmsClient | None = None) -> "Sealer":
        """KMS key when configured (client built lazily unless given), else the local master key."""
        others = [LocalMasterKey(k) for k in settings.old_master_keys]
        if settings.kms_key_name:
            if kms_client is None:
                from google.cloud import kms

                kms_client = kms.KeyManagementServiceClient()
            local = LocalMasterKey(settings.master_key) if settings.master_key else None
            if local is not None:
                others.append(local)
            return cls(KmsMasterKey(settings.kms_key_name, kms_client), others,
                       fingerprint_key=local.fingerprint_key if local is not None else None)
        if not settings.master_key:
            raise BadKey(
                "no master key for sealing secrets; set FIREBACKUP_MASTER_KEY (32 random bytes, base64) "
                "or FIREBACKUP_KMS_KEY"
            )
        return cls(LocalMasterKey(settings.master_key), others)

    def seal(self, plaintext: bytes | str, context: str) -> str:
        data = plaintext.encode() if isinstance(plaintext, str) else plaintext
        key = self.current
        kid = key.key_id.encode()
        aad = _aad(kid, context)
        dek = AESGCM.generate_key(bit_length=256)
        wrapped = key.wrap(dek, aad)
        nonce = os.urandom(12)
        body = AESGCM(dek).encrypt(nonce, data, aad)
        blob = bytes([len(kid)]) + kid + struct.pack(">H", len(wrapped)) + wrapped + nonce + body
        return PREFIX + base64.urlsafe_b64encode(blob).decode().rstrip("=")

    def open(self, token: str, context: str) -> bytes:
        kid, wrapped, nonce, body = _parse(token)
        key = self._keys.get(kid.decode("utf-8", "replace"))
        if key is None:
            raise WrongKeyOrTampered(
                f"sealed with master key {kid.decode('utf-8', 'replace')!r}, which is not configured; "
                "add it to FIREBACKUP_OLD_MASTER_KEYS",
                where="sealed secret",
            )
        aad = _aad(kid, context)
        dek = key.unwrap(wrapped, aad)
        try:
            return AESGCM(dek).decrypt(nonce, body, aad)
        except InvalidTag as e:
            raise WrongKeyOrTampered(where="sealed secret") from e

    def key_id_of(self, token: str) -> str:
        return _parse(token)[0].decode("utf-8", "replace")

    def reseal(self, token: str, context: str) -> str | None:
        """The token sealed under the current key, or None if it already is."""
        if self.key_id_of(token) == self.current.key_id:
            return None
        return self.seal(self.open(token, context), context)


def _aad(kid: bytes, context: str) -> bytes:
    return b"fbs1\0" + kid + b"\0" + context.encode()


def _parse(token: str) -> tuple[bytes, bytes, bytes, bytes]:
    if not isinstance(token, str) or not token.startswith(PREFIX):
        raise CorruptData("not a sealed secret (missing fbs1. prefix)", where="sealed secret")
    try:
        raw = token[len(PREFIX):]
        blob = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        n = blob[0]
        kid = blob[1 : 1 + n]
        (wl,) = struct.unpack(">H", blob[1 + n : 3 + n])
        wrapped = blob[3 + n : 3 + n + wl]
        rest = blob[3 + n + wl :]
    except (ValueError, IndexError, struct.error) as e:
        raise CorruptData("malformed sealed secret", where="sealed secret") from e
    if len(kid) != n or len(wrapped) != wl or len(rest) < 12 + 16:
        raise CorruptData("sealed secret is truncated", where="sealed secret")
    return kid, wrapped, rest[:12], rest[12:]


__all__ = ["MasterKey", "LocalMasterKey", "KmsMasterKey", "Sealer", "fingerprint"]
