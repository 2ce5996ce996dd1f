"""Key derivation and nonce/AAD construction for chunks and manifests (docs/format.md, "Keys")."""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from firebackup.crypto.keys import DataKey

TAG_BYTES = 16
NONCE_BYTES = 12
SALT_BYTES = 32
CHUNK_KEY_INFO = b"firebackup chunk key v1"
MANIFEST_KEY_INFO = b"firebackup manifest key v1"

_NONCE = struct.Struct(">IQ")
_INDEX_FINAL = struct.Struct(">QB")


def _hkdf(ikm: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def chunk_key(dek: DataKey, salt: bytes) -> bytes:
    """K_c = HKDF-SHA256(DEK, salt, "firebackup chunk key v1")."""
    return _hkdf(dek.key, salt, CHUNK_KEY_INFO)


def manifest_key(dek: DataKey, backup_id: str) -> bytes:
    """K_m = HKDF-SHA256(DEK, no salt, "firebackup manifest key v1" || backup_id)."""
    return _hkdf(dek.key, None, MANIFEST_KEY_INFO + backup_id.encode("ascii"))


def frame_nonce(index: int) -> bytes:
    """12-byte nonce for frame `index`: 4 zero bytes then u64 index."""
    return _NONCE.pack(0, index)


def frame_aad_suffix(index: int, final: bool) -> bytes:
    """u64 index || u8 final flag; the AAD is the chunk header followed by this."""
    return _INDEX_FINAL.pack(index, 1 if final else 0)


CHANGE_KEY_INFO = b"firebackup pitr change key v1"


def change_key(dek: DataKey) -> bytes:
    """K_p = HKDF-SHA256(DEK, no salt, "firebackup pitr change key v1"): seals captured changes at rest."""
    return _hkdf(dek.key, None, CHANGE_KEY_INFO)
