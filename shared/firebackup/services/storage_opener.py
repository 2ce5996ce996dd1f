"""Open a tenant's storage destination with its own credentials, never the platform's.

The rules a destination must meet are written once, in DestinationPolicy.check, and applied when
the destination is created (services/resources.py) and again each time it is opened (here), so a
row stored before a rule existed, or a name that resolves elsewhere since, is refused when used.

- A tenant destination carries its own credentials (S3-style access keys; for GCS a
  service-account key whose token endpoint is Google's) and talks to a fixed endpoint: AWS's
  regional one, Spaces' regional one, storage.googleapis.com, or for s3compat its endpoint_url,
  checked by the egress guard. Passed explicitly, they make boto3 and google-cloud-storage ignore
  AWS_ENDPOINT_URL / STORAGE_EMULATOR_HOST and the server's own identity (the AWS default chain,
  Application Default Credentials), which is never used for tenant storage.
- Development only (Settings.allow_ambient_storage): destinations without credentials use the
  server's identity, and the environment's endpoints apply, as the local platform and tests need.
- Local folders only below Settings.local_storage_root, checked with realpath (no `..`, no
  symlink out of the root), and opened at the resolved path.

Everything goes through firebackup.storage.open_storage, so a destination gets the project's own
connectors (storage/s3.py, storage/gcs.py) with their SDKs' retry loops off, wrapped once in
RetryingStorage. `bounded=True` is for a call an HTTP request waits on (/test): one try and
BOUNDED_TIMEOUTS, so a host that never answers releases the request within seconds.
Credentials go to the connector, never into the URL; nothing here reads the environment.

Storage-provider encryption (options "encryption" and "kms_key", ENCRYPTION_MODES says which kind
takes which) is handed to the connector, which asks for it on every object it writes.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from firebackup.egress import EgressGuard, check_service_account_key, google_key_info
from firebackup.errors import AccessDenied, BadURL, UsageError
from firebackup.storage import Storage, open_storage
from firebackup.storage.s3 import S3Encryption, SseMode

if TYPE_CHECKING:
    from firebackup.settings import Settings

S3_KINDS = ("s3", "spaces", "s3compat")
SCHEMES = {"s3": "s3", "spaces": "spaces", "gcs": "gs", "s3compat": "s3", "local": "file"}
GCS_ENDPOINT = "https://storage.googleapis.com"
# (connect, read) seconds for a call an HTTP request waits on: long enough for a healthy store
# across a continent, short enough that a stalled one frees the request well inside 15 s.
BOUNDED_TIMEOUTS = (3.0, 5.0)

# Which provider-side encryption each kind offers: Spaces supports SSE-C only (DigitalOcean's S3
# compatibility table), GCS customer-managed keys; S3-compatible stores vary, so all three S3 kinds.
ENCRYPTION_MODES: dict[str, tuple[str, ...]] = {
    "s3": ("sse-s3", "sse-kms"), "s3compat": ("sse-s3", "sse-kms", "sse-c"), "spaces": ("sse-c",),
    "gcs": ("cmek",), "local": (),
}
_SSE: dict[str, SseMode] = {"sse-s3": "AES256", "sse-kms": "aws:kms", "sse-c": "SSE-C"}
_AWS_KMS_KEY = re.compile(r"[A-Za-z0-9:/_+=.,@-]{1,2048}")
_CLOUD_KMS_KEY = re.compile(r"projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+")
_REGION = re.compile(r"[a-z0-9-]{1,64}")
_BUCKET = re.compile(r"[A-Za-z0-9._-]{1,255}")


@dataclass(frozen=True)
class DestinationPolicy:
    """What a tenant destination may be; built from Settings (from_settings), checked by check()."""

    egress: EgressGuard = field(default_factory=EgressGuard)
    allow_ambient: bool = False
    allow_local: bool = False
    local_root: str | None = None
    default_region: str = "us-east-1"
    # The environment's S3 endpoint (development: moto); used only with allow_ambient.
    default_s3_endpoint: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> DestinationPolicy:
        dev = settings.allow_private_egress
        return cls(egress=EgressGuard(allow_private=dev, allow_http=dev),
                   allow_ambient=settings.allow_ambient_storage, allow_local=settings.allow_local_storage,
                   local_root=settings.local_storage_root, default_region=settings.aws_region,
                   default_s3_endpoint=settings.s3_endpoint_url)

    def check(self, kind: str, url: str, options: Mapping[str, Any],
              credentials: Mapping[str, Any] | None) -> None:
        """Raise UsageError (BadURL, EgressRefused) in one line if a tenant may not use this destination.

        options may name "region" and "endpoint_url"; endpoint_url's host is resolved and checked.
        """
        want = SCHEMES.get(kind)
        if want is None:
            raise BadURL(f"unknown destination kind {kind!r}; use one of {', '.join(SCHEMES)}")
        if any(c.isspace() or not c.isprintable() for c in url):
            raise BadURL("the URL must not contain whitespace or control characters")
        try:
            parts = urlsplit(url)
            query = parse_qsl(parts.query, keep_blank_values=True)
        except ValueError:
            raise BadURL(f"the URL cannot be parsed; use {want}://bucket/prefix") from None
        if parts.scheme != want:
            raise BadURL(f"a {kind} destination needs a {want}:// URL")
        if "@" in parts.netloc:
            raise BadURL("the URL must not contain credentials (user:password@); send them as credentials")
        allowed = {"region"} if kind in S3_KINDS else set()
        if "#" in url or (parts.query and not query) or {name for name, _ in query} - allowed:
            # Endpoints come only through endpoint_url, where the egress guard checks them; anything
            # else in a query is a secret or an option a tenant does not get to set.
            raise BadURL("the URL may carry no query or fragment other than ?region=...; send an endpoint as "
                         "endpoint_url and secrets as credentials")
        region = options.get("region") or dict(query).get("region")
        if region is not None and not _REGION.fullmatch(region):
            raise BadURL("the region must be lowercase letters, digits and dashes, e.g. eu-west-1")
        if kind == "local":
            if credentials:
                raise UsageError("local destinations take no credentials")
            self.local_path(url)
            return
        if not _BUCKET.fullmatch(parts.netloc):
            raise BadURL(f"the URL needs a bucket: {want}://bucket/prefix")
        if kind == "spaces" and not region:
            raise BadURL("a spaces destination needs its region, e.g. nyc3")
        self._check_endpoint(kind, options.get("endpoint_url"))
        self._check_encryption(kind, options, credentials or {})
        self._check_credentials(kind, {k: v for k, v in (credentials or {}).items() if k != "sse_customer_key"})

    def _check_encryption(self, kind: str, options: Mapping[str, Any], c: Mapping[str, Any]) -> None:
        mode, key = options.get("encryption"), options.get("kms_key")
        offered = ENCRYPTION_MODES[kind]
        if mode is None:
            if key or c.get("sse_customer_key"):
                raise UsageError("a KMS key or an SSE-C key needs its encryption mode; set encryption")
            return
        if mode not in offered:
            raise UsageError(f"a {kind} destination offers encryption {', '.join(offered) or 'none'}, not {mode}")
        if mode == "cmek" and not (key and _CLOUD_KMS_KEY.fullmatch(key)):
            raise UsageError("cmek needs kms_key: projects/P/locations/L/keyRings/R/cryptoKeys/K")
        if mode == "sse-kms" and key is not None and not _AWS_KMS_KEY.fullmatch(key):
            raise UsageError("kms_key for sse-kms must be an AWS KMS key id, ARN or alias")
        if mode in ("sse-s3", "sse-c") and key:
            raise UsageError(f"{mode} takes no kms_key")
        if (mode == "sse-c") != bool(c.get("sse_customer_key")):
            raise UsageError("sse-c needs credentials.sse_customer_key (base64 of 32 bytes), and only sse-c takes one")
        if mode == "sse-c":
            _customer_key(c["sse_customer_key"])

    def _check_endpoint(self, kind: str, endpoint: str | None) -> None:
        if kind != "s3compat":
            if endpoint:
                raise BadURL(f"endpoint_url is for s3compat destinations; a {kind} destination uses its provider's")
            return
        if not endpoint:
            raise BadURL("an S3-compatible destination needs endpoint_url")
        parts = urlsplit(endpoint)
        if parts.query or parts.fragment:
            raise BadURL("endpoint_url must be scheme://host[:port] without a query")
        self.egress.check_url(endpoint, what="endpoint_url")

    def _check_credentials(self, kind: str, c: Mapping[str, Any]) -> None:
        key = c.get("service_account_key")
        if kind == "gcs":
            if c.get("access_key_id") or c.get("secret_access_key"):
                raise UsageError("GCS destinations take a service_account_key, not access keys")
            if key is not None:
                check_service_account_key(key)
            elif not self.allow_ambient:
                raise UsageError("a gcs destination needs a service_account_key of its own; the platform's "
                                 "identity is never used for tenant storage")
            return
        if key is not None or (c and not (c.get("access_key_id") and c.get("secret_access_key"))):
            raise UsageError("S3-style destinations take access_key_id and secret_access_key")
        if not c and not self.allow_ambient:
            raise UsageError(f"a {kind} destination needs access_key_id and secret_access_key of its own; the "
                             "platform's identity is never used for tenant storage")

    def local_path(self, url: str) -> str:
        """The real path (symlinks resolved) of a file:// destination, refused unless under local_root."""
        if not self.allow_local:
            raise UsageError("local folders are for development only; set FIREBACKUP_ALLOW_LOCAL_STORAGE=1 to "
                             "allow them")
        if not self.local_root:
            raise UsageError("local folders need a root; set FIREBACKUP_LOCAL_STORAGE_ROOT to the folder they "
                             "must stay under")
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise BadURL("a local destination needs file:///absolute/path")
        if ".." in parts.path.split("/") or ".." in unquote(parts.path).split("/"):
            raise BadURL("the path must not contain '..' segments")
        root = os.path.realpath(self.local_root)
        real = os.path.realpath(parts.path)
        if os.path.commonpath([root, real]) != root or any(c in real for c in "?#"):
            raise BadURL(f"local folders must be under {self.local_root}, symlinks resolved; pick a folder there")
        return real


