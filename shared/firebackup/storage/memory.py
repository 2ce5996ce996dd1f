"""MemoryStorage: a thread-safe in-process backend for tests and local runs."""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import io
import threading
from typing import BinaryIO, Iterator

from firebackup.errors import ObjectExists, ObjectNotFound, UsageError
from firebackup.storage._parts import PartWriter, once
from firebackup.storage.base import ObjectInfo, check_key, check_prefix, check_range


class MemoryStorage:
    """Objects in a dict guarded by a lock; parts are staged like a multipart upload."""

    def __init__(self, *, part_size: int = 8 << 20, page_size: int = 1000, url: str = "memory://"):
        if page_size <= 0:
            raise UsageError(f"page_size must be positive, got {page_size}")
        self.url = url
        self.part_size = part_size
        self.page_size = page_size
        self._lock = threading.Lock()
        self._objects: dict[str, tuple[bytes, ObjectInfo]] = {}
        self._keys: list[str] = []  # sorted, so list() pages without sorting every time

    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> ObjectInfo:
        check_key(key)
        return self._commit(key, bytes(data), if_absent)

    def open_write(self, key: str, *, if_absent: bool = False) -> "_MemoryWriter":
        check_key(key)
        return _MemoryWriter(self, key, if_absent)

    def get(self, key: str) -> bytes:
        return self._entry(key)[0]

    def open_read(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        data = self._entry(key)[0]
        check_range(start, length)
        end = len(data) if length is None else start + length
        return io.BytesIO(data[start:end])

    def get_range(self, key: str, start: int, length: int) -> bytes:
        data = self._entry(key)[0]
        check_range(start, length)
        return data[start : start + length]

    def stat(self, key: str) -> ObjectInfo:
        return self._entry(key)[1]

    def exists(self, key: str) -> bool:
        check_key(key)
        with self._lock:
            return key in self._objects

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        after = start_after if start_after is not None and start_after >= prefix else None
        while True:
            with self._lock:
                if after is None:
                    i = bisect.bisect_left(self._keys, prefix)
                else:
                    i = bisect.bisect_right(self._keys, after)
                page = []
                for k in self._keys[i : i + self.page_size]:
                    if not k.startswith(prefix):
                        break
                    page.append(self._objects[k][1])
            yield from page
            if len(page) < self.page_size:
                return
            after = page[-1].key

    def delete(self, key: str) -> None:
        check_key(key)
        with self._lock:
            if self._objects.pop(key, None) is not None:
                del self._keys[bisect.bisect_left(self._keys, key)]

    def close(self) -> None:
        pass

    def _entry(self, key: str) -> tuple[bytes, ObjectInfo]:
        check_key(key)
        with self._lock:
            entry = self._objects.get(key)
        if entry is None:
            raise ObjectNotFound(key, f"object not found: {key} in {self.url}")
        return entry

    def _commit(self, key: str, data: bytes, if_absent: bool) -> ObjectInfo:
        info = ObjectInfo(key, len(data), dt.datetime.now(dt.timezone.utc), hashlib.md5(data).hexdigest())
        with self._lock:
            present = key in self._objects
            if present and if_absent:
                raise ObjectExists(key, f"object already exists: {key} in {self.url}")
            self._objects[key] = (data, info)
            if not present:
                bisect.insort(self._keys, key)
        return info

    def __repr__(self) -> str:
        return f"MemoryStorage({self.url!r})"


class _MemoryWriter(PartWriter):
    def __init__(self, storage: MemoryStorage, key: str, if_absent: bool):
        super().__init__(key, part_size=storage.part_size, if_absent=if_absent)
        self._storage = storage
        self._staged: list[bytes] = []

    def _send_part(self, number: int, data: bytes, last: bool) -> None:
        del self._staged[number - 1 :]  # a re-sent part replaces the earlier attempt
        self._staged.append(data)

    @once
    def _complete(self) -> ObjectInfo:
        info = self._storage._commit(self.key, b"".join(self._staged), self.if_absent)
        self._staged = []
        return info

    @once
    def _put_whole(self, data: bytes) -> ObjectInfo:
        return self._storage._commit(self.key, data, self.if_absent)

    def _abort_upload(self) -> None:
        self._staged = []
