"""S3Storage: AWS S3 and S3-compatible stores (DigitalOcean Spaces, MinIO, R2, moto) via boto3.

Credentials and the endpoint come from the usual AWS chain (AWS_ACCESS_KEY_ID, AWS_PROFILE,
instance roles, AWS_ENDPOINT_URL, ...) unless the URL names an endpoint. botocore's own retry
loop is switched off (total_max_attempts=1): RetryingStorage is the one retry loop, and two
nested loops would multiply attempts and hide failures. Objects larger than part_size go up as
a multipart upload, one part at a time (bounded memory); create-if-absent uses
If-None-Match: * on PutObject and CompleteMultipartUpload, which S3, moto, MinIO and R2 honour.
Server-side encryption (S3Encryption) is asked for on every object written, single put and
multipart alike, so no object depends on the bucket's default.
"""

from __future__ import annotations

import hashlib
import io
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterator, Literal, Mapping
from urllib.parse import urlencode

from firebackup.errors import (
    AccessDenied,
    BadURL,
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
    from _typeshed import WriteableBuffer

MIN_PART_SIZE = 5 << 20  # S3's floor for every part but the last

_DENIED = {
    "AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled", "AccountProblem", "InvalidSecurity",
    "AuthorizationHeaderMalformed", "UnauthorizedAccess",
}
_TRANSIENT = {
    "SlowDown", "Throttling", "ThrottlingException", "RequestThrottled", "RequestLimitExceeded", "TooManyRequests",
    "429", "RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable", "503", "500",
    "ConditionalRequestConflict", "OperationAborted", "BadDigest", "IncompleteBody",
}


SseMode = Literal["AES256", "aws:kms", "SSE-C"]


@dataclass(frozen=True)
class S3Encryption:
    """Server-side encryption for every object written: SSE-S3 (AES256), SSE-KMS (aws:kms, optionally
    naming the KMS key) or SSE-C (a customer key sent with every request, the one kind Spaces offers)."""

    mode: SseMode
    kms_key_id: str | None = None
    customer_key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in ("AES256", "aws:kms", "SSE-C"):
            raise UsageError(f"unknown S3 server-side encryption {self.mode!r}; use AES256, aws:kms or SSE-C")
        if self.kms_key_id is not None and self.mode != "aws:kms":
            raise UsageError("a KMS key id goes with aws:kms server-side encryption only")
        if (self.mode == "SSE-C") != (self.customer_key is not None):
            raise UsageError("SSE-C needs a customer key, and only SSE-C takes one")
        if self.customer_key is not None and len(self.customer_key) != 32:
            raise UsageError("an SSE-C customer key must be 32 bytes (AES-256)")

    def write_args(self) -> dict[str, Any]:
        """PutObject and CreateMultipartUpload parameters."""
        if self.mode == "SSE-C":
            return self.request_args()
        args: dict[str, Any] = {"ServerSideEncryption": self.mode}
        if self.kms_key_id:
            args["SSEKMSKeyId"] = self.kms_key_id
        return args

    def request_args(self) -> dict[str, Any]:
        """UploadPart, GetObject and HeadObject parameters: only SSE-C sends its key on each of these."""
        if self.mode != "SSE-C":
            return {}
        # botocore base64-encodes the key and adds its MD5 header itself.
        return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": self.customer_key}


class S3Storage(RemoteStorage):
    """One bucket and key prefix on an S3-compatible store."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str | None = None,
        addressing: str | None = None,
        scheme: str = "s3",
        part_size: int = 8 << 20,
        page_size: int = 1000,
        client: Any = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        connect_timeout: float = 10,
        read_timeout: float = 60,
        max_pool_connections: int = 16,
        encryption: S3Encryption | None = None,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise UsageError(f"part_size {part_size} is below S3's minimum of {MIN_PART_SIZE} bytes")
        if not 1 <= page_size <= 1000:
            raise UsageError(f"page_size must be 1..1000 for S3, got {page_size}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._root = self.prefix + "/" if self.prefix else ""
        self.part_size = part_size
        self.page_size = page_size
        query = {k: v for k, v in (("endpoint", endpoint if scheme == "s3" else None), ("region", region),
                                   ("addressing", addressing)) if v}
        self.url = f"{scheme}://{bucket}/{self.prefix}" + (f"?{urlencode(query)}" if query else "")
        self._where = f"{scheme}://{bucket}/{self.prefix}"
        self._endpoint = endpoint
        self._region = region
        self._addressing = addressing
        self._creds = (access_key_id, secret_access_key)
        self._timeouts = (connect_timeout, read_timeout, max_pool_connections)
        self._client = client
        self._own_client = client is None
        self._lock = threading.Lock()
        self._bucket_ok = False
        self.encryption = encryption
        self._write_args = encryption.write_args() if encryption else {}
        self._request_args = encryption.request_args() if encryption else {}

    # --- client --------------------------------------------------------------------------
    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        connect_timeout, read_timeout, pool = self._timeouts
        s3_opts = {"addressing_style": self._addressing} if self._addressing else {}
        config = Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=pool,
            s3=s3_opts or None,
        )
        key_id, secret = self._creds
        session = boto3.session.Session()
        try:
            return session.client(
                "s3",
                endpoint_url=self._endpoint,
                region_name=self._region,
                aws_access_key_id=key_id,
                aws_secret_access_key=secret,
                config=config,
            )
        except Exception as e:  # noqa: BLE001 - botocore raises several types for bad config
            raise BadURL(f"cannot set up an S3 client for {self._where}: {type(e).__name__}: {e}") from None

    def _call(self, key: str | None, fn: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return fn(Bucket=self.bucket, **kwargs)
        except FireBackupError:
            raise
        except Exception as e:  # noqa: BLE001 - translated right here, per the storage contract
            raise self._translate(e, key) from e

    # --- Storage -------------------------------------------------------------------------
    def put(self, key: str, data: bytes, *, if_absent: bool = False) -> ObjectInfo:
        full = self._full(key)
        extra = {"IfNoneMatch": "*"} if if_absent else {}
        r = self._call(key, self.client.put_object, Key=full, Body=bytes(data), **extra, **self._write_args)
        return ObjectInfo(key, len(data), None, _etag(r))

    def open_write(self, key: str, *, if_absent: bool = False) -> "_S3Writer":
        return _S3Writer(self, key, self._full(key), if_absent)

    def get(self, key: str) -> bytes:
        with self.open_read(key) as s:
            return s.read()

    def open_read(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        check_range(start, length)
        full = self._full(key)
        if length == 0:
            self.stat(key)  # still ObjectNotFound for a missing object
            return io.BytesIO(b"")
        extra: dict[str, str] = {}
        if start or length is not None:
            end = "" if length is None else str(start + length - 1)
            extra["Range"] = f"bytes={start}-{end}"
        try:
            r = self.client.get_object(Bucket=self.bucket, Key=full, **extra, **self._request_args)
        except Exception as e:  # noqa: BLE001
            if _code(e) == "InvalidRange":
                return io.BytesIO(b"")  # the object exists; the range starts at or past its end
            raise self._translate(e, key) from e
        return io.BufferedReader(_S3Body(self, key, r["Body"]), buffer_size=1 << 16)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        with self.open_read(key, start, length) as s:
            return s.read()

    def stat(self, key: str) -> ObjectInfo:
        r = self._call(key, self.client.head_object, Key=self._full(key), **self._request_args)
        return ObjectInfo(key, r["ContentLength"], r.get("LastModified"), _etag(r))

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        kwargs: dict[str, Any] = {"Prefix": self._root + prefix, "MaxKeys": self.page_size}
        if start_after is not None and start_after >= prefix:
            kwargs["StartAfter"] = self._root + start_after
        cut = len(self._root)
        while True:
            r = self._call(None, self.client.list_objects_v2, **kwargs)
            for o in r.get("Contents", ()):
                yield ObjectInfo(o["Key"][cut:], o["Size"], o.get("LastModified"), _etag(o))
            token = r.get("NextContinuationToken")
            if not r.get("IsTruncated") or not token:
                return
            kwargs.pop("StartAfter", None)
            kwargs["ContinuationToken"] = token

    def delete(self, key: str) -> None:
        self._call(key, self.client.delete_object, Key=self._full(key))

    def close(self) -> None:
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None

    def __repr__(self) -> str:
        return f"S3Storage({self.url!r})"

    # --- errors --------------------------------------------------------------------------
    def _translate(self, e: Exception, key: str | None) -> FireBackupError:
        """Map a botocore / urllib3 exception to a firebackup.errors type."""
        from botocore import exceptions as bx

        what = f"{key} in {self._where}" if key else self._where
        if isinstance(e, bx.ClientError):
            code = _code(e)
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            msg = e.response.get("Error", {}).get("Message") or code
            if code == "NoSuchBucket":
                return self._no_bucket()
            if code in ("NoSuchKey", "404", "NotFound") or (status == 404 and code != "NoSuchUpload"):
                return self._not_found(key)
            if code in _DENIED or status == 403:
                return AccessDenied(
                    f"access denied ({code}) on {what}; check the credentials and the bucket policy", key=key
                )
            if code == "PreconditionFailed" or status == 412:
                return ObjectExists(key or "", f"object already exists: {what}")
            if code in _TRANSIENT or status >= 500 or status == 429:
                return TransientStorageError(f"S3 {code or status} on {what}: {msg}; retrying may help", key=key)
            return StorageError(f"S3 error {code or status} on {what}: {msg}", key=key)
        if isinstance(e, (bx.NoCredentialsError, bx.PartialCredentialsError, bx.CredentialRetrievalError)):
            return AccessDenied(
                f"no usable AWS credentials for {self._where}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "or AWS_PROFILE",
                key=key,
            )
        if isinstance(e, bx.SSLError):
            return StorageError(f"TLS failure talking to {self._where}: {e}; check the endpoint URL", key=key)
        if isinstance(e, (bx.ConnectionError, bx.HTTPClientError, bx.IncompleteReadError)) or _is_network(e):
            return TransientStorageError(
                f"network error on {what}: {type(e).__name__}; retrying may help", key=key
            )
        if isinstance(e, bx.ParamValidationError):
            return UsageError(f"S3 rejected the request for {what}: {e}".replace("\n", " "))
        if isinstance(e, bx.NoRegionError):
            return BadURL(f"no region for {self._where}; add ?region=... or set AWS_DEFAULT_REGION")
        return StorageError(f"S3 failure on {what}: {type(e).__name__}: {e}".replace("\n", " "), key=key)

    def _no_bucket(self) -> BucketNotFound:
        where = f" at {self._endpoint}" if self._endpoint else ""
        return BucketNotFound(f"bucket {self.bucket!r} not found{where}; create it or fix the storage URL {self._where}")

    def _not_found(self, key: str | None) -> FireBackupError:
        # HEAD answers a bare 404 whether the key or the whole bucket is missing: ask once.
        if not self._bucket_ok:
            try:
                self.client.head_bucket(Bucket=self.bucket)
                self._bucket_ok = True
            except Exception as e:  # noqa: BLE001
                if _code(e) in ("404", "NoSuchBucket", "NotFound"):
                    return self._no_bucket()
                return self._translate(e, key)
        return ObjectNotFound(key or "", f"object not found: {key} in {self._where}")


class _S3Writer(PartWriter):
    def __init__(self, storage: S3Storage, key: str, full: str, if_absent: bool) -> None:
        super().__init__(key, part_size=storage.part_size, if_absent=if_absent)
        self._s = storage
        self._full = full
        self._upload_id: str | None = None
        self._etags: dict[int, str] = {}
        self._sizes: dict[int, int] = {}
        self._complete_tried = False

    @once
    def _put_whole(self, data: bytes) -> ObjectInfo:
        return self._s.put(self.key, data, if_absent=self.if_absent)

    def _send_part(self, number: int, data: bytes, last: bool) -> None:
        c = self._s.client
        if self._upload_id is None:
            r = self._s._call(self.key, c.create_multipart_upload, Key=self._full, **self._s._write_args)
            self._upload_id = r["UploadId"]
        r = self._s._call(
            self.key, c.upload_part, Key=self._full, UploadId=self._upload_id, PartNumber=number, Body=data,
            **self._s._request_args,
        )
        self._etags[number] = r["ETag"]  # a re-sent part replaces the earlier one, same number
        self._sizes[number] = len(data)

    @once
    def _complete(self) -> ObjectInfo:
        parts = [{"ETag": self._etags[n], "PartNumber": n} for n in sorted(self._etags)]
        extra = {"IfNoneMatch": "*"} if self.if_absent else {}
        retry = self._complete_tried
        self._complete_tried = True
        try:
            r = self._s._call(
                self.key,
                self._s.client.complete_multipart_upload,
                Key=self._full,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},
                **extra,
            )
        except ObjectExists:
            if retry and self._already_ours():
                return self._s.stat(self.key)
            self.abort()
            raise
        except StorageError as e:
            # A lost response to an earlier complete leaves NoSuchUpload behind: if the object
            # now has exactly our multipart ETag, that complete went through.
            if retry and "NoSuchUpload" in str(e) and self._already_ours():
                return self._s.stat(self.key)
            raise
        self._upload_id = None
        return ObjectInfo(self.key, sum(self._sizes.values()), None, _etag(r))

    def _already_ours(self) -> bool:
        try:
            digests = b"".join(bytes.fromhex(self._etags[n].strip('"')) for n in sorted(self._etags))
        except ValueError:
            return False  # not MD5 ETags (e.g. SSE-KMS): cannot prove it; report the error
        want = f"{hashlib.md5(digests).hexdigest()}-{len(self._etags)}"
        try:
            return self._s.stat(self.key).etag == want
        except ObjectNotFound:
            return False

    def _abort_upload(self) -> None:
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            try:
                self._s.client.abort_multipart_upload(Bucket=self._s.bucket, Key=self._full, UploadId=upload_id)
            except Exception:  # noqa: BLE001 - best effort; a bucket lifecycle rule reaps leftovers
                pass


class _S3Body(io.RawIOBase):
    """A GetObject body whose network errors arrive as TransientStorageError."""

    def __init__(self, storage: S3Storage, key: str, body: Any) -> None:
        self._s = storage
        self._key = key
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, b: WriteableBuffer) -> int:
        with memoryview(b) as view:
            try:
                # read(), not readinto(): it checks Content-Length at the end.
                data: bytes = self._body.read(len(view))
            except Exception as e:  # noqa: BLE001
                raise self._s._translate(e, self._key) from e
            n = len(data)
            view[:n] = data
        return n

    def close(self) -> None:
        try:
            self._body.close()
        except Exception:  # noqa: BLE001
            pass
        super().close()


def _code(e: Exception) -> str:
    r = getattr(e, "response", None)
    if isinstance(r, dict):
        return str(r.get("Error", {}).get("Code", ""))
    return ""


def _etag(r: Mapping[str, Any]) -> str | None:
    etag = r.get("ETag")
    return etag.strip('"') if isinstance(etag, str) else None


def _is_network(e: Exception) -> bool:
    try:
        from urllib3 import exceptions as ux
    except ImportError:  # pragma: no cover - botocore depends on urllib3
        return isinstance(e, (ConnectionError, TimeoutError))
    return isinstance(e, (ux.ProtocolError, ux.ReadTimeoutError, ux.TimeoutError, ConnectionError, TimeoutError))
