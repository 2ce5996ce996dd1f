"""GCSStorage: Google Cloud Storage via google-cloud-storage (gs://bucket/prefix).

Credentials are Application Default Credentials; STORAGE_EMULATOR_HOST points the client at
an emulator (fake-gcs-server) with anonymous credentials. Every library call passes
retry=None: RetryingStorage is the one retry loop (the library's own DEFAULT_RETRY would
retry inside ours and hide failures from it). Objects larger than part_size go up through a
resumable upload session, one chunk per part: the session is created by the library (auth,
preconditions), the chunks are PUT here so that a failed chunk can be resumed from the
offset the server reports instead of re-sending the object. With kms_key_name (CMEK) every
object written, single upload and resumable session alike, is encrypted under that Cloud KMS key.
"""

from __future__ import annotations

import datetime as dt
import io
import threading
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterator, ParamSpec, TypeVar

from firebackup.errors import (
    AccessDenied,
    BucketNotFound,
    FireBackupError,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    TransientStorageError,
    UsageError,
)
from firebackup.storage._parts import PartWriter, once
from firebackup.storage._remote import RemoteStorage
from firebackup.storage.base import ObjectInfo, check_prefix, check_range

if TYPE_CHECKING:
    import requests
    from _typeshed import WriteableBuffer

_P = ParamSpec("_P")
_T = TypeVar("_T")

# google-cloud-storage (3.17 here) starts a daemon thread per bucket that GETs the bucket's
# metadata for its tracing spans, even with tracing off: a request that needs
# storage.buckets.get (a customer may grant object access only) and that retries for up to two
# minutes in the background. The library's only switch is this environment variable, read at
# each call; the composition root puts it in the environment at start-up (nothing is changed
# at import time).
GCS_CLIENT_ENVIRONMENT = {"DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA": "true"}

CHUNK_QUANTUM = 256 << 10  # resumable chunks must be multiples of 256 KiB
CONTENT_TYPE = "application/octet-stream"


