"""Envelope keys: the per-backup data key (DEK) and the key-encryption keys (KEK) that wrap it.

Byte layouts are in docs/format.md ("Keys"). A KEK is a local key file (LocalKey) or a Cloud KMS
key (KmsKey over an injected client). Wrapping binds a context (the backup id), so a wrapped DEK
only unwraps in the manifest it was written for. Key material never appears in repr() or errors.

Cloud KMS calls (kms_call, also used by crypto.secrets) run under a RetryPolicy with the
client's own retry switched off; their errors say what happened: permission denied
(KmsAccessDenied), unreachable or overloaded (KmsUnavailable, transient), a key that does not
exist (BadKey), and "wrong key, or the data was altered" only when KMS says the ciphertext
is not this key's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import stat
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from firebackup.errors import (
    TRANSIENT_CODES,
    BadKey,
    FireBackupError,
    KmsAccessDenied,
    KmsError,
    KmsUnavailable,
    OperationFailed,
    WrongKeyOrTampered,
)
from firebackup.retry import RetryPolicy

KEY_BYTES = 32
_DEK_ID_INFO = b"firebackup data key id v1"
_KEK_ID_INFO = b"firebackup kek id v1"
_WRAP_AAD = b"firebackup dek v1\x00"
WRAP_LOCAL = 0x01
WRAP_KMS = 0x02
KMS_TIMEOUT = 30.0  # seconds per call; the retry policy bounds the whole operation
KMS_RETRY = RetryPolicy(attempts=5, base_delay=0.2, max_delay=5.0, deadline=60.0)


def _fingerprint(key: bytes, info: bytes) -> bytes:
    return hmac.new(key, info, hashlib.sha256).digest()[:16]


def wrap_aad(context: bytes) -> bytes:
    """The associated data a DEK is wrapped under (docs/format.md, "Wrapped DEK")."""
    return _WRAP_AAD + context


class DataKey:
    """A 32-byte per-backup data key; `key_id` is its public fingerprint (32 hex chars)."""

    __slots__ = ("key", "key_id_bytes", "key_id")

    def __init__(self, key: bytes):
        if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
            raise BadKey(f"a data key must be {KEY_BYTES} bytes")
        self.key = bytes(key)
        self.key_id_bytes = _fingerprint(self.key, _DEK_ID_INFO)
        self.key_id = self.key_id_bytes.hex()

    @classmethod
    def generate(cls) -> "DataKey":
        """A fresh random data key."""
        return cls(os.urandom(KEY_BYTES))

    def __repr__(self) -> str:
        return f"DataKey(key_id={self.key_id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataKey) and hmac.compare_digest(self.key, other.key)

    def __hash__(self) -> int:
        return hash(self.key_id)


@runtime_checkable
class KeyEncryptionKey(Protocol):
    """Wraps and unwraps data keys. `key_id` names the KEK (recorded in the manifest)."""

    key_id: str

    def wrap(self, dek: DataKey, context: bytes) -> bytes:
        """Return the wrapped DEK, bound to `context` (the backup id)."""

    def unwrap(self, wrapped: bytes, context: bytes) -> DataKey:
        """Return the DEK. Raises WrongKeyOrTampered if this KEK did not wrap it for `context`."""


class LocalKey:
    """A KEK held in a local key file: one line, base64 of 32 random bytes."""

    __slots__ = ("_key", "key_id", "source")

    def __init__(self, key: bytes, *, source: str = "key"):
        if len(key) != KEY_BYTES:
            raise BadKey(f"{source}: a key must be {KEY_BYTES} bytes, got {len(key)}: create one with `firebackup keygen`")
        self._key = bytes(key)
        self.key_id = "local:" + _fingerprint(self._key, _KEK_ID_INFO).hex()
        self.source = source

    @staticmethod
    def generate_text() -> str:
        """A new key file's content: base64 of 32 random bytes and a newline."""
        return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii") + "\n"

    @classmethod
    def from_text(cls, text: str, *, source: str = "key") -> "LocalKey":
        """Parse key file content. Raises BadKey if it is not base64 of 32 bytes."""
        line = text.strip()
        try:
            raw = base64.b64decode(line.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise BadKey(f"{source}: not a FireBackup key (expected one line of base64): create one with `firebackup keygen`") from None
        return cls(raw, source=source)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> "LocalKey":
        """Read a key file. Raises BadKey if it is missing, unreadable or malformed."""
        p = Path(path)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise BadKey(f"key file {p} does not exist: pass the right --key, or create one with `firebackup keygen`") from None
        except OSError as e:
            raise BadKey(f"key file {p} cannot be read ({e.strerror}): check its permissions") from None
        if len(data) > 1024:
            raise BadKey(f"key file {p} is too large to be a FireBackup key: pass the right --key")
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise BadKey(f"key file {p} is not a FireBackup key (not ASCII): pass the right --key") from None
        return cls.from_text(text, source=f"key file {p}")

    def wrap(self, dek: DataKey, context: bytes) -> bytes:
        nonce = os.urandom(12)
        return bytes((WRAP_LOCAL,)) + nonce + AESGCM(self._key).encrypt(nonce, dek.key, wrap_aad(context))

    def unwrap(self, wrapped: bytes, context: bytes) -> DataKey:
        if len(wrapped) != 1 + 12 + KEY_BYTES + 16 or wrapped[0] != WRAP_LOCAL:
            raise WrongKeyOrTampered(
                "wrong key, or the data was altered (the data key was not wrapped by a local key file)",
                where=self.source,
            )
        try:
            raw = AESGCM(self._key).decrypt(wrapped[1:13], wrapped[13:], wrap_aad(context))
        except InvalidTag:
            raise WrongKeyOrTampered(where=self.source) from None
        return DataKey(raw)

    def __repr__(self) -> str:
        return f"LocalKey(key_id={self.key_id!r})"


def write_key_file(path: str | os.PathLike[str], text: str, *, overwrite: bool = False) -> None:
    """Create a key file readable by its owner only (mode 0600); never replaces one unless asked."""
    p = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(p, flags, 0o600)
    except FileExistsError:
        raise BadKey(f"key file {p} already exists: choose another path (a key cannot be replaced, backups need it)") from None
    except OSError as e:
        raise BadKey(f"key file {p} cannot be created ({e.strerror})") from None
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("ascii"))
    finally:
        os.close(fd)


