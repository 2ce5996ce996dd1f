"""The Storage contract every backend implements (file, memory, s3, gs) and wrappers honour.

Keys are '/'-separated relative paths below the location's prefix ("backups/ID/manifest").
A key never starts or ends with '/', never contains '.' or '..' or empty segments, NUL,
control characters or backslashes, and is at most 1024 UTF-8 bytes; backends reject such
keys with UsageError (check_key). Every method raises only firebackup.errors types: vendor
exceptions are translated inside the backend where they arise. Keys sort by code point,
which is also their UTF-8 byte order, the order S3 and GCS list in.

Transient failures (TransientStorageError) are NOT retried by backends: retries live in one
wrapper, storage.retry.RetryingStorage. Backends therefore keep every operation safe to
repeat: put replaces, delete ignores absence, and a streaming writer keeps what it was given
when a part fails (see ObjectWriter).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO, Iterable, Iterator, Protocol, runtime_checkable

from firebackup.errors import UsageError

MAX_KEY_BYTES = 1024


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    updated: dt.datetime | None = None
    etag: str | None = None


@runtime_checkable
class ObjectWriter(Protocol):
    """A streaming upload. Nothing is visible at `key` until close() returns.

    Used as a context manager: leaving the block normally commits, leaving it with an
    exception aborts (any partial upload is discarded, nothing appears at the key).

    Retry contract: write() always takes the bytes it is given. If write() or close()
    raises TransientStorageError the writer stays usable and keeps every byte not yet
    stored; calling write(b"") (or close()) again resumes with the part that failed, so a
    retry never re-sends parts already stored and never duplicates data. Any other error
    leaves the writer broken: abort() it.

    `parts` counts the parts sent through the multipart/resumable path (0 when the object
    went up in one request), so callers and tests can tell which path was taken.
    """

    # Read-only for callers: a wrapper may forward them as properties.
    @property
    def key(self) -> str:
        """The key the object appears at once close() returns."""

    @property
    def parts(self) -> int:
        """Parts stored so far through the multipart/resumable path."""

    def write(self, data: bytes) -> None:
        """Append bytes; large uploads go out in parts (multipart / resumable)."""

    def close(self) -> ObjectInfo:
        """Commit the object and return its info; after this the object is readable.

        Calling close() again after success returns the same info. With if_absent, raises
        ObjectExists (and stores nothing) if an object appeared at key meanwhile.
        """

    def abort(self) -> None:
        """Discard everything written; safe to call more than once; never raises."""

    def __enter__(self) -> "ObjectWriter": ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


@runtime_checkable
class Storage(Protocol):
    url: str  # the location, as given to open_storage(), without credentials

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> ObjectInfo:
        """Store data at key, replacing any object there, atomically.

        With if_absent=True the write succeeds only if no object exists at key, and raises
        ObjectExists otherwise (create-if-absent, used for locks and write-once manifests).
        """

    def open_write(self, key: str, *, if_absent: bool = False) -> ObjectWriter:
        """Start a streaming upload to key (see ObjectWriter); memory stays bounded."""

    def get(self, key: str) -> bytes:
        """Return the object's bytes. Raises ObjectNotFound if absent."""

    def open_read(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        """Return a readable stream of the object (or of the byte range asked for).

        Raises ObjectNotFound if absent. A range past the end yields fewer (or no) bytes.
        The caller closes the stream.
        """

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Return `length` bytes from `start` (fewer at the end of the object, b"" past it).

        Raises ObjectNotFound if absent, even when length is 0.
        """

    def stat(self, key: str) -> ObjectInfo:
        """Return size and metadata. Raises ObjectNotFound if absent."""

    def exists(self, key: str) -> bool:
        """True if an object is at key."""

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with prefix, in key order, page by page.

        prefix is a plain string prefix ("backups/" or "backups/2026"), not a folder.
        With start_after, only keys greater than it are yielded (resuming a listing).
        """

    def delete(self, key: str) -> None:
        """Remove the object; removing an absent object is not an error."""

    def close(self) -> None:
        """Release clients and connections."""


def check_key(key: str) -> str:
    """Return key if it is a valid object key, else raise UsageError saying why."""
    if not isinstance(key, str) or not key:
        raise UsageError(f"bad storage key {key!r}: must be a non-empty string")
    why = _key_problem(key)
    if why:
        raise UsageError(f"bad storage key {key!r}: {why}")
    return key


def check_prefix(prefix: str) -> str:
    """Return prefix if it can be listed (a key, a key ending in '/', or ''), else UsageError."""
    if not isinstance(prefix, str):
        raise UsageError(f"bad storage prefix {prefix!r}: must be a string")
    if prefix == "":
        return prefix
    body = prefix[:-1] if prefix.endswith("/") else prefix
    why = _key_problem(body) if body else "must not be '/'"
    if why:
        raise UsageError(f"bad storage prefix {prefix!r}: {why}")
    return prefix


def check_range(start: int, length: int | None) -> None:
    """Raise UsageError unless start >= 0 and length is None or >= 0."""
    if start < 0 or (length is not None and length < 0):
        raise UsageError(f"bad byte range start={start} length={length}: both must be >= 0")


def _key_problem(key: str) -> str | None:
    if key.startswith("/"):
        return "must be relative (no leading '/')"
    if key.endswith("/"):
        return "must not end with '/'"
    if any(c < " " or c == "\x7f" for c in key):
        return "must not contain NUL or control characters"
    if "\\" in key:
        return "must not contain '\\'"
    for seg in key.split("/"):
        if seg in ("", ".", ".."):
            return "must not contain empty, '.' or '..' segments"
    try:
        n = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return "must be valid Unicode (no lone surrogates)"
    if n > MAX_KEY_BYTES:
        return f"longer than {MAX_KEY_BYTES} UTF-8 bytes"
    return None


def iter_bytes(stream: BinaryIO, size: int = 1 << 20) -> Iterable[bytes]:
    """Yield a stream's bytes in pieces of at most `size`."""
    while True:
        piece = stream.read(size)
        if not piece:
            return
        yield piece
