"""Every error FireBackup raises on purpose, in one place.

FireBackupError                   base; str(e) is one line: what, where, what to do; exits 1
├── UsageError                    bad usage or bad input; the CLI exits 2
│   ├── BadURL                    a storage or source URL we cannot use
│   │   └── EgressRefused         a tenant-chosen host or address the egress guard refuses
│   ├── BadKey                    a key file or KMS key name that is missing, unreadable or malformed
│   └── BackupNotFound            no backup with that id at that location
├── TransientError                retrying may help (is_transient); exits 1. A marker: every
│                                 transient error below is also one of these
├── StorageError                  a storage operation failed (no vendor exception leaves storage/)
│   ├── ObjectNotFound            the object does not exist
│   ├── ObjectExists              create-if-absent found the object already there
│   ├── PermanentStorageError     retrying will not help (403, missing bucket, bad credentials); exits 2
│   │   ├── AccessDenied
│   │   └── BucketNotFound
│   └── TransientStorageError     + TransientError: 5xx, throttling, connection reset
├── SourceError                   Firestore / Auth refused or failed a call; grpc_code names the status
│   ├── PermanentSourceError      retrying will not help (INVALID_ARGUMENT, FAILED_PRECONDITION, ...)
│   │   ├── SourceAccessDenied    PERMISSION_DENIED, UNAUTHENTICATED, no credentials; exits 2
│   │   ├── SourceNotFound        NOT_FOUND: no such project or database; exits 2
│   │   ├── SnapshotTooOld        read_time fell out of Firestore's version retention
│   │   └── NotSupportedByServer  UNIMPLEMENTED (the emulator, e.g. for PartitionQuery)
│   └── TransientSourceError      + TransientError: DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED,
│       │                         INTERNAL, UNKNOWN
│       └── SourceUnavailable     UNAVAILABLE: the endpoint cannot be reached or is overloaded
├── KmsError                      Cloud KMS refused or failed a wrap/unwrap (key disabled, ...)
│   ├── KmsAccessDenied           the credentials may not use the key; exits 2
│   └── KmsUnavailable            + TransientError: Cloud KMS unreachable, overloaded or timed out
├── QueueError                    the task queue (Cloud Tasks) refused a task: missing queue, no permission
│   └── QueueUnavailable          + TransientError: the queue service unreachable, overloaded or timed out
├── DatabaseUnavailable           + TransientError: the metadata database refused or dropped the connection,
│                                 or none came free in the pool in time (db/session.py translates)
├── IntegrityError                stored bytes are not what was written; names chunk and frame
│   ├── WrongKeyOrTampered        authentication failed: "wrong key, or the data was altered"
│   ├── CorruptData               structurally broken (bad magic, bad length, bad record)
│   ├── TruncatedData             the data ends early (missing final frame)
│   └── UnsupportedFormat         a format version or codec id this build does not know
└── OperationFailed               the operation ran and did not succeed

Status codes (gRPC canonical names, which Firestore, Auth and Cloud KMS share) are classified
here once, by TRANSIENT_CODES and source_error_class(); status_of_http() names an HTTP status.
"""

from __future__ import annotations


class FireBackupError(Exception):
    """Base class; the message is one line a person can act on."""

    exit_code = 1


class UsageError(FireBackupError):
    exit_code = 2


class BadURL(UsageError):
    pass


class EgressRefused(BadURL):
    """An outbound call to a host a tenant chose would reach the platform's own network (egress.py)."""


class BadKey(UsageError):
    pass


class BackupNotFound(UsageError):
    pass


class TransientError(FireBackupError):
    """Retrying the same call may succeed; the retry policy (firebackup.retry) retries only these."""

    exit_code = 1

    def gave_up(self, attempts: int, seconds: float) -> "TransientError":
        """This error, its message now saying how long it was retried (raised when retries run out)."""
        self.args = (f"{self} (gave up after {attempts} attempts in {seconds:.1f} s)",)
        return self


def is_transient(exc: BaseException) -> bool:
    """True for our errors after which the same call may succeed; False for everything else."""
    return isinstance(exc, TransientError)


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


class TransientStorageError(StorageError, TransientError):
    pass


class SourceError(FireBackupError):
    """A Firestore or Auth call failed; grpc_code is its canonical status name ("UNAVAILABLE"), if any."""

    def __init__(self, message: str, *, grpc_code: str | None = None):
        super().__init__(message)
        self.grpc_code = grpc_code


class PermanentSourceError(SourceError):
    pass


class SourceAccessDenied(PermanentSourceError):
    exit_code = 2


class SourceNotFound(PermanentSourceError):
    exit_code = 2


class SnapshotTooOld(PermanentSourceError):
    pass


class NotSupportedByServer(PermanentSourceError):
    pass


class TransientSourceError(SourceError, TransientError):
    pass


class SourceUnavailable(TransientSourceError):
    pass


class KmsError(FireBackupError):
    pass


class KmsAccessDenied(KmsError):
    exit_code = 2


class KmsUnavailable(KmsError, TransientError):
    pass


class QueueError(FireBackupError):
    pass


class QueueUnavailable(QueueError, TransientError):
    pass


class DatabaseUnavailable(TransientError):
    """The metadata database is at its limit or unreachable; the unit of work was rolled back whole."""


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


class OperationFailed(FireBackupError):
    exit_code = 1


# Status codes after which the same call may succeed. UNKNOWN is here because gRPC reports a
# stream reset by a proxy or load balancer ("Stream removed") as UNKNOWN; INTERNAL because
# every call we retry is a read or an idempotent write (Firestore's own retry guidance).
TRANSIENT_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "INTERNAL", "UNKNOWN"})

_SOURCE_ERRORS: dict[str, type[SourceError]] = {
    "UNAVAILABLE": SourceUnavailable,
    "PERMISSION_DENIED": SourceAccessDenied,
    "UNAUTHENTICATED": SourceAccessDenied,
    "NOT_FOUND": SourceNotFound,
    "UNIMPLEMENTED": NotSupportedByServer,
}


def source_error_class(code: str | None) -> type[SourceError]:
    """The SourceError subclass for a canonical status name ("UNAVAILABLE"); the one classification."""
    if code is None:
        return PermanentSourceError
    known = _SOURCE_ERRORS.get(code)
    if known is not None:
        return known
    return TransientSourceError if code in TRANSIENT_CODES else PermanentSourceError


_HTTP_STATUS = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 409: "ABORTED",
    412: "FAILED_PRECONDITION", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 501: "UNIMPLEMENTED",
    502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}


def status_of_http(status: int) -> str:
    """The canonical status name of an HTTP error status (Google's mapping; other 5xx are
    INTERNAL, anything else FAILED_PRECONDITION)."""
    return _HTTP_STATUS.get(status) or ("INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