def key_file_is_private(path: str | os.PathLike[str]) -> bool:
    """True if no one but the owner can read or write the key file (for a CLI warning)."""
    mode = os.stat(path).st_mode
    return not mode & (stat.S_IRWXG | stat.S_IRWXO)


class KmsClient(Protocol):
    """The slice of google.cloud.kms.KeyManagementServiceClient that KmsKey uses (the port).

    Requests and responses are as in the real client: encrypt({"name", "plaintext",
    "additional_authenticated_data", "plaintext_crc32c"}) -> obj with .ciphertext (and optionally
    .verified_plaintext_crc32c); decrypt({"name", "ciphertext", "additional_authenticated_data"})
    -> obj with .plaintext. retry=None switches the client's own retry off (ours wraps the
    call); timeout is per call. Errors are google.api_core exceptions.
    """

    def encrypt(self, request: dict[str, Any], *, retry: Any = None, timeout: float | None = None) -> Any: ...

    def decrypt(self, request: dict[str, Any], *, retry: Any = None, timeout: float | None = None) -> Any: ...


class CloudKmsClient(KmsClient):
    """The real Cloud KMS client (Application Default Credentials), made on its first call, never before."""

    def __init__(self) -> None:
        self._client: Any = None

    def _real(self) -> Any:
        if self._client is None:
            from google.cloud import kms

            self._client = kms.KeyManagementServiceClient()
        return self._client

    def encrypt(self, request: dict[str, Any], *, retry: Any = None, timeout: float | None = None) -> Any:
        return self._real().encrypt(request=request, retry=retry, timeout=timeout)

    def decrypt(self, request: dict[str, Any], *, retry: Any = None, timeout: float | None = None) -> Any:
        return self._real().decrypt(request=request, retry=retry, timeout=timeout)


def _kms_status(e: Exception) -> str | None:
    """The canonical status name of a Cloud KMS client error, if it has one."""
    import google.auth.exceptions
    import requests

    status = getattr(e, "grpc_status_code", None)  # google.api_core exceptions carry it per class
    if status is not None:
        return str(status.name)
    if isinstance(e, (google.auth.exceptions.TransportError, requests.exceptions.ConnectionError, ConnectionError)):
        return "UNAVAILABLE"
    return None


