"""FaultyStorage: injects failures into a Storage by operation and call number (tests only).

Modelled on kopia's blobtesting/faulty.go. Operations are the Storage method names ("put",
"get", "open_read", "get_range", "stat", "exists", "list", "delete", "open_write") plus
finer steps: "part" (a writer sending one multipart/resumable part), "commit" (a writer
making its object visible: complete, or the one-request put of a small object), "read" (one
read from a stream returned by open_read) and "list_item" (one object yielded by list).

A Fault fails calls number `call` .. `call + times - 1` of its operation (1-based, counted per
FaultyStorage). With after=False the call fails before reaching the inner storage (the
request never left); with after=True the inner call runs and its result is dropped (the
response was lost): this is how "the part was stored but the connection reset" is tested.
"""

from __future__ import annotations

import io
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterator, ParamSpec, TypeVar, cast

from firebackup.errors import AccessDenied, BucketNotFound, TransientStorageError
from firebackup.storage._parts import PartWriter
from firebackup.storage.base import ObjectInfo, ObjectWriter, Storage

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

_P = ParamSpec("_P")
_T = TypeVar("_T")

OPS = {
    "put", "get", "open_read", "get_range", "stat", "exists", "list", "delete", "open_write",
    "part", "commit", "read", "list_item",
}


def unavailable() -> TransientStorageError:
    return TransientStorageError("503 Service Unavailable (injected fault); retrying may help")


def connection_reset() -> TransientStorageError:
    return TransientStorageError("connection reset by peer (injected fault); retrying may help")


def access_denied() -> AccessDenied:
    return AccessDenied("403 access denied (injected fault); check the credentials and the bucket's permissions")


def bucket_missing() -> BucketNotFound:
    return BucketNotFound("bucket not found (injected fault); create it or fix the storage URL")


@dataclass
class Fault:
    op: str
    call: int = 1
    times: int = 1
    error: Callable[[], Exception] = unavailable
    after: bool = False
    hits: int = field(default=0, init=False)  # how many calls this fault failed

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown op {self.op!r}; one of {sorted(OPS)}")

    def matches(self, n: int) -> bool:
        return self.call <= n < self.call + self.times


class FaultyStorage:
    """Pass every call through to `inner`, except those a Fault names."""

    def __init__(self, inner: Storage, faults: list[Fault] | None = None) -> None:
        self.inner = inner
        self.url = inner.url
        self.faults = list(faults or [])
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def run(self, op: str, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Count one call of op and run fn, failing it if a Fault says so."""
        with self._lock:
            self.calls[op] += 1
            n = self.calls[op]
            fault = next((f for f in self.faults if f.op == op and f.matches(n)), None)
            if fault is not None:
                fault.hits += 1
        if fault is None:
            return fn(*args, **kwargs)
        if fault.after:
            fn(*args, **kwargs)
        raise fault.error()

    # --- Storage -------------------------------------------------------------------------
    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> ObjectInfo:
        return self.run("put", self.inner.put, key, data, if_absent=if_absent)

    def open_write(self, key: str, *, if_absent: bool = False) -> ObjectWriter:
        w = self.run("open_write", self.inner.open_write, key, if_absent=if_absent)
        if isinstance(w, PartWriter):
            self._hook_writer(w)
        return w

    def get(self, key: str) -> bytes:
        return self.run("get", self.inner.get, key)

    def open_read(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        s = self.run("open_read", self.inner.open_read, key, start, length)
        # Unbuffered on purpose: each read() of the caller is one "read" a Fault can hit.
        return cast(BinaryIO, _FaultyStream(self, s))

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self.run("get_range", self.inner.get_range, key, start, length)

    def stat(self, key: str) -> ObjectInfo:
        return self.run("stat", self.inner.stat, key)

    def exists(self, key: str) -> bool:
        return self.run("exists", self.inner.exists, key)

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        it = self.run("list", self.inner.list, prefix, start_after=start_after)
        for info in it:
            yield self.run("list_item", _passed_on, info)

    def delete(self, key: str) -> None:
        self.run("delete", self.inner.delete, key)

    def close(self) -> None:
        self.inner.close()

    def _hook_writer(self, w: PartWriter) -> None:
        # Instance attributes shadow the class's hooks: faults hit each part and the commit
        # exactly where a network failure would, inside the real writer.
        send, complete, whole = w._send_part, w._complete, w._put_whole
        w._send_part = lambda number, data, last: self.run("part", send, number, data, last)  # type: ignore[method-assign]
        w._complete = lambda: self.run("commit", complete)  # type: ignore[method-assign]
        w._put_whole = lambda data: self.run("commit", whole, data)  # type: ignore[method-assign]


def _passed_on(info: ObjectInfo) -> ObjectInfo:
    return info


class _FaultyStream(io.RawIOBase):
    def __init__(self, storage: FaultyStorage, inner: BinaryIO) -> None:
        self._storage = storage
        self._inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, b: WriteableBuffer) -> int:
        return self._storage.run("read", self._read_into, b)

    def _read_into(self, b: WriteableBuffer) -> int:
        with memoryview(b) as view:
            data = self._inner.read(len(view))
            view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            super().close()
