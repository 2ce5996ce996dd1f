"""FileStorage: objects as files below a root folder (file:///path).

Writes are atomic: bytes go to a temp file in the target's folder, are fsynced, then
os.replace()d over the key (or os.link()ed for create-if-absent, which fails if the key
exists), and the folder is fsynced. Readers never see a partial object. The root folder is
created on first write. A key cannot name both an object and a "folder" ("a" and "a/b"),
unlike S3/GCS; such a write raises StorageError.
"""

from __future__ import annotations

import datetime as dt
import errno
import io
import os
import secrets
from typing import TYPE_CHECKING, BinaryIO, Iterator

from firebackup.errors import (
    AccessDenied,
    FireBackupError,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    TransientStorageError,
    UsageError,
)
from firebackup.storage._parts import PartWriter, once
from firebackup.storage.base import ObjectInfo, check_key, check_prefix, check_range

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

TMP_MARK = ".~fbtmp-"  # temp files start with this; keys may not, listings skip them

_TRANSIENT = {errno.EIO, errno.EAGAIN, errno.EINTR, errno.ETIMEDOUT, errno.ESTALE, errno.EBUSY}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}


def translate_oserror(e: OSError, key: str | None, where: str) -> FireBackupError:
    """Map an OSError to the firebackup.errors type a caller can act on."""
    what = f"{key} in {where}" if key else where
    if isinstance(e, FileNotFoundError) or e.errno in (errno.ENOENT, errno.ENOTDIR):
        return ObjectNotFound(key or "", f"object not found: {what}")
    if e.errno in _DENIED:
        return AccessDenied(f"permission denied on {what}: {e.strerror}; check the folder's owner and mode", key=key)
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageError(f"no space left writing {what}; free space or use another location", key=key)
    if e.errno == errno.ENAMETOOLONG:
        return UsageError(f"storage key too long for this filesystem: {what}")
    if e.errno in _TRANSIENT:
        return TransientStorageError(f"I/O error on {what}: {e.strerror}; retrying may help", key=key)
    return StorageError(f"filesystem error on {what}: {e.strerror or e}", key=key)