class DestinationStorageOpener:
    """Callable as (kind, url, options, credentials, *, bounded=False) -> Storage, for a destination row."""

    def __init__(self, policy: DestinationPolicy | None = None) -> None:
        self.policy = policy or DestinationPolicy()

    @classmethod
    def from_settings(cls, settings: Settings) -> DestinationStorageOpener:
        return cls(DestinationPolicy.from_settings(settings))

    def __call__(self, kind: str, url: str, options: Mapping[str, Any], credentials: Mapping[str, Any] | None,
                 *, bounded: bool = False) -> Storage:
        # Checked at every open: each task opens its destination anew. boto3 resolves an s3compat
        # endpoint again when it connects, so a name whose DNS changes within the life of this one
        # Storage (one task, or one /test) is the window the guard leaves: it cannot see botocore's
        # own connections. AWS, Spaces and Google endpoints are fixed here and need no check.
        self.policy.check(kind, url, options, credentials)
        opts: dict[str, Any] = {"retry": False} if bounded else {}
        if kind == "local":
            return open_storage(f"file://{self.policy.local_path(url)}", **opts)
        pinned = not self.policy.allow_ambient
        creds = dict(credentials or {})
        mode = options.get("encryption")
        if kind == "gcs":
            if bounded:
                opts["timeout"] = BOUNDED_TIMEOUTS
            if mode == "cmek":
                opts["kms_key_name"] = options["kms_key"]
            if creds:
                opts["client"] = _gcs_client(creds["service_account_key"], pinned=pinned)
            return open_storage(url, **opts)
        if bounded:
            opts["connect_timeout"], opts["read_timeout"] = BOUNDED_TIMEOUTS
        if mode is not None:
            customer = creds.pop("sse_customer_key", None)
            opts["encryption"] = S3Encryption(_SSE[mode], kms_key_id=options.get("kms_key") or None,
                                              customer_key=_customer_key(customer) if customer else None)
        if creds:
            opts["access_key_id"] = creds["access_key_id"]
            opts["secret_access_key"] = creds["secret_access_key"]
        return open_storage(self._s3_url(kind, url, options, pinned=pinned), **opts)

    def _s3_url(self, kind: str, url: str, options: Mapping[str, Any], *, pinned: bool) -> str:
        """The URL with the destination's region and endpoint in its query (options win over the URL)."""
        parts = urlsplit(url)
        region = options.get("region") or dict(parse_qsl(parts.query)).get("region") or self.policy.default_region
        query = {"region": region}
        if kind == "s3compat":
            query["endpoint"] = options["endpoint_url"]
        elif kind == "s3" and pinned:
            query["endpoint"] = f"https://s3.{region}.amazonaws.com"
        elif kind == "s3" and self.policy.default_s3_endpoint:
            query["endpoint"] = self.policy.default_s3_endpoint
        return urlunsplit(parts._replace(query=urlencode(query)))

    def __repr__(self) -> str:
        return f"DestinationStorageOpener({self.policy!r})"


