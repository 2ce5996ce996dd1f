"""RetryingStorage: the one place storage operations are retried.

Exponential backoff with full jitter: before retry n (n >= 1) it sleeps
rng() * min(max_delay, base_delay * 2**(n-1)). Only TransientStorageError is retried;
everything else (ObjectNotFound, ObjectExists, AccessDenied, BucketNotFound, UsageError, ...)
surfaces at once. When attempts run out, the last transient error is raised with
"(gave up after N attempts)" appended.

Streaming is retried piecewise, never from the start:
- writes: a backend writer keeps a failed part (base.ObjectWriter retry contract), so the
  wrapper repeats write(b"") / close() and only that part goes out again;
- reads: a stream that fails mid-way is reopened at the next unread byte;
- listings: a listing that fails mid-way resumes with start_after = the last key yielded.
"""

from __future__ import annotations

import io
import random
import time
from typing import BinaryIO, Callable, Iterator, TypeVar

from firebackup.errors import ObjectExists, ObjectNotFound, TransientStorageError, UsageError
from firebackup.storage.base import ObjectInfo, Storage

T = TypeVar("T")


class RetryingStorage:
    """Wrap a Storage so transient failures are retried with backoff and full jitter."""

    def __init__(
        self,
        inner: Storage,
        attempts: int = 6,
        base_delay: float = 0.2,
        max_delay: float = 10.0,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] | None = None,
    ):
        if attempts < 1:
            raise UsageError(f"attempts must be >= 1, got {attempts}")
        self.inner = inner
        self.url = inner.url
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        # A private generator by default: retries must not move the global random state.
        self._rng = rng or random.Random().random

    # --- the retry loop ------------------------------------------------------------------
    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1-based): full jitter."""
        return self._rng() * min(self.max_delay, self.base_delay * (2 ** (retry - 1)))

    def call(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Run fn, retrying TransientStorageError up to `attempts` tries in all."""
        tries = 0
        while True:
            tries += 1
            try:
                return fn(*args, **kwargs)
            except TransientStorageError as e:
                if tries >= self.attempts:
                    raise _gave_up(e, tries) from e
                self._sleep(self.delay(tries))

    # --- Storage -------------------------------------------------------------------------
    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> ObjectInfo:
        if not if_absent:
            return self.call(self.inner.put, key, data)
        failed = False

        def attempt() -> ObjectInfo:
            nonlocal failed
            try:
                return self.inner.put(key, data, if_absent=True)
            except TransientStorageError:
                failed = True
                raise

        try:
            return self.call(attempt)
        except ObjectExists:
            # A failed attempt may have stored our bytes before the error reached us; if the
            # object holds exactly our bytes, that attempt won and this put succeeded.
            if failed and self._holds(key, data):
                return self.call(self.inner.stat, key)
            raise

    def open_write(self, key: str, *, if_absent: bool = False) -> "RetryingWriter":
        return RetryingWriter(self, self.call(self.inner.open_write, key, if_absent=if_absent))

    def get(self, key: str) -> bytes:
        return self.call(self.inner.get, key)

    def open_read(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        first = self.call(self.inner.open_read, key, start, length)
        return io.BufferedReader(_RetryingReader(self, key, start, length, first), buffer_size=1 << 16)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self.call(self.inner.get_range, key, start, length)

    def stat(self, key: str) -> ObjectInfo:
        return self.call(self.inner.stat, key)

    def exists(self, key: str) -> bool:
        return self.call(self.inner.exists, key)

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        after = start_after
        failures = 0
        while True:
            try:
                for info in self.inner.list(prefix, start_after=after):
                    yield info
                    after = info.key
                    failures = 0  # progress made: the budget is per stall, not per listing
                return
            except TransientStorageError as e:
                failures += 1
                if failures >= self.attempts:
                    raise _gave_up(e, failures) from e
                self._sleep(self.delay(failures))

    def delete(self, key: str) -> None:
        self.call(self.inner.delete, key)

    def close(self) -> None:
        self.inner.close()

    def __repr__(self) -> str:
        return f"RetryingStorage({self.inner!r})"

    def _holds(self, key: str, data: bytes) -> bool:
        try:
            return self.call(self.inner.stat, key).size == len(data) and self.call(self.inner.get, key) == data
        except ObjectNotFound:
            return False


class RetryingWriter:
    """An ObjectWriter whose failed parts and commit are retried (see the module doc)."""

    def __init__(self, storage: RetryingStorage, inner):
        self._storage = storage
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

        self._storage.call(attempt)

    def close(self) -> ObjectInfo:
        return self._storage.call(self.inner.close)

    def abort(self) -> None:
        self.inner.abort()

    def __enter__(self) -> "RetryingWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _RetryingReader(io.RawIOBase):
    """Reads an object; a transient failure mid-stream reopens it at the next unread byte."""

    def __init__(self, storage: RetryingStorage, key: str, start: int, length: int | None, first: BinaryIO):
        self._storage = storage
        self._key = key
        self._start = start
        self._length = length
        self._pos = 0
        self._s: BinaryIO | None = first

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        failures = 0
        while True:
            try:
                if self._s is None:
                    left = None if self._length is None else self._length - self._pos
                    self._s = self._storage.inner.open_read(self._key, self._start + self._pos, left)
                n = self._s.readinto(b)
                self._pos += n or 0
                return n
            except TransientStorageError as e:
                failures += 1
                self._drop()
                if failures >= self._storage.attempts:
                    raise _gave_up(e, failures) from e
                self._storage._sleep(self._storage.delay(failures))

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


def _gave_up(e: TransientStorageError, tries: int) -> TransientStorageError:
    return TransientStorageError(f"{e} (gave up after {tries} attempts)", key=e.key)
