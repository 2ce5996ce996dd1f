"""Storage-provider encryption on every object the connectors write, single puts and multipart alike.

moto records SSE-S3 and SSE-KMS (read back with head_object); it ignores SSE-C, and fake-gcs-server
ignores kmsKeyName, so for those the requests on the wire are recorded and must carry the key.
"""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
import requests

from firebackup.storage.s3 import S3Encryption
from firebackup.storage.gcs import GCSStorage

pytestmark = pytest.mark.integration

BIG = 11 << 20  # over two 5 MiB parts: the multipart path
KMS_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
CMEK = "projects/p/locations/global/keyRings/r/cryptoKeys/backups"


def _write_small_and_big(store: Any) -> None:
    store.put("small", b"x" * 100)
    with store.open_write("big") as w:
        w.write(os.urandom(BIG))


@pytest.mark.parametrize("enc, want_key", [(S3Encryption("AES256"), None), (S3Encryption("aws:kms", KMS_ARN), KMS_ARN)])
def test_every_s3_object_written_is_stored_with_the_destinations_server_side_encryption(s3_backend, enc, want_key):
    store = s3_backend.open(encryption=enc)
    _write_small_and_big(store)
    client, bucket = s3_backend.raw["client"], s3_backend.raw["bucket"]
    for key in ("small", "big"):
        head = client.head_object(Bucket=bucket, Key=f"{store.prefix}/{key}")
        assert head.get("ServerSideEncryption") == enc.mode, key
        assert head.get("SSEKMSKeyId") == want_key, key
    assert store.stat("big").size == BIG


def test_an_s3_object_written_without_encryption_carries_none_so_the_check_above_can_fail(s3_backend):
    store = s3_backend.open()
    store.put("plain", b"x")
    head = s3_backend.raw["client"].head_object(Bucket=s3_backend.raw["bucket"], Key=f"{store.prefix}/plain")
    assert head.get("ServerSideEncryption") in (None, "AES256")  # moto may report the bucket default
    assert head.get("SSEKMSKeyId") is None


def test_sse_c_sends_the_customer_key_with_every_write_and_read_request(s3_backend):
    key = os.urandom(32)
    store = s3_backend.open(encryption=S3Encryption("SSE-C", customer_key=key))
    seen: list[tuple[str, dict[str, str]]] = []

    def record(request: Any, **kwargs: Any) -> None:
        headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        seen.append((kwargs["event_name"].split(".")[-1], headers))

    store.client.meta.events.register("before-send.s3", record)
    _write_small_and_big(store)
    assert store.get("small") == b"x" * 100 and store.stat("big").size == BIG
    ops = {op for op, _ in seen}
    assert {"PutObject", "CreateMultipartUpload", "UploadPart", "GetObject", "HeadObject"} <= ops
    wanted = base64.b64encode(key).decode()
    for op, headers in seen:
        if op in ("PutObject", "CreateMultipartUpload", "UploadPart", "GetObject", "HeadObject"):
            assert headers.get("x-amz-server-side-encryption-customer-algorithm") == "AES256", op
            assert headers.get("x-amz-server-side-encryption-customer-key") == wanted, op


class RecordingSession(requests.Session):
    """The GCS client's HTTP session, recording each request's method and URL on its way to the server."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str]] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        self.sent.append((str(method), str(url)))
        return super().request(method, url, *args, **kwargs)


def test_every_gcs_upload_asks_for_the_destinations_cmek_key(gcs_backend, gcs_server):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    http = RecordingSession()
    client = storage.Client(project="test", credentials=AnonymousCredentials(), _http=http,
                            client_options={"api_endpoint": gcs_server.env["STORAGE_EMULATOR_HOST"]})
    store = GCSStorage(gcs_backend.raw["bucket"], "cmek-" + os.urandom(4).hex(), part_size=1 << 20, client=client,
                       kms_key_name=CMEK)
    store.put("small", b"x" * 100)
    with store.open_write("big") as w:
        w.write(os.urandom(3 << 20))
    uploads = [url for method, url in http.sent if method == "POST" and "/upload/" in url]
    assert any("uploadType=multipart" in u for u in uploads) and any("uploadType=resumable" in u for u in uploads)
    assert all("kmsKeyName=" + requests.utils.quote(CMEK, safe="") in u for u in uploads), uploads
    assert store.get("small") == b"x" * 100 and store.stat("big").size == 3 << 20
