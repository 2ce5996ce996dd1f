"""The backup manifest: clear authenticated header + sealed body (docs/format.md, "Manifest").

encode_manifest() seals the full manifest with the backup's data key and wraps that key with the
KEK; read_manifest_summary() reads the public summary with no key (for `list`);
decode_manifest() checks everything and returns the manifest and the unwrapped data key.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from firebackup.compression import DEFAULT_CODEC, DEFAULT_LEVEL
from firebackup.crypto.aead import NONCE_BYTES, TAG_BYTES, manifest_key
from firebackup.crypto.keys import DataKey, KeyEncryptionKey
from firebackup.errors import BadKey, CorruptData, UnsupportedFormat, UsageError, WrongKeyOrTampered

MAGIC = b"FBKM"
FORMAT_VERSION = 1
ENC_NONE = 0
ENC_AES256GCM = 1
MAX_MANIFEST_BYTES = 1 << 30
_SHA = 32


def _utcnow() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class ChunkEntry:
    """One chunk object of a backup; sha256 is the hex SHA-256 of its stored bytes."""

    chunk_id: str
    kind: str = "docs"
    key: str = ""
    records: int = 0
    bytes_raw: int = 0
    bytes_stored: int = 0
    sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ChunkEntry":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Manifest:
    """Everything needed to verify and restore a backup (the sealed body)."""

    backup_id: str
    created_at: str = field(default_factory=_utcnow)
    read_time: str | None = None
    source: dict[str, Any] = field(default_factory=dict)  # {"project": ..., "database": ...}
    collections: list[str] = field(default_factory=list)
    chunks: list[ChunkEntry] = field(default_factory=list)
    documents: int = 0
    auth_users: int = 0
    compression: str = DEFAULT_CODEC
    level: int | None = DEFAULT_LEVEL
    encrypted: bool = False  # set by encode_manifest from whether a data key is given
    crypto: dict[str, Any] = field(default_factory=dict)
    auth_hash_config: dict[str, Any] | None = None
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def bytes_stored(self) -> int:
        return sum(c.bytes_stored for c in self.chunks)

    @property
    def bytes_raw(self) -> int:
        return sum(c.bytes_raw for c in self.chunks)

    def summary(self) -> dict[str, Any]:
        """The public summary written in clear (no secrets, no names beyond the backup id)."""
        return {
            "backup_id": self.backup_id,
            "created_at": self.created_at,
            "read_time": self.read_time,
            "documents": self.documents,
            "bytes_stored": self.bytes_stored,
            "encrypted": self.encrypted,
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["chunks"] = [c.to_dict() for c in self.chunks]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Manifest":
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["chunks"] = [ChunkEntry.from_dict(c) for c in d.get("chunks", [])]
        return cls(**kw)


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def encode_manifest(m: Manifest, *, data_key: DataKey | None, kek: KeyEncryptionKey | None) -> bytes:
    """Serialize (and with a data key, seal) the manifest; both keys or neither."""
    if (data_key is None) != (kek is None):
        raise UsageError("encode_manifest: give both data_key and kek (encrypted) or neither (unencrypted)")
    try:
        bid = m.backup_id.encode("ascii")
    except (UnicodeEncodeError, AttributeError):
        raise UsageError(f"backup id {m.backup_id!r} must be ASCII") from None
    m.encrypted = data_key is not None
    if data_key is not None and kek is not None:
        m.crypto = {
            "aead": "AES-256-GCM",
            "kdf": "HKDF-SHA256",
            "dek_id": data_key.key_id,
            "kek_id": kek.key_id,
            **{k: v for k, v in m.crypto.items() if k not in ("aead", "kdf", "dek_id", "kek_id")},
        }
        wrapped = kek.wrap(data_key, bid)
        header = {
            "backup_id": m.backup_id,
            "dek_id": data_key.key_id,
            "encrypted": True,
            "format_version": FORMAT_VERSION,
            "kek_id": kek.key_id,
            "summary": m.summary(),
            "wrapped_dek": base64.b64encode(wrapped).decode("ascii"),
        }
        enc = ENC_AES256GCM
    else:
        header = {
            "backup_id": m.backup_id,
            "dek_id": None,
            "encrypted": False,
            "format_version": FORMAT_VERSION,
            "kek_id": None,
            "summary": m.summary(),
            "wrapped_dek": None,
        }
        enc = ENC_NONE
    try:
        hjson = _json(header)
        body_json = _json(m.to_dict())
    except (TypeError, ValueError) as e:
        raise UsageError(f"manifest of backup {m.backup_id} has a value JSON cannot hold ({e}): use str/int/float/bool/None, lists and dicts") from None
    head = MAGIC + bytes((FORMAT_VERSION, enc)) + len(hjson).to_bytes(4, "big") + hjson
    if data_key is not None:
        nonce = os.urandom(NONCE_BYTES)
        body = nonce + AESGCM(manifest_key(data_key, m.backup_id)).encrypt(nonce, body_json, head)
    else:
        body = body_json
    out = head + len(body).to_bytes(4, "big") + body
    return out + hashlib.sha256(out).digest()


def _split(data: bytes, name: str) -> tuple[int, bytes, dict[str, Any], bytes]:
    """Check structure and the trailing SHA-256; return (enc id, clear head bytes, header, body)."""
    data = bytes(data)
    if len(data) < 4 or data[:4] != MAGIC:
        raise CorruptData("not a FireBackup manifest (bad magic)", where=name)
    if len(data) < 6:
        raise CorruptData("the manifest is truncated", where=name)
    if data[4] != FORMAT_VERSION:
        raise UnsupportedFormat(
            f"manifest format version {data[4]} is not supported (this build reads {FORMAT_VERSION}): upgrade FireBackup",
            where=name,
        )
    if len(data) < 10 + 4 + _SHA:
        raise CorruptData("the manifest is truncated", where=name)
    if hashlib.sha256(data[:-_SHA]).digest() != data[-_SHA:]:
        raise CorruptData("manifest checksum mismatch (the manifest is damaged or truncated)", where=name)
    enc = data[5]
    if enc not in (ENC_NONE, ENC_AES256GCM):
        raise UnsupportedFormat(f"unknown manifest encryption id {enc}: upgrade FireBackup", where=name)
    hlen = int.from_bytes(data[6:10], "big")
    if 10 + hlen + 4 + _SHA > len(data):
        raise CorruptData("manifest header length does not fit", where=name)
    head = data[: 10 + hlen]
    blen = int.from_bytes(data[10 + hlen : 14 + hlen], "big")
    if 14 + hlen + blen + _SHA != len(data):
        raise CorruptData("manifest body length does not fit", where=name)
    body = data[14 + hlen : 14 + hlen + blen]
    try:
        header = json.loads(head[10:].decode("utf-8"))
        if not isinstance(header, dict) or not isinstance(header.get("summary"), dict):
            raise ValueError("header is not an object with a summary")
    except (ValueError, UnicodeDecodeError):
        raise CorruptData("manifest header is not valid JSON", where=name) from None
    if bool(header.get("encrypted")) != (enc == ENC_AES256GCM):
        raise CorruptData("manifest header disagrees with its encryption id", where=name)
    return enc, head, header, body


def read_manifest_summary(data: bytes, *, where: str = "manifest") -> dict[str, Any]:
    """The public summary (backup_id, created_at, read_time, documents, bytes_stored, encrypted).

    Needs no key. Checked against accidental damage (SHA-256) only; decode_manifest authenticates it.
    Also carries kek_id and dek_id so `list`/`show` can say which key a backup needs.
    """
    _, _, header, _ = _split(data, where)
    s = dict(header["summary"])
    s["kek_id"] = header.get("kek_id")
    s["dek_id"] = header.get("dek_id")
    s["format_version"] = header.get("format_version", FORMAT_VERSION)
    return s


def decode_manifest(
    data: bytes, *, kek: KeyEncryptionKey | None, where: str = "manifest", allow_unencrypted: bool = False
) -> tuple[Manifest, DataKey | None]:
    """Check and decode a manifest; return it and (if encrypted) the unwrapped data key.

    Raises BadKey if the manifest is encrypted and no kek is given, and also if a kek is given
    but the manifest is NOT encrypted, unless allow_unencrypted: whoever can write to the bucket
    could otherwise swap in an unencrypted backup under the same id, and a reader holding the
    key would take it without any authentication. WrongKeyOrTampered for the wrong KEK or
    altered bytes, CorruptData / UnsupportedFormat for damaged or unknown input.
    """
    enc, head, header, body = _split(data, where)
    if enc != ENC_AES256GCM and kek is not None and not allow_unencrypted:
        raise BadKey(
            f"{where}: backup {header.get('backup_id')} is NOT encrypted, but a key was given: an unencrypted "
            "backup where an encrypted one is expected may have been swapped in; if you know it was made "
            "without a key, read it with --allow-unencrypted"
        )
    dek: DataKey | None = None
    if enc == ENC_AES256GCM:
        if kek is None:
            raise BadKey(f"{where}: backup {header.get('backup_id')} is encrypted with {header.get('kek_id')}: pass that key (--key-file or --kms-key)")
        bid = header.get("backup_id")
        try:
            wrapped = base64.b64decode(header["wrapped_dek"], validate=True)
            if not isinstance(bid, str):
                raise TypeError("backup_id is not a string")
            bid_bytes = bid.encode("ascii")
        except (KeyError, TypeError, ValueError, binascii.Error, UnicodeEncodeError):
            raise CorruptData("manifest header has no valid wrapped data key", where=where) from None
        if header.get("kek_id") and header["kek_id"] != kek.key_id:
            raise WrongKeyOrTampered(
                f"wrong key, or the data was altered (the backup's key is {header['kek_id']}, given {kek.key_id})",
                where=where,
            )
        dek = kek.unwrap(wrapped, bid_bytes)
        if len(body) < NONCE_BYTES + TAG_BYTES:
            raise CorruptData("manifest body is too short", where=where)
        try:
            body_json = AESGCM(manifest_key(dek, bid)).decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], head)
        except InvalidTag:
            raise WrongKeyOrTampered(where=where) from None
    else:
        body_json = body
    try:
        d = json.loads(body_json.decode("utf-8"))
        m = Manifest.from_dict(d)
    except (ValueError, UnicodeDecodeError, TypeError, AttributeError):
        raise CorruptData("manifest body is not a valid manifest", where=where) from None
    if m.backup_id != header.get("backup_id") or m.summary() != header["summary"]:
        raise CorruptData("manifest header and body disagree", where=where)
    if m.format_version != FORMAT_VERSION:
        raise UnsupportedFormat(f"manifest body format version {m.format_version} is not supported", where=where)
    if dek is not None and m.crypto.get("dek_id") not in (None, dek.key_id):
        raise CorruptData("manifest names a different data key than the one it wraps", where=where)
    return m, dek


def rewrap_manifest(data: bytes, *, old_kek: KeyEncryptionKey, new_kek: KeyEncryptionKey, where: str = "manifest") -> bytes:
    """Key rotation: the same manifest with its data key wrapped by new_kek (chunks stay as they are)."""
    m, dek = decode_manifest(data, kek=old_kek, where=where)
    if dek is None:
        raise UsageError(f"{where}: backup {m.backup_id} is not encrypted: there is no key to rotate")
    return encode_manifest(m, data_key=dek, kek=new_kek)