class GCSStorage(RemoteStorage):
    """One bucket and key prefix on Google Cloud Storage (or fake-gcs-server)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        part_size: int = 8 << 20,
        page_size: int = 1000,
        read_chunk: int = 8 << 20,
        client: Any = None,
        project: str | None = None,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (10, 120),
        kms_key_name: str | None = None,
    ) -> None:
        if part_size <= 0 or part_size % CHUNK_QUANTUM:
            raise UsageError(f"part_size must be a positive multiple of {CHUNK_QUANTUM} for GCS, got {part_size}")
        if not 1 <= page_size <= 1000:
            raise UsageError(f"page_size must be 1..1000 for GCS, got {page_size}")
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self._root = self.prefix + "/" if self.prefix else ""
        self.url = f"gs://{bucket}/{self.prefix}"
        self.part_size = part_size
        self.page_size = page_size
        self.read_chunk = read_chunk
        self.timeout = timeout
        self._project = project
        self._client = client
        self._own_client = client is None
        self._session = session
        self._lock = threading.Lock()
        self._bucket_ok = False
        self.kms_key_name = kms_key_name

    # --- clients -------------------------------------------------------------------------
    def _make_client(self) -> Any:
        from google.cloud.storage import Client

        try:
            return Client(project=self._project)
        except Exception as e:  # noqa: BLE001 - DefaultCredentialsError, EnvironmentError, ...
            raise AccessDenied(
                f"no usable Google credentials for {self.url} ({type(e).__name__}); set "
                "GOOGLE_APPLICATION_CREDENTIALS or run `gcloud auth application-default login`"
            ) from None

    @property
    def session(self) -> requests.Session:
        """Plain HTTP session for resumable chunks: a session URL is its own credential."""
        if self._session is None:
            with self._lock:
                if self._session is None:
                    import requests

                    self._session = requests.Session()
        return self._session

    @property
    def _bucket(self) -> Any:
        return self.client.bucket(self.bucket_name)

    def _new_blob(self, full: str) -> Any:
        """A blob to write: carries the CMEK key, which the library sends as kmsKeyName on upload."""
        return self._bucket.blob(full, kms_key_name=self.kms_key_name)

    def _run(self, key: str | None, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return fn(*args, **kwargs)
        except FireBackupError:
            raise
        except Exception as e:  # noqa: BLE001 - translated right here, per the storage contract
            raise self._translate(e, key) from e

    # --- Storage -------------------------------------------------------------------------
    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> ObjectInfo:
        blob = self._new_blob(self._full(key))
        self._run(
            key,
            blob.upload_from_string,
            bytes(data),
            content_type=CONTENT_TYPE,
            if_generation_match=0 if if_absent else None,
            retry=None,
            timeout=self.timeout,
        )
        return _info(key, blob)

    def open_write(self, key: str, *, if_absent: bool = False) -> "_GCSWriter":
        return _GCSWriter(self, key, self._full(key), if_absent)

    def get(self, key: str) -> bytes:
        blob = self._bucket.blob(self._full(key))
        data: bytes = self._run(key, blob.download_as_bytes, retry=None, timeout=self.timeout)
        return data

    def open_read(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        check_range(start, length)
        blob = self._get_blob(key)  # pins the generation: later ranges read the same object
        end = blob.size if length is None else min(blob.size, start + length)
        return io.BufferedReader(_GCSRange(self, key, blob, start, max(start, end)), buffer_size=1 << 16)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        check_range(start, length)
        if length == 0:
            self.stat(key)
            return b""
        blob = self._bucket.blob(self._full(key))
        try:
            data: bytes = blob.download_as_bytes(
                start=start, end=start + length - 1, retry=None, checksum=None, timeout=self.timeout
            )
            return data
        except Exception as e:  # noqa: BLE001
            if type(e).__name__ == "RequestRangeNotSatisfiable":
                return b""  # the object exists; the range starts past its end
            raise self._translate(e, key) from e

    def stat(self, key: str) -> ObjectInfo:
        return _info(key, self._get_blob(key))

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        kwargs: dict[str, Any] = {
            "prefix": self._root + prefix, "page_size": self.page_size, "retry": None, "timeout": self.timeout
        }
        if start_after is not None and start_after >= prefix:
            kwargs["start_offset"] = self._root + start_after  # inclusive: skipped below
        cut = len(self._root)
        after = None if start_after is None else self._root + start_after
        try:
            for blob in self.client.list_blobs(self.bucket_name, **kwargs):
                if after is not None and blob.name <= after:
                    continue
                yield ObjectInfo(blob.name[cut:], blob.size or 0, blob.updated, blob.etag)
        except FireBackupError:
            raise
        except Exception as e:  # noqa: BLE001
            raise self._translate(e, None) from e

    def delete(self, key: str) -> None:
        blob = self._bucket.blob(self._full(key))
        try:
            blob.delete(retry=None, timeout=self.timeout)
        except Exception as e:  # noqa: BLE001
            err = self._translate(e, key)
            if not isinstance(err, ObjectNotFound):
                raise err from e

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
        if self._own_client and self._client is not None:
            http = getattr(self._client, "_http_internal", None)
            if http is not None:
                http.close()
            self._client = None

    def __repr__(self) -> str:
        return f"GCSStorage({self.url!r})"

    # --- internals -----------------------------------------------------------------------
    def _get_blob(self, key: str) -> Any:
        blob = self._run(key, self._bucket.get_blob, self._full(key), retry=None, timeout=self.timeout)
        if blob is None:
            raise self._not_found(key)  # get_blob answers None for a missing bucket too
        return blob

    def _translate(self, e: Exception, key: str | None) -> FireBackupError:
        """Map a google.api_core / google.auth / requests exception to firebackup.errors."""
        from google.api_core import exceptions as gx
        from google.auth import exceptions as ax

        what = f"{key} in {self.url}" if key else self.url
        if isinstance(e, gx.NotFound):
            return self._not_found(key)
        if isinstance(e, (gx.Forbidden, gx.Unauthorized)):
            return AccessDenied(
                f"access denied ({e.code}) on {what}; check the credentials and the bucket's IAM roles", key=key
            )
        if isinstance(e, gx.PreconditionFailed):
            return ObjectExists(key or "", f"object already exists: {what}")
        if isinstance(e, gx.GoogleAPICallError):
            if isinstance(e, (gx.TooManyRequests, gx.ServerError)) or e.code in (408, 429) or (e.code or 0) >= 500:
                return TransientStorageError(f"GCS {e.code} on {what}; retrying may help", key=key)
            return StorageError(f"GCS error {e.code} on {what}: {_one_line(e.message)}", key=key)
        if isinstance(e, ax.RefreshError):
            return AccessDenied(f"Google credentials were refused for {what}; refresh or replace them", key=key)
        if isinstance(e, ax.DefaultCredentialsError):
            return AccessDenied(
                f"no usable Google credentials for {what}; set GOOGLE_APPLICATION_CREDENTIALS", key=key
            )
        if isinstance(e, ax.TransportError) or _is_network(e):
            return TransientStorageError(f"network error on {what}: {type(e).__name__}; retrying may help", key=key)
        if type(e).__name__ == "DataCorruption":
            return TransientStorageError(f"checksum mismatch downloading {what}; retrying may help", key=key)
        if type(e).__name__ == "InvalidResponse":
            status = getattr(getattr(e, "response", None), "status_code", 0)
            return _status_error(status, what, key, self)
        return StorageError(f"GCS failure on {what}: {type(e).__name__}: {_one_line(str(e))}", key=key)

    def _no_bucket(self) -> BucketNotFound:
        return BucketNotFound(f"bucket {self.bucket_name!r} not found; create it or fix the storage URL {self.url}")

    def _not_found(self, key: str | None) -> FireBackupError:
        # GCS answers a bare 404 whether the object or the whole bucket is missing: ask once.
        if not self._bucket_ok:
            bucket = self._bucket
            exists = self._run(key, bucket.exists, retry=None, timeout=self.timeout)
            if not exists:
                return self._no_bucket()
            self._bucket_ok = True
        if key is None:
            return StorageError(f"not found in {self.url}")
        return ObjectNotFound(key, f"object not found: {key} in {self.url}")


class _GCSWriter(PartWriter):
    """A resumable upload: one session, one PUT per part, resumed at the server's offset."""

    def __init__(self, storage: GCSStorage, key: str, full: str, if_absent: bool) -> None:
        super().__init__(key, part_size=storage.part_size, if_absent=if_absent)
        self._s = storage
        self._full = full
        self._session_url: str | None = None
        self._persisted = 0  # bytes the server confirmed
        self._resync = False  # a PUT failed: ask the server what it has before sending more
        self._final: dict[str, Any] | None = None  # the object resource the server sent at the end
        self._what = f"{key} in {storage.url}"

    @once
    def _put_whole(self, data: bytes) -> ObjectInfo:
        return self._s.put(self.key, data, if_absent=self.if_absent)

    def _send_part(self, number: int, data: bytes, last: bool) -> None:
        offset = (number - 1) * self.part_size
        end = offset + len(data)
        if self._final is not None:
            self._check_final(end if last else None)
            return  # a lost response to the final chunk: the server already has the object
        if self._session_url is None:
            blob = self._s._new_blob(self._full)
            self._session_url = self._s._run(
                self.key,
                blob.create_resumable_upload_session,
                content_type=CONTENT_TYPE,
                if_generation_match=0 if self.if_absent else None,
                retry=None,
                timeout=self._s.timeout,
            )
        if self._resync:
            self._query()
            if self._final is not None:
                self._check_final(end if last else None)
                return
        if self._persisted < offset:
            raise StorageError(
                f"upload of {self._what} lost data on the server (has {self._persisted}, expected {offset}); "
                "start the upload again",
                key=self.key,
            )
        if last and self.if_absent and self._s.exists(self.key):
            # GCS enforces ifGenerationMatch=0 when the last chunk lands; some emulators do
            # not, so look first too. The server-side check is what makes it race-free.
            self.abort()
            raise ObjectExists(self.key, f"object already exists: {self._what}")
        stalls = 0
        while self._persisted < end or (last and self._final is None):
            start = self._persisted
            chunk = data[start - offset :]
            if last:
                rng = f"bytes {start}-{end - 1}/{end}" if chunk else f"bytes */{end}"
            else:
                rng = f"bytes {start}-{end - 1}/*"
            before = self._persisted
            self._put(chunk, rng)
            if self._final is not None:
                self._check_final(end if last else None)
                return
            if self._persisted == before and self._final is None:
                stalls += 1
                if stalls >= 3:
                    raise TransientStorageError(f"upload of {self._what} makes no progress; retrying may help", key=self.key)

    def _check_final(self, want: int | None) -> None:
        # A server that finished the upload before our last byte must not pass for success:
        # that would be a silently truncated object.
        size = int((self._final or {}).get("size", -1))
        if want is None or size != want:
            raise StorageError(
                f"upload of {self._what} was finished by the server early at {size} bytes; "
                "delete the object and upload again",
                key=self.key,
            )

    @once
    def _complete(self) -> ObjectInfo:
        if self._final is None:
            self._query()
        if self._final is None:
            raise TransientStorageError(f"upload of {self._what} did not finish; retrying may help", key=self.key)
        f = self._final
        updated = f.get("updated")
        return ObjectInfo(
            self.key,
            int(f.get("size", 0)),
            dt.datetime.fromisoformat(updated.replace("Z", "+00:00")) if updated else None,
            f.get("etag") or f.get("md5Hash"),
        )

    def _abort_upload(self) -> None:
        if self._session_url is not None and self._final is None:
            url, self._session_url = self._session_url, None
            try:
                self._s.session.delete(url, timeout=self._s.timeout)  # GCS answers 499: cancelled
            except Exception:  # noqa: BLE001 - best effort; unfinished sessions expire in a week
                pass

    def _query(self) -> None:
        """Ask the server how many bytes it holds (documented 'bytes */*' status check)."""
        self._put(b"", "bytes */*")
        self._resync = False

    def _put(self, body: bytes, content_range: str) -> None:
        assert self._session_url is not None
        try:
            r = self._s.session.put(
                self._session_url,
                data=body,
                headers={"Content-Range": content_range, "Content-Type": CONTENT_TYPE},
                timeout=self._s.timeout,
            )
        except Exception as e:  # noqa: BLE001 - connection reset, timeout, ...
            self._resync = True
            raise self._s._translate(e, self.key) from e
        if r.status_code == 308:
            rng = r.headers.get("Range")
            self._persisted = int(rng.rsplit("-", 1)[1]) + 1 if rng else 0
            return
        if r.status_code in (200, 201):
            try:
                self._final = r.json()
            except ValueError:
                self._final = {}
            self._persisted = int(self._final.get("size", self._persisted) or self._persisted)
            return
        if r.status_code == 412:
            self._session_url = None
            raise ObjectExists(self.key, f"object already exists: {self._what}")
        if r.status_code in (404, 410):
            self._session_url = None
            raise StorageError(f"upload session for {self._what} expired; start the upload again", key=self.key)
        if r.status_code >= 500 or r.status_code in (408, 429):
            self._resync = True
        raise _status_error(r.status_code, self._what, self.key, self._s)


