"""Every error FireBackup raises on purpose, in one place.

FireBackupError                 base; str(e) is one line: what, where, what to do
├── UsageError                  bad usage or bad input; the CLI exits 2
│   ├── BadURL                  a storage or source URL we cannot use
│   ├── BadKey                  a key file that is missing, unreadable or malformed
│   ├── BackupNotFound          no backup with that id at that location
│   └── SourceUnavailable       the Firestore / Auth endpoint cannot be reached
├── StorageError                a storage operation failed (no vendor exception leaves storage/)
│   ├── ObjectNotFound          the object does not exist
│   ├── ObjectExists            create-if-absent found the object already there
│   ├── PermanentStorageError   retrying will not help (403, missing bucket, bad credentials)
│   │   ├── AccessDenied
│   │   └── BucketNotFound
│   └── TransientStorageError   retrying may help (5xx, throttling, connection reset)
├── IntegrityError              stored bytes are not what was written; names chunk and frame
│   ├── WrongKeyOrTampered      authentication failed: "wrong key, or the data was altered"
│   ├── CorruptData             structurally broken (bad magic, bad length, bad record)
│   ├── TruncatedData           the data ends early (missing final frame)
│   └── UnsupportedFormat       a format version or codec id this build does not know
├── SourceError                 reading from or writing to Firestore / Auth failed
│   ├── SnapshotTooOld          read_time fell out of Firestore's version retention
│   └── SourceAccessDenied      the credentials may not read/write that database (CLI exits 2)
└── OperationFailed             the operation ran and did not succeed (CLI exits 1)
"""

from __future__ import annotations


class FireBackupError(Exception):
    """Base class; the message is one line a person can act on."""

    exit_code = 1


class UsageError(FireBackupError):
    exit_code = 2


class BadURL(UsageError):
    pass


class BadKey(UsageError):
    pass


class BackupNotFound(UsageError):
    pass


class SourceUnavailable(UsageError):
    pass


class StorageError(FireBackupError):
    def __init__(self, message: str, *, key: str | None = None):
        super().__init__(message)
        self.key = key


class ObjectNotFound(StorageError):
    def __init__(self, key: str, message: str | None = None):
        super().__init__(message or f"object not found: {key}", key=key)


class ObjectExists(StorageError):
    def __init__(self, key: str, message: str | None = None):
        super().__init__(message or f"object already exists: {key}", key=key)


class PermanentStorageError(StorageError):
    exit_code = 2


class AccessDenied(PermanentStorageError):
    pass


class BucketNotFound(PermanentStorageError):
    pass


class TransientStorageError(StorageError):
    pass


class IntegrityError(FireBackupError):
    """Stored bytes failed a check; `where` names the object, chunk and frame."""

    def __init__(self, message: str, *, where: str | None = None):
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.reason = message


class WrongKeyOrTampered(IntegrityError):
    # Wrong key and altered data are indistinguishable under AEAD; say both.
    exit_code = 2

    def __init__(self, message: str = "wrong key, or the data was altered", *, where: str | None = None):
        super().__init__(message, where=where)


class CorruptData(IntegrityError):
    pass


class TruncatedData(IntegrityError):
    pass


class UnsupportedFormat(IntegrityError):
    exit_code = 2


class SourceError(FireBackupError):
    pass


class SnapshotTooOld(SourceError):
    pass


class SourceAccessDenied(SourceError):
    exit_code = 2


class OperationFailed(FireBackupError):
    exit_code = 1


class TransientError(FireBackupError):
    """Retrying later may succeed (a task queue redelivers the task)."""


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, (TransientError, TransientStorageError))