def _kms_error(e: Exception, method: str, key_name: str) -> FireBackupError:
    """One line saying what KMS did, classified by its status (errors.TRANSIENT_CODES)."""
    code = _kms_status(e)
    where = f"KMS key {key_name}"
    if code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        return KmsAccessDenied(
            f"{where}: permission denied for {method}: grant roles/cloudkms.cryptoKeyEncrypterDecrypter"
        )
    if code == "NOT_FOUND":
        return BadKey(f"{where} does not exist: check the key name")
    if code == "INVALID_ARGUMENT" and method == "decrypt":
        return WrongKeyOrTampered(where=where)  # KMS: the ciphertext or its context is not this key's
    text = " ".join(str(getattr(e, "message", None) or e).split())[:300]
    if code in TRANSIENT_CODES:
        return KmsUnavailable(f"KMS {method} with {key_name} failed ({code}: {text}): retry later")
    return KmsError(
        f"KMS {method} with {key_name} was refused ({code or type(e).__name__}: {text}): "
        "check the key is enabled, symmetric, and its version not destroyed"
    )


def kms_call(client: KmsClient, method: str, request: dict[str, Any], *, key_name: str, retry: RetryPolicy) -> Any:
    """client.<method>(request) under `retry`; vendor errors become ours (see _kms_error)."""
    call = client.encrypt if method == "encrypt" else client.decrypt

    def attempt() -> Any:
        try:
            return call(request, retry=None, timeout=KMS_TIMEOUT)
        except FireBackupError:
            raise
        except Exception as e:  # google.api_core / transport errors stay here
            raise _kms_error(e, method, key_name) from e

    return retry.call(attempt)


class KmsKey:
    """A KEK in Cloud KMS; `name` is the crypto key resource name, `client` a KmsClient."""

    __slots__ = ("name", "client", "key_id", "retry")

    def __init__(self, name: str, client: KmsClient, *, retry: RetryPolicy = KMS_RETRY):
        if not name.startswith("projects/") or "/cryptoKeys/" not in name:
            raise BadKey(
                f"KMS key name {name!r} is not of the form projects/P/locations/L/keyRings/R/cryptoKeys/K"
            )
        if "/cryptoKeyVersions/" in name:
            raise BadKey(f"KMS key name {name!r} names a key version: give the crypto key, KMS picks the version")
        self.name = name
        self.client = client
        self.key_id = "kms:" + name
        self.retry = retry

    def _call(self, method: str, request: dict[str, Any]) -> Any:
        return kms_call(self.client, method, request, key_name=self.name, retry=self.retry)

    def wrap(self, dek: DataKey, context: bytes) -> bytes:
        import google_crc32c

        resp = self._call(
            "encrypt",
            {
                "name": self.name,
                "plaintext": dek.key,
                "additional_authenticated_data": wrap_aad(context),
                "plaintext_crc32c": google_crc32c.value(dek.key),
            },
        )
        # KMS's end-to-end integrity fields: a response that was damaged in transit is refused.
        if getattr(resp, "verified_plaintext_crc32c", True) is False:
            raise OperationFailed(f"KMS encrypt with {self.name}: request was damaged in transit: retry")
        ct = bytes(resp.ciphertext)
        crc = getattr(resp, "ciphertext_crc32c", None)
        if crc is not None and int(crc) != google_crc32c.value(ct):
            raise OperationFailed(f"KMS encrypt with {self.name}: response was damaged in transit: retry")
        return bytes((WRAP_KMS,)) + ct

    def unwrap(self, wrapped: bytes, context: bytes) -> DataKey:
        if len(wrapped) < 2 or wrapped[0] != WRAP_KMS:
            raise WrongKeyOrTampered(
                "wrong key, or the data was altered (the data key was not wrapped by Cloud KMS)",
                where=f"KMS key {self.name}",
            )
        resp = self._call(
            "decrypt",
            {"name": self.name, "ciphertext": wrapped[1:], "additional_authenticated_data": wrap_aad(context)},
        )
        raw = bytes(resp.plaintext)
        if len(raw) != KEY_BYTES:
            raise WrongKeyOrTampered(where=f"KMS key {self.name}")
        return DataKey(raw)

    def __repr__(self) -> str:
        return f"KmsKey({self.name!r})"
