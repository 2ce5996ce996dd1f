"""RetryingStorage: the one place storage operations are retried.

The policy (backoff with full jitter, attempts, deadline) is firebackup.retry.RetryPolicy;
only transient errors (TransientStorageError) are retried, everything else (ObjectNotFound,
ObjectExists, AccessDenied, BucketNotFound, UsageError, ...) surfaces at once. When the
budget runs out, the last transient error is raised with "(gave up after N attempts ...)".

Streaming is retried piecewise, never from the start:
- writes: a backend writer keeps a failed part (base.ObjectWriter retry contract), so the
  wrapper repeats write(b"") / close() and only that part goes out again;
- reads: a stream that fails mid-way is reopened at the next unread byte;
- listings: a listing that fails mid-way resumes with start_after = the last key yielded.
Streams and listings get a fresh budget whenever they make progress (a budget per stall).
"""

from __future__ import annotations

import io
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Iterator

from firebackup.errors import ObjectExists, ObjectNotFound, TransientStorageError
from firebackup.retry import RetryPolicy
from firebackup.storage.base import ObjectInfo, ObjectWriter, Storage

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class RetryingStorage:
    """Wrap a Storage so transient failures are retried under `policy`."""

    def __init__(self, inner: Storage, policy: RetryPolicy | None = None):
        self.inner = inner
        self.url = inner.url
        self.policy = policy or RetryPolicy()

    # --- Storage -------------------------------------------------------------------------
    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> ObjectInfo:
        call = self.policy.call
        if not if_absent:
            return call(self.inner.put, key, data)
        failed = False

        def attempt() -> ObjectInfo:
            nonlocal failed
            try:
                return self.inner.put(key, data, if_absent=True)
            except TransientStorageError:
                failed = True
                raise

        try:
            return call(attempt)
        except ObjectExists:
            # A failed attempt may have stored our bytes before the error reached us; if the
            # object holds exactly our bytes, that attempt won and this put succeeded.
            if failed and self._holds(key, data):
                return call(self.inner.stat, key)
            raise

    def open_write(self, key: str, *, if_absent: bool = False) -> "RetryingWriter":
        return RetryingWriter(self, self.policy.call(self.inner.open_write, key, if_absent=if_absent))

    def get(self, key: str) -> bytes:
        return self.policy.call(self.inner.get, key)

    def open_read(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        first = self.policy.call(self.inner.open_read, key, start, length)
        return io.BufferedReader(_RetryingReader(self, key, start, length, first), buffer_size=1 << 16)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self.policy.call(self.inner.get_range, key, start, length)

    def stat(self, key: str) -> ObjectInfo:
        return self.policy.call(self.inner.stat, key)

    def exists(self, key: str) -> bool:
        return self.policy.call(self.inner.exists, key)

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        after = start_after
        run = self.policy.start()
        while True:
            try:
                for info in self.inner.list(prefix, start_after=after):
                    yield info
                    after = info.key
                    run.progressed()
                return
            except TransientStorageError as e:
                run.failed(e)

    def delete(self, key: str) -> None:
        self.policy.call(self.inner.delete, key)

    def close(self) -> None:
        self.inner.close()

    def __repr__(self) -> str:
        return f"RetryingStorage({self.inner!r})"

    def _holds(self, key: str, data: bytes) -> bool:
        try:
            call = self.policy.call
            return call(self.inner.stat, key).size == len(data) and call(self.inner.get, key) == data
        except ObjectNotFound:
            return False


class RetryingWriter:
    """An ObjectWriter whose failed parts and commit are retried (see the module doc)."""

    def __init__(self, storage: RetryingStorage, inner: ObjectWriter):
        self._policy = storage.policy
        self.inner = inner
        self.key = inner.key

    @property
    def parts(self) -> int:
        return self.inner.parts

    def write(self, data: bytes) -> None:
        pending = [data]

        def attempt() -> None:
            # The inner writer keeps `data` even when it fails, so later tries send b"":
            # that re-sends just the part that failed.
            piece, pending[0] = pending[0], b""
            self.inner.write(piece)

        self._policy.call(attempt)

    def close(self) -> ObjectInfo:
        return self._policy.call(self.inner.close)

    def abort(self) -> None:
        self.inner.abort()

    def __enter__(self) -> "RetryingWriter":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _RetryingReader(io.RawIOBase):
    """Reads an object; a transient failure mid-stream reopens it at the next unread byte."""

    def __init__(self, storage: RetryingStorage, key: str, start: int, length: int | None, first: BinaryIO):
        self._inner = storage.inner
        self._policy = storage.policy
        self._key = key
        self._start = start
        self._length = length
        self._pos = 0
        self._s: BinaryIO | None = first

    def readable(self) -> bool:
        return True

    def readinto(self, b: WriteableBuffer) -> int:
        run = None
        while True:
            try:
                if self._s is None:
                    left = None if self._length is None else self._length - self._pos
                    self._s = self._inner.open_read(self._key, self._start + self._pos, left)
                n = self._s.readinto(b)  # type: ignore[attr-defined]  # every backend stream is a RawIOBase/BufferedReader
                self._pos += n or 0
                return n or 0
            except TransientStorageError as e:
                self._drop()
                run = run or self._policy.start()
                run.failed(e)

    def _drop(self) -> None:
        s, self._s = self._s, None
        if s is not None:
            try:
                s.close()
            except Exception:  # noqa: BLE001 - the stream already failed; closing is best effort
                pass

    def close(self) -> None:
        self._drop()
        super().close()
