"""Tenant destinations open through the project's own connectors: their timeouts, one retry loop."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from firebackup.errors import AccessDenied
from firebackup.services.storage_opener import DestinationStorageOpener
from firebackup.storage.gcs import GCSStorage
from firebackup.storage.retry import RetryingStorage
from firebackup.storage.s3 import S3Storage

CREDS = {"access_key_id": "AKIDTENANT", "secret_access_key": "tenant-secret"}


def test_an_s3_compatible_destination_gets_our_s3_connector_with_its_timeouts_and_no_sdk_retries():
    opener = DestinationStorageOpener()
    storage = opener("s3compat", "s3://bkt/backups", {"endpoint_url": "http://127.0.0.1:9000"}, CREDS)
    assert isinstance(storage, RetryingStorage) and isinstance(storage.inner, S3Storage)  # one retry layer
    client = storage.inner.client  # made here, connects on first use
    config = client.meta.config
    assert config.retries["total_max_attempts"] == 1, "botocore must not retry under RetryingStorage"
    assert (config.connect_timeout, config.read_timeout) == (10, 60)
    assert client.meta.endpoint_url == "http://127.0.0.1:9000" and client.meta.region_name == "us-east-1"
    assert client._request_signer._credentials.access_key == "AKIDTENANT"
    assert "tenant-secret" not in storage.url and "AKIDTENANT" not in storage.url


def test_defaults_fill_only_what_neither_the_destination_nor_its_url_names():
    opener = DestinationStorageOpener(default_s3_endpoint="http://minio:9000", default_region="eu-west-1")
    plain = opener("s3", "s3://bkt/p", {}, None).inner
    assert (plain.client.meta.endpoint_url, plain.client.meta.region_name) == ("http://minio:9000", "eu-west-1")
    in_url = opener("s3", "s3://bkt/p?region=ap-south-1", {}, None).inner
    assert in_url.client.meta.region_name == "ap-south-1"
    in_options = opener("s3", "s3://bkt/p?region=ap-south-1", {"region": "us-west-2"}, None).inner
    assert in_options.client.meta.region_name == "us-west-2"


def test_a_spaces_destination_takes_its_region_and_the_spaces_endpoint():
    storage = DestinationStorageOpener(default_s3_endpoint="http://ignored:1")(
        "spaces", "spaces://bkt/p", {"region": "ams3"}, CREDS)
    assert storage.inner.client.meta.endpoint_url == "https://ams3.digitaloceanspaces.com"


def _service_account_key() -> dict[str, str]:
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return {"type": "service_account", "project_id": "tenant-p", "private_key_id": "k1", "private_key": pem.decode(),
            "client_email": "backup@tenant-p.iam.gserviceaccount.com", "client_id": "1",
            "token_uri": "https://oauth2.googleapis.com/token"}


def test_a_gcs_destination_gets_our_gcs_connector_on_the_tenants_service_account():
    storage = DestinationStorageOpener()("gcs", "gs://bkt/p", {}, {"service_account_key": _service_account_key()})
    assert isinstance(storage, RetryingStorage) and isinstance(storage.inner, GCSStorage)
    client = storage.inner.client
    assert client.project == "tenant-p"
    assert client._credentials.service_account_email == "backup@tenant-p.iam.gserviceaccount.com"


def test_a_malformed_service_account_key_is_access_denied_without_quoting_it():
    bad = {"service_account_key": {"type": "service_account", "private_key": "-----BEGIN SECRET-----abc"}}
    with pytest.raises(AccessDenied) as e:
        DestinationStorageOpener()("gcs", "gs://bkt/p", {}, bad)
    assert "\n" not in str(e.value) and "SECRET" not in str(e.value) and e.value.__cause__ is None
