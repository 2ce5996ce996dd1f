"""Storage backends behind one contract (base.Storage), chosen by URL.

    storage = open_storage("gs://bucket/prefix")

Schemes: file:///abs/path (or file:rel/path), memory://, s3://bucket/prefix
[?endpoint=https://host&region=R&addressing=path|virtual], spaces://bucket/prefix?region=nyc3,
gs://bucket/prefix. Credentials never go in the URL: S3 uses the usual AWS environment and
credential chain (AWS_ENDPOINT_URL included), GCS uses Application Default Credentials
(STORAGE_EMULATOR_HOST included). Vendor SDKs are imported only when a URL needs them.
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import SplitResult, parse_qsl, urlsplit

from firebackup.errors import BadURL, UsageError
from firebackup.retry import RetryPolicy
from firebackup.storage.base import ObjectInfo, ObjectWriter, Storage, check_key, check_prefix
from firebackup.storage.memory import MemoryStorage
from firebackup.storage.retry import RetryingStorage

__all__ = [
    "ObjectInfo",
    "ObjectWriter",
    "Storage",
    "MemoryStorage",
    "RetryingStorage",
    "open_storage",
    "register_scheme",
    "check_key",
    "check_prefix",
]

Factory = Callable[..., Storage]
_REGISTRY: dict[str, Factory] = {}
_WRAP_ARGS = ("attempts", "base_delay", "max_delay", "deadline")


def register_scheme(scheme: str, factory: Factory) -> None:
    """Make open_storage() hand URLs of `scheme` to factory(parsed_url, query, **opts)."""
    _REGISTRY[scheme] = factory


def open_storage(url: str, *, retry: bool = True, **opts: Any) -> Storage:
    """Open the storage location named by url.

    Remote backends come wrapped in RetryingStorage unless retry=False (attempts, base_delay,
    max_delay and deadline tune its RetryPolicy); other opts go to the backend (part_size,
    page_size, client, ...).
    Raises BadURL, in one line, for a URL no backend can use.
    """
    if not isinstance(url, str) or not url:
        raise BadURL("empty storage URL; use file:///path, s3://bucket/prefix, spaces://bucket/prefix?region=R or gs://bucket/prefix")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    factory = _REGISTRY.get(scheme)
    if factory is None:
        known = ", ".join(f"{s}://" for s in sorted(_REGISTRY))
        raise BadURL(f"unsupported storage URL {_safe(url)}; use one of {known}")
    if "@" in parts.netloc:
        raise BadURL(
            f"storage URL {scheme}://… contains credentials; remove them and use the environment "
            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS)"
        )
    try:
        query = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)))
    except ValueError:
        raise BadURL(f"cannot parse the query of storage URL {_safe(url)}") from None
    wrap_opts = {k: opts.pop(k) for k in _WRAP_ARGS if k in opts}
    try:
        storage = factory(parts, query, **opts)
    except TypeError as e:
        if "unexpected keyword argument" not in str(e):
            raise
        raise UsageError(f"unknown storage option for {scheme}:// ({str(e).split('argument')[-1].strip()})") from None
    if retry and scheme != "memory":
        return RetryingStorage(storage, RetryPolicy(**wrap_opts))
    return storage


def _safe(url: str) -> str:
    """The URL without anything that may be a secret (userinfo, query)."""
    p = urlsplit(url)
    host = p.netloc.rsplit("@", 1)[-1]
    return f"{p.scheme}://{host}{p.path}" if p.scheme else "(a URL without scheme)"


def _no_query(parts: SplitResult, query: dict[str, str], allowed: tuple[str, ...] = ()) -> None:
    extra = sorted(set(query) - set(allowed))
    if extra:
        allowed_txt = ", ".join(allowed) if allowed else "none"
        raise BadURL(f"unknown option {extra[0]!r} in {parts.scheme}://{parts.netloc}{parts.path}; allowed: {allowed_txt}")


def _bucket_and_prefix(parts: SplitResult) -> tuple[str, str]:
    bucket = parts.netloc
    if not bucket:
        raise BadURL(f"storage URL {parts.scheme}://{parts.path} has no bucket; use {parts.scheme}://bucket/prefix")
    prefix = parts.path.strip("/")
    if prefix:
        try:
            check_prefix(prefix + "/")
        except Exception:
            raise BadURL(f"bad prefix {prefix!r} in {parts.scheme}://{bucket}/{prefix}: no empty, '.' or '..' segments") from None
    return bucket, prefix


def _open_memory(parts: SplitResult, query: dict[str, str], **opts: Any) -> Storage:
    _no_query(parts, query)
    return MemoryStorage(url=f"memory://{parts.netloc}{parts.path}", **opts)


def _open_file(parts: SplitResult, query: dict[str, str], **opts: Any) -> Storage:
    from firebackup.storage.file import FileStorage

    _no_query(parts, query)
    if parts.netloc not in ("", "localhost"):
        raise BadURL(
            f"file URL names host {parts.netloc!r}; use file:///absolute/path or file:relative/path"
        )
    if not parts.path:
        raise BadURL("file URL has no path; use file:///absolute/path or file:relative/path")
    return FileStorage(parts.path, **opts)


def _open_s3(parts: SplitResult, query: dict[str, str], **opts: Any) -> Storage:
    _no_query(parts, query, ("endpoint", "region", "addressing"))
    bucket, prefix = _bucket_and_prefix(parts)
    endpoint = query.get("endpoint") or None
    if endpoint:
        ep = urlsplit(endpoint)
        if ep.scheme not in ("http", "https") or not ep.netloc or "@" in ep.netloc:
            raise BadURL(f"bad endpoint in s3://{bucket}/{prefix}: use endpoint=https://host[:port] without credentials")
    addressing = query.get("addressing") or None
    if addressing not in (None, "path", "virtual"):
        raise BadURL(f"bad addressing={addressing!r} in s3://{bucket}/{prefix}: use path or virtual")
    from firebackup.storage.s3 import S3Storage

    return S3Storage(bucket, prefix, endpoint=endpoint, region=query.get("region") or None, addressing=addressing, **opts)


def _open_spaces(parts: SplitResult, query: dict[str, str], **opts: Any) -> Storage:
    _no_query(parts, query, ("region",))
    bucket, prefix = _bucket_and_prefix(parts)
    region = query.get("region", "")
    if not region or not region.replace("-", "").isalnum():
        raise BadURL(f"spaces://{bucket}/{prefix} needs its region, e.g. spaces://{bucket}/{prefix}?region=nyc3")
    from firebackup.storage.s3 import S3Storage

    return S3Storage(
        bucket,
        prefix,
        endpoint=f"https://{region}.digitaloceanspaces.com",
        region=region,
        scheme="spaces",
        **opts,
    )


def _open_gs(parts: SplitResult, query: dict[str, str], **opts: Any) -> Storage:
    _no_query(parts, query)
    bucket, prefix = _bucket_and_prefix(parts)
    from firebackup.storage.gcs import GCSStorage

    return GCSStorage(bucket, prefix, **opts)


register_scheme("memory", _open_memory)
register_scheme("file", _open_file)
register_scheme("s3", _open_s3)
register_scheme("spaces", _open_spaces)
register_scheme("gs", _open_gs)
