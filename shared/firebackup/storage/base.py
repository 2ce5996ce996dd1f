"""The Storage contract every backend implements (file, memory, s3, gs) and wrappers honour.

Keys are '/'-separated relative paths below the location's prefix ("backups/ID/manifest").
A key never starts with '/', never contains '..' or empty segments; backends reject such keys
with UsageError. Every method raises only firebackup.errors types: vendor exceptions are
translated inside the backend where they arise.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Iterator, Protocol, runtime_checkable


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
    """

    def write(self, data: bytes) -> None:
        """Append bytes; large uploads go out in parts (multipart / resumable)."""

    def close(self) -> ObjectInfo:
        """Commit the object and return its info; after this the object is readable."""

    def abort(self) -> None:
        """Discard everything written; safe to call more than once."""

    def __enter__(self) -> "ObjectWriter": ...

    def __exit__(self, exc_type, exc, tb) -> None: ...


@runtime_checkable
class Storage(Protocol):
    url: str  # the location, as given to open_storage(), without credentials

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> ObjectInfo:
        """Store data at key, replacing any object there, atomically.

        With if_absent=True the write succeeds only if no object exists at key, and raises
        ObjectExists otherwise (create-if-absent, used for locks and write-once manifests).
        """

    def open_write(self, key: str) -> ObjectWriter:
        """Start a streaming upload to key (see ObjectWriter); memory stays bounded."""

    def get(self, key: str) -> bytes:
        """Return the object's bytes. Raises ObjectNotFound if absent."""

    def open_read(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        """Return a readable stream of the object (or of the byte range asked for).

        Raises ObjectNotFound if absent. The caller closes the stream.
        """

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Return `length` bytes from `start` (fewer at the end of the object)."""

    def stat(self, key: str) -> ObjectInfo:
        """Return size and metadata. Raises ObjectNotFound if absent."""

    def exists(self, key: str) -> bool:
        """True if an object is at key."""

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with prefix, in key order, page by page."""

    def delete(self, key: str) -> None:
        """Remove the object; removing an absent object is not an error."""

    def close(self) -> None:
        """Release clients and connections."""


def iter_bytes(stream: BinaryIO, size: int = 1 << 20) -> Iterable[bytes]:
    """Yield a stream's bytes in pieces of at most `size`."""
    while True:
        piece = stream.read(size)
        if not piece:
            return
        yield piece