class _GCSRange(io.RawIOBase):
    """Reads [pos, end) of one object generation as ranged downloads of read_chunk bytes."""

    def __init__(self, storage: GCSStorage, key: str, blob: Any, pos: int, end: int) -> None:
        self._s = storage
        self._key = key
        self._blob = blob
        self._pos = pos
        self._end = end
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: WriteableBuffer) -> int:
        if not self._buf:
            if self._pos >= self._end:
                return 0
            stop = min(self._end, self._pos + self._s.read_chunk)
            data: bytes = self._s._run(
                self._key,
                self._blob.download_as_bytes,
                start=self._pos,
                end=stop - 1,
                retry=None,
                checksum=None,
                timeout=self._s.timeout,
            )
            if not data:
                raise TransientStorageError(f"empty read of {self._key} in {self._s.url}; retrying may help", key=self._key)
            self._pos += len(data)
            self._buf = memoryview(data)
        with memoryview(b) as view:
            n = min(len(view), len(self._buf))
            view[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def _info(key: str, blob: Any) -> ObjectInfo:
    return ObjectInfo(key, blob.size or 0, blob.updated, blob.etag)


def _status_error(status: int, what: str, key: str | None, storage: GCSStorage) -> FireBackupError:
    if status in (401, 403):
        return AccessDenied(f"access denied ({status}) on {what}; check the credentials and IAM roles", key=key)
    if status == 404:
        return storage._not_found(key)
    if status >= 500 or status in (408, 429):
        return TransientStorageError(f"GCS {status} on {what}; retrying may help", key=key)
    return StorageError(f"GCS answered {status} on {what}", key=key)


def _is_network(e: Exception) -> bool:
    try:
        import requests
    except ImportError:  # pragma: no cover - google-cloud-storage depends on requests
        return isinstance(e, (ConnectionError, TimeoutError))
    return isinstance(
        e,
        (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError, ConnectionError, TimeoutError),
    )


def _one_line(s: str) -> str:
    return " ".join(str(s).split())[:300]