def _customer_key(text: str) -> bytes:
    """An SSE-C key from its base64 form; a refusal never quotes it."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise UsageError("sse_customer_key must be base64 of 32 random bytes") from None
    if len(raw) != 32:
        raise UsageError(f"sse_customer_key must be 32 bytes (AES-256), got {len(raw)}")
    return raw


def _gcs_client(key: Mapping[str, Any], *, pinned: bool) -> Any:
    """A google-cloud-storage client on the destination's service-account key, for GCSStorage (which
    applies its own timeouts and retry=None to every call it makes with it).

    pinned: storage.googleapis.com named explicitly, so STORAGE_EMULATOR_HOST cannot redirect it.
    """
    info = google_key_info(key)  # Google's token endpoint, whatever the key says
    try:
        from google.cloud.storage import Client
        from google.oauth2 import service_account

        creds = service_account.Credentials.from_service_account_info(info)  # type: ignore[no-untyped-call]
        options = {"api_endpoint": GCS_ENDPOINT} if pinned else None
        return Client(project=info.get("project_id"), credentials=creds, client_options=options)
    except (ValueError, KeyError, TypeError, AttributeError):
        # The vendor's message could quote the key: say only what to do.
        raise AccessDenied("the GCS service-account key was rejected; upload a valid key") from None
