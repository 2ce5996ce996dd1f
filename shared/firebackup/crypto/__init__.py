"""AES-256-GCM envelope encryption: data keys, key-encryption keys (local file, Cloud KMS)."""

from firebackup.crypto.keys import DataKey, KeyEncryptionKey, KmsClient, KmsKey, LocalKey

__all__ = ["DataKey", "KeyEncryptionKey", "KmsClient", "KmsKey", "LocalKey"]