class FileStorage:
    """A local folder as a Storage; safe for several threads and processes at once."""

    def __init__(
        self, root: str, *, part_size: int = 1 << 20, page_size: int = 1000, url: str | None = None
    ) -> None:
        # page_size is accepted so every backend takes the same options; a folder walk
        # streams one directory at a time and has no pages.
        self.root = os.path.abspath(root)
        self.url = url or "file://" + self.root
        self.part_size = part_size
        self._real_root = os.path.realpath(self.root)

    # --- Storage -----------------------------------------------------------------------
    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> ObjectInfo:
        w = self.open_write(key, if_absent=if_absent)
        try:
            return w._put_whole(bytes(data))
        except BaseException:
            w.abort()
            raise

    def open_write(self, key: str, *, if_absent: bool = False) -> "_FileWriter":
        return _FileWriter(self, key, self._path(key), if_absent)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                return f.read()
        except IsADirectoryError:
            raise ObjectNotFound(key, f"object not found: {key} in {self.url}") from None
        except OSError as e:
            raise translate_oserror(e, key, self.url) from e

    def open_read(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        check_range(start, length)
        path = self._path(key)
        try:
            f = open(path, "rb", buffering=0)
        except IsADirectoryError:
            raise ObjectNotFound(key, f"object not found: {key} in {self.url}") from None
        except OSError as e:
            raise translate_oserror(e, key, self.url) from e
        try:
            f.seek(start)
        except OSError as e:
            f.close()
            raise translate_oserror(e, key, self.url) from e
        return io.BufferedReader(_FileRange(f, length, key, self.url), buffer_size=1 << 16)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        with self.open_read(key, start, length) as s:
            return s.read()

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = os.stat(path)
        except OSError as e:
            raise translate_oserror(e, key, self.url) from e
        if not os.path.isfile(path):
            raise ObjectNotFound(key, f"object not found: {key} in {self.url}")
        return _info(key, st)

    def exists(self, key: str) -> bool:
        return os.path.isfile(self._path(key))

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        yield from self._walk(self.root, "", prefix, start_after)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        except IsADirectoryError:
            return
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return
            raise translate_oserror(e, key, self.url) from e
        self._prune(os.path.dirname(path))

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"FileStorage({self.url!r})"

    # --- internals ---------------------------------------------------------------------
    def _path(self, key: str) -> str:
        check_key(key)
        parts = key.split("/")
        if any(p.startswith(TMP_MARK) for p in parts):
            raise UsageError(f"bad storage key {key!r}: segments starting with {TMP_MARK!r} are reserved")
        path = os.path.join(self.root, *parts)
        # A symlink inside the root could still point outside it; refuse to follow it there.
        real = os.path.realpath(path)
        if real != self._real_root and not real.startswith(self._real_root + os.sep):
            raise UsageError(f"bad storage key {key!r}: resolves outside {self.url}")
        return path

    def _walk(self, dirpath: str, rel: str, prefix: str, start_after: str | None) -> Iterator[ObjectInfo]:
        try:
            entries = list(os.scandir(dirpath))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as e:
            raise translate_oserror(e, None, self.url) from e
        # Sorting folders as "name/" makes a depth-first walk yield keys in global key order.
        items: list[tuple[str, bool, os.DirEntry[str]]] = []
        for entry in entries:
            if entry.name.startswith(TMP_MARK):
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            items.append((rel + entry.name + ("/" if is_dir else ""), is_dir, entry))
        items.sort(key=lambda t: t[0])
        for name, is_dir, entry in items:
            if is_dir:
                if not (name.startswith(prefix) or prefix.startswith(name)):
                    continue
                if start_after is not None and start_after > name and not start_after.startswith(name):
                    continue
                yield from self._walk(entry.path, name, prefix, start_after)
            else:
                if not name.startswith(prefix) or (start_after is not None and name <= start_after):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # deleted while we listed
                yield _info(name, st)

    def _prune(self, dirpath: str) -> None:
        # Remove folders a delete left empty so listings do not walk dead branches.
        while dirpath != self.root and dirpath.startswith(self.root + os.sep):
            try:
                os.rmdir(dirpath)
            except OSError:
                return
            dirpath = os.path.dirname(dirpath)


class _FileWriter(PartWriter):
    def __init__(self, storage: FileStorage, key: str, path: str, if_absent: bool) -> None:
        super().__init__(key, part_size=storage.part_size, if_absent=if_absent)
        self._storage = storage
        self._path = path
        self._tmp: str | None = None
        self._f: io.BufferedWriter | None = None

    def _open_tmp(self) -> io.BufferedWriter:
        if self._f is None:
            d = os.path.dirname(self._path)
            try:
                os.makedirs(d, exist_ok=True)
                self._tmp = os.path.join(d, TMP_MARK + secrets.token_hex(8))
                self._f = open(self._tmp, "xb")
            except OSError as e:
                raise self._err(e) from e
        return self._f

    def _send_part(self, number: int, data: bytes, last: bool) -> None:
        f = self._open_tmp()
        try:
            f.seek((number - 1) * self.part_size)  # a re-sent part overwrites its earlier attempt
            f.write(data)
            if last:
                f.truncate()
        except OSError as e:
            raise self._err(e) from e

    @once
    def _complete(self) -> ObjectInfo:
        return self._finish()

    def _finish(self) -> ObjectInfo:
        f = self._open_tmp()
        try:
            f.flush()
            os.fsync(f.fileno())
            f.close()
            self._publish()
            st = os.stat(self._path)
        except OSError as e:
            raise self._err(e) from e
        self._f = None
        return _info(self.key, st)

    @once
    def _put_whole(self, data: bytes) -> ObjectInfo:
        f = self._open_tmp()
        try:
            f.seek(0)
            f.write(data)
            f.truncate()
        except OSError as e:
            raise self._err(e) from e
        return self._finish()

    def _publish(self) -> None:
        assert self._tmp is not None
        if self.if_absent:
            try:
                os.link(self._tmp, self._path)
            except FileExistsError:
                self._discard()
                raise ObjectExists(self.key, f"object already exists: {self.key} in {self._storage.url}") from None
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                self._claim_then_replace(self._tmp)  # no hard links here (FAT, some FUSE and SMB mounts)
            else:
                os.unlink(self._tmp)
        else:
            if os.path.isdir(self._path):
                raise StorageError(f"cannot write {self.key} in {self._storage.url}: a folder has that name", key=self.key)
            os.replace(self._tmp, self._path)
        self._tmp = None
        _fsync_dir(os.path.dirname(self._path))

    def _claim_then_replace(self, tmp: str) -> None:
        # O_EXCL claims the name atomically; an empty file is visible at the key until the
        # os.replace() below lands, which os.link() avoids where it is available.
        try:
            fd = os.open(self._path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            self._discard()
            raise ObjectExists(self.key, f"object already exists: {self.key} in {self._storage.url}") from None
        os.close(fd)
        os.replace(tmp, self._path)

    def _discard(self) -> None:
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass
            self._f = None
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            self._tmp = None

    def _abort_upload(self) -> None:
        self._discard()

    def _err(self, e: OSError) -> FireBackupError:
        if e.errno == errno.ENOTDIR or e.errno == errno.EEXIST:
            return StorageError(
                f"cannot write {self.key} in {self._storage.url}: a parent of the key is an object", key=self.key
            )
        return translate_oserror(e, self.key, self._storage.url)

    def __del__(self) -> None:
        # A writer dropped without close() or abort() must not leave its temp file behind.
        if self._info is None:
            self._discard()


class _FileRange(io.RawIOBase):
    """Raw reader over an open file that stops after `length` bytes (None: at EOF)."""

    def __init__(self, f: io.FileIO, length: int | None, key: str, where: str) -> None:
        self._f = f
        self._left = length
        self._key = key
        self._where = where

    def readable(self) -> bool:
        return True

    def readinto(self, b: WriteableBuffer) -> int:
        if self._left is not None:
            if self._left <= 0:
                return 0
            b = memoryview(b)[: self._left]
        try:
            n = self._f.readinto(b)
        except OSError as e:
            raise translate_oserror(e, self._key, self._where) from e
        if self._left is not None and n:
            self._left -= n
        return n

    def close(self) -> None:
        try:
            self._f.close()
        finally:
            super().close()


def _info(key: str, st: os.stat_result) -> ObjectInfo:
    return ObjectInfo(
        key, st.st_size, dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc), f"{st.st_mtime_ns:x}-{st.st_size:x}"
    )


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a folder; the rename itself is still atomic
    finally:
        os.close(fd)
