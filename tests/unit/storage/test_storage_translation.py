"""Vendor errors become firebackup.errors inside each connector (hand-made SDK errors, no network)."""

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from google.api_core import exceptions as gx
from google.auth import exceptions as ax
import requests

from firebackup.errors import (
    AccessDenied,
    BucketNotFound,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    TransientStorageError,
)
from firebackup.storage import open_storage
from firebackup.storage.gcs import GCSStorage
from firebackup.storage.s3 import S3Storage


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} message"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


class BucketThere:
    """Answers head_bucket / bucket.exists() as if the bucket exists."""

    def head_bucket(self, **kw):
        return {}

    def bucket(self, name):
        return self

    def exists(self, **kw):
        return True


@pytest.mark.parametrize(
    "error, kind",
    [
        (client_error("NoSuchBucket", 404), BucketNotFound),
        (client_error("NoSuchKey", 404), ObjectNotFound),
        (client_error("404", 404), ObjectNotFound),
        (client_error("AccessDenied", 403), AccessDenied),
        (client_error("InvalidAccessKeyId", 403), AccessDenied),
        (client_error("SignatureDoesNotMatch", 403), AccessDenied),
        (client_error("PreconditionFailed", 412), ObjectExists),
        (client_error("ConditionalRequestConflict", 409), TransientStorageError),
        (client_error("SlowDown", 503), TransientStorageError),
        (client_error("InternalError", 500), TransientStorageError),
        (client_error("RequestTimeout", 400), TransientStorageError),
        (client_error("InvalidArgument", 400), StorageError),
        (EndpointConnectionError(endpoint_url="http://x"), TransientStorageError),
        (ConnectTimeoutError(endpoint_url="http://x"), TransientStorageError),
        (ReadTimeoutError(endpoint_url="http://x"), TransientStorageError),
        (ConnectionResetError(104, "reset"), TransientStorageError),
        (NoCredentialsError(), AccessDenied),
    ],
)
def test_s3_errors_are_translated_to_the_projects_types(error, kind):
    s = S3Storage("bkt", "pre", client=BucketThere())
    got = s._translate(error, "k")
    assert type(got) is kind
    assert "\n" not in str(got) and "s3://bkt/pre" in str(got)


@pytest.mark.parametrize(
    "error, kind",
    [
        (gx.NotFound("no such object"), ObjectNotFound),
        (gx.Forbidden("denied"), AccessDenied),
        (gx.Unauthorized("who"), AccessDenied),
        (gx.PreconditionFailed("exists"), ObjectExists),
        (gx.TooManyRequests("slow"), TransientStorageError),
        (gx.ServiceUnavailable("503"), TransientStorageError),
        (gx.InternalServerError("500"), TransientStorageError),
        (gx.BadRequest("bad\nrequest"), StorageError),
        (ax.RefreshError("revoked"), AccessDenied),
        (ax.TransportError("dns"), TransientStorageError),
        (requests.ConnectionError("reset"), TransientStorageError),
        (requests.Timeout("slow"), TransientStorageError),
    ],
)
def test_gcs_errors_are_translated_to_the_projects_types(error, kind):
    s = GCSStorage("bkt", "pre", client=BucketThere())
    got = s._translate(error, "k")
    assert type(got) is kind
    assert "\n" not in str(got) and "gs://bkt/pre" in str(got)


def test_a_bare_404_names_the_missing_bucket_when_the_bucket_is_gone():
    class NoBucket:
        def head_bucket(self, **kw):
            raise client_error("404", 404)

    s = S3Storage("gone", "", client=NoBucket())
    assert isinstance(s._translate(client_error("404", 404), "k"), BucketNotFound)


def test_remote_urls_build_canonical_urls_without_creating_clients():
    s3 = open_storage("s3://bkt/a/b/?region=eu-west-1&endpoint=https://minio.local:9000&addressing=path", retry=False)
    assert isinstance(s3, S3Storage) and s3._client is None
    assert s3.url.startswith("s3://bkt/a/b?") and "endpoint=https%3A%2F%2Fminio.local%3A9000" in s3.url
    spaces = open_storage("spaces://space/x?region=nyc3", retry=False)
    assert spaces._endpoint == "https://nyc3.digitaloceanspaces.com" and spaces._region == "nyc3"
    assert spaces.url == "spaces://space/x?region=nyc3" and spaces._client is None
    gs = open_storage("gs://bkt/pre/fix", retry=False)
    assert isinstance(gs, GCSStorage) and gs.url == "gs://bkt/pre/fix" and gs._client is None


def test_s3_refuses_parts_below_its_minimum_and_gcs_parts_off_the_256k_grid():
    from firebackup.errors import UsageError

    with pytest.raises(UsageError):
        open_storage("s3://b/p", part_size=1 << 20)
    with pytest.raises(UsageError):
        open_storage("gs://b/p", part_size=(1 << 20) + 1)
    with pytest.raises(UsageError, match="unknown storage option"):
        open_storage("gs://b/p", colour="blue")
