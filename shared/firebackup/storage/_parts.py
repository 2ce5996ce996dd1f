"""PartWriter: the one streaming-upload engine every backend writer builds on.

It buffers up to part_size bytes, sends full parts as they fill, and keeps a part in its
buffer until the backend confirms it, so after a TransientStorageError the caller (normally
RetryingStorage) calls write(b"") or close() again and the same part goes out again under
the same part number. Parts already confirmed are never re-sent. Objects that fit in one
part go up in one request (parts == 0).
"""

from __future__ import annotations

from types import TracebackType
from typing import Callable, Concatenate, ParamSpec, Self, TypeVar

from firebackup.errors import UsageError
from firebackup.storage.base import ObjectInfo

_W = TypeVar("_W", bound="PartWriter")
_P = ParamSpec("_P")


def once(
    hook: Callable[Concatenate[_W, _P], ObjectInfo],
) -> Callable[Concatenate[_W, _P], ObjectInfo]:
    """Make a commit hook idempotent: after it succeeds once, repeat calls return its result.

    A commit whose response was lost is retried; the retry must not store the object again
    (an empty one, or one that now trips create-if-absent).
    """
    name = hook.__name__

    def wrapper(self: _W, /, *args: _P.args, **kwargs: _P.kwargs) -> ObjectInfo:
        done = self._committed.get(name)
        if done is None:
            done = hook(self, *args, **kwargs)
            self._committed[name] = done
        return done

    wrapper.__name__ = hook.__name__
    wrapper.__doc__ = hook.__doc__
    return wrapper


class PartWriter:
    """Base class for backend writers; subclasses implement the four _hooks."""

    def __init__(self, key: str, *, part_size: int, if_absent: bool = False) -> None:
        if part_size <= 0:
            raise UsageError(f"part_size must be positive, got {part_size}")
        self.key = key
        self.if_absent = if_absent
        self.part_size = part_size
        self.parts = 0  # parts confirmed by the backend
        self._buf = bytearray()
        self._last_sent = False
        self._info: ObjectInfo | None = None
        self._aborted = False
        self._committed: dict[str, ObjectInfo] = {}  # results of the @once hooks, by hook name

    # --- backend hooks -------------------------------------------------------------------
    def _send_part(self, number: int, data: bytes, last: bool) -> None:
        """Store part `number` (1-based); every part but the last is exactly part_size."""
        raise NotImplementedError

    def _complete(self) -> ObjectInfo:
        """Make the object visible after the last part was sent."""
        raise NotImplementedError

    def _put_whole(self, data: bytes) -> ObjectInfo:
        """Store a small object in one request (no part was sent)."""
        raise NotImplementedError

    def _abort_upload(self) -> None:
        """Discard stored parts; must not raise."""

    # --- ObjectWriter ----------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self._check_open()
        if data:
            self._buf += data
        # Keep at least one byte back so the last part is never empty (S3 and GCS agree).
        while len(self._buf) > self.part_size:
            piece = bytes(self._buf[: self.part_size])
            self._send_part(self.parts + 1, piece, False)
            self.parts += 1
            del self._buf[: self.part_size]

    def close(self) -> ObjectInfo:
        if self._info is not None:
            return self._info
        self._check_open()
        if self.parts == 0 and len(self._buf) <= self.part_size:
            self._info = self._put_whole(bytes(self._buf))
        else:
            self.write(b"")
            if not self._last_sent:
                self._send_part(self.parts + 1, bytes(self._buf), True)
                self.parts += 1
                self._last_sent = True
                self._buf = bytearray()
            self._info = self._complete()
        self._buf = bytearray()
        return self._info

    def abort(self) -> None:
        if self._aborted or self._info is not None:
            return
        self._aborted = True
        self._buf = bytearray()
        try:
            self._abort_upload()
        except Exception:  # noqa: BLE001 - abort is best effort by contract
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _check_open(self) -> None:
        if self._aborted:
            raise UsageError(f"writer for {self.key} was aborted; open a new one")
        if self._info is not None:
            raise UsageError(f"writer for {self.key} is already closed")
