"""Tenant destinations open through our own connectors, with their own credentials and fixed endpoints only.

Clients are built here and inspected; nothing connects. Names resolve from a table (the egress
guard's Resolver), so the guard's decisions are tested without DNS.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from firebackup.egress import GOOGLE_TOKEN_URI, EgressGuard
from firebackup.errors import AccessDenied, BadURL, EgressRefused, UsageError
from firebackup.services.storage_opener import (BOUNDED_TIMEOUTS, GCS_ENDPOINT, DestinationPolicy,
                                                DestinationStorageOpener)
from firebackup.settings import Settings
from firebackup.storage.file import FileStorage
from firebackup.storage.gcs import GCSStorage
from firebackup.storage.retry import RetryingStorage
from firebackup.storage.s3 import S3Storage

CREDS = {"access_key_id": "AKIDTENANT", "secret_access_key": "tenant-secret"}
PUBLIC = "93.184.216.34"


class Table:
    """A resolver answering from a dict the test may change between calls (DNS that rebinds)."""

    def __init__(self, names: Mapping[str, Sequence[str]]) -> None:
        self.names = dict(names)

    def __call__(self, host: str, port: int) -> Sequence[str]:
        if host not in self.names:
            raise OSError(f"{host} does not resolve")
        return self.names[host]


DNS = Table({"minio.tenant.example": [PUBLIC]})


def opener(resolver: Table = DNS, **policy: Any) -> DestinationStorageOpener:
    return DestinationStorageOpener(DestinationPolicy(egress=EgressGuard(resolver=resolver), **policy))


def _service_account_key(**extra: str) -> dict[str, str]:
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return {"type": "service_account", "project_id": "tenant-p", "private_key_id": "k1", "private_key": pem.decode(),
            "client_email": "backup@tenant-p.iam.gserviceaccount.com", "client_id": "1", **extra}


def test_an_s3_compatible_destination_gets_our_s3_connector_with_its_timeouts_and_no_sdk_retries() -> None:
    storage = opener()("s3compat", "s3://bkt/backups", {"endpoint_url": "https://minio.tenant.example:9000"}, CREDS)
    assert isinstance(storage, RetryingStorage) and isinstance(storage.inner, S3Storage)  # one retry layer
    client = storage.inner.client  # made here, connects on first use
    config = client.meta.config
    assert config.retries["total_max_attempts"] == 1, "botocore must not retry under RetryingStorage"
    assert (config.connect_timeout, config.read_timeout) == (10, 60)
    assert client.meta.endpoint_url == "https://minio.tenant.example:9000" and client.meta.region_name == "us-east-1"
    assert client._request_signer._credentials.access_key == "AKIDTENANT"
    assert "tenant-secret" not in storage.url and "AKIDTENANT" not in storage.url


def test_an_s3_destination_talks_to_awss_regional_endpoint_with_its_own_keys_whatever_the_environment_says(
        monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:2")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDPLATFORM")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "platform-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "platform-session")
    client = opener()("s3", "s3://bkt/p?region=ap-south-1", {}, CREDS).inner.client
    assert (client.meta.endpoint_url, client.meta.region_name) == ("https://s3.ap-south-1.amazonaws.com", "ap-south-1")
    signer = client._request_signer._credentials
    assert (signer.access_key, signer.token) == ("AKIDTENANT", None)
    in_options = opener()("s3", "s3://bkt/p?region=ap-south-1", {"region": "us-west-2"}, CREDS).inner.client
    assert in_options.meta.endpoint_url == "https://s3.us-west-2.amazonaws.com"


def test_a_spaces_destination_takes_its_region_and_the_spaces_endpoint(monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    storage = opener()("spaces", "spaces://bkt/p", {"region": "ams3"}, CREDS)
    assert storage.inner.client.meta.endpoint_url == "https://ams3.digitaloceanspaces.com"


def test_a_gcs_destination_uses_the_tenants_key_and_googles_endpoints_even_with_an_emulator_set(monkeypatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:1")
    monkeypatch.setenv("API_ENDPOINT_OVERRIDE", "http://127.0.0.1:2")
    key = _service_account_key(token_uri="https://accounts.google.com/o/oauth2/token")
    storage = opener()("gcs", "gs://bkt/p", {}, {"service_account_key": key})
    assert isinstance(storage, RetryingStorage) and isinstance(storage.inner, GCSStorage)
    client = storage.inner.client
    assert client.project == "tenant-p" and client._connection.API_BASE_URL == GCS_ENDPOINT
    assert client._credentials.service_account_email == "backup@tenant-p.iam.gserviceaccount.com"
    assert client._credentials._token_uri == GOOGLE_TOKEN_URI


def test_a_gcs_key_with_a_foreign_token_endpoint_is_refused_when_opened() -> None:
    key = _service_account_key(token_uri="http://169.254.169.254/token")
    with pytest.raises(EgressRefused, match="token_uri"):
        opener()("gcs", "gs://bkt/p", {}, {"service_account_key": key})


def test_a_malformed_service_account_key_is_access_denied_without_quoting_it() -> None:
    bad = {"service_account_key": {"type": "service_account", "private_key": "-----BEGIN SECRET-----abc"}}
    with pytest.raises(AccessDenied) as e:
        opener()("gcs", "gs://bkt/p", {}, bad)
    assert "\n" not in str(e.value) and "SECRET" not in str(e.value) and e.value.__cause__ is None


@pytest.mark.parametrize("kind, url, options", [
    ("s3", "s3://bkt/p", {}), ("spaces", "spaces://bkt/p", {"region": "nyc3"}),
    ("s3compat", "s3://bkt/p", {"endpoint_url": "https://minio.tenant.example"}), ("gcs", "gs://bkt/p", {}),
])
def test_a_destination_without_credentials_of_its_own_is_refused_outside_development(kind, url, options) -> None:
    with pytest.raises(UsageError, match="the platform's identity is never used for tenant storage"):
        opener()(kind, url, options, None)


def test_in_development_a_destination_without_credentials_uses_the_environments_endpoint() -> None:
    dev = opener(allow_ambient=True, default_s3_endpoint="http://minio:9000", default_region="eu-west-1")
    plain = dev("s3", "s3://bkt/p", {}, None).inner
    assert (plain.client.meta.endpoint_url, plain.client.meta.region_name) == ("http://minio:9000", "eu-west-1")


def test_a_bounded_open_makes_one_try_with_short_timeouts() -> None:
    s3 = opener()("s3compat", "s3://bkt/p", {"endpoint_url": "https://minio.tenant.example"}, CREDS, bounded=True)
    assert isinstance(s3, S3Storage)  # no RetryingStorage around it
    config = s3.client.meta.config
    assert (config.connect_timeout, config.read_timeout) == BOUNDED_TIMEOUTS
    assert config.retries["total_max_attempts"] == 1
    gcs = opener()("gcs", "gs://bkt/p", {}, {"service_account_key": _service_account_key()}, bounded=True)
    assert isinstance(gcs, GCSStorage) and gcs.timeout == BOUNDED_TIMEOUTS


@pytest.mark.parametrize("kind, url, options", [
    ("s3", "s3://bkt/p?endpoint=http://169.254.169.254", {}),
    ("s3", "s3://bkt/p?X-Amz-Credential=AKID&X-Amz-Signature=abc", {}),
    ("s3", "s3://bkt/p?addressing=path", {}),
    ("s3", "s3://bkt/p?region=eu-west-1&endpoint=", {}),
    ("s3", "s3://user:pw@bkt/p", {}),
    ("s3", "s3://bkt/p#frag", {}),
    ("s3", "s3://bkt/p q", {}),
    ("s3", "s3://bkt/p\u202egpj", {}),
    ("s3", "s3://169.254.169.254:80/p", {}),
    ("s3", "s3://bkt/p", {"region": "us-east-1.attacker.example/"}),
    ("s3", "s3://bkt/p", {"endpoint_url": "https://minio.tenant.example"}),
    ("spaces", "spaces://bkt/p", {}),
    ("gcs", "gs://bkt/p?region=x", {}),
    ("s3compat", "s3://bkt/p", {}),
    ("s3compat", "s3://bkt/p", {"endpoint_url": "https://minio.tenant.example/?token=x"}),
])
def test_urls_that_smuggle_endpoints_options_or_secrets_are_refused_in_one_line(kind, url, options) -> None:
    with pytest.raises(BadURL) as e:
        opener()(kind, url, options, CREDS if kind != "gcs" else {"service_account_key": _service_account_key()})
    assert "\n" not in str(e.value) and "AKID" not in str(e.value) and "abc" not in str(e.value)


@pytest.mark.parametrize("endpoint", [
    "http://minio.tenant.example", "https://169.254.169.254", "https://metadata.google.internal",
    "https://[::ffff:127.0.0.1]:9000", "https://2130706433", "https://10.0.0.8:9000", "https://rebind.tenant.example",
])
def test_an_s3_compatible_endpoint_must_be_a_public_https_host(endpoint) -> None:
    dns = Table({"minio.tenant.example": [PUBLIC], "rebind.tenant.example": [PUBLIC, "127.0.0.1"]})
    with pytest.raises(EgressRefused, match="^endpoint_url "):
        opener(dns)("s3compat", "s3://bkt/p", {"endpoint_url": endpoint}, CREDS)


def test_the_endpoint_is_checked_again_at_every_open_so_a_name_that_rebinds_is_refused_then() -> None:
    dns = Table({"minio.tenant.example": [PUBLIC]})
    open_ = opener(dns)
    options = {"endpoint_url": "https://minio.tenant.example"}
    open_("s3compat", "s3://bkt/p", options, CREDS)
    dns.names["minio.tenant.example"] = ["169.254.169.254"]
    with pytest.raises(EgressRefused, match="link-local"):
        open_("s3compat", "s3://bkt/p", options, CREDS)


def test_development_settings_let_an_endpoint_on_loopback_through() -> None:
    dev = DestinationStorageOpener.from_settings(Settings(allow_private_egress=True))
    storage = dev("s3compat", "s3://bkt/p", {"endpoint_url": "http://127.0.0.1:9000"}, CREDS)
    assert storage.inner.client.meta.endpoint_url == "http://127.0.0.1:9000"
    with pytest.raises(EgressRefused):
        DestinationStorageOpener.from_settings(Settings())("s3compat", "s3://bkt/p",
                                                           {"endpoint_url": "http://127.0.0.1:9000"}, CREDS)


# --- local folders ------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    return tmp_path / "root"


def test_a_local_destination_opens_at_its_real_path_under_the_root(root: Path) -> None:
    os.symlink(root / "real", root / "alias")  # a symlink that stays inside is fine
    storage = opener(allow_local=True, local_root=str(root))("local", (root / "alias").as_uri(), {}, None).inner
    assert isinstance(storage, FileStorage) and storage.root == os.path.realpath(root / "real")


@pytest.mark.parametrize("where", ["outside", "root/../outside", "root/%2e%2e/outside", "root/link-out/sub"])
def test_a_local_destination_outside_the_root_is_refused(root: Path, where: str) -> None:
    os.symlink(root.parent / "outside", root / "link-out")
    with pytest.raises(BadURL, match="under|'\\.\\.'"):
        opener(allow_local=True, local_root=str(root))("local", f"file://{root.parent}/{where}", {}, None)


def test_a_folder_swapped_for_a_symlink_after_creation_is_refused_when_opened(root: Path) -> None:
    policy = DestinationPolicy(allow_local=True, local_root=str(root))
    url = (root / "dest").as_uri()
    policy.check("local", url, {}, None)  # as at creation
    os.symlink(root.parent / "outside", root / "dest")
    with pytest.raises(BadURL, match="under"):
        DestinationStorageOpener(policy)("local", url, {}, None)


def test_local_destinations_need_the_switch_and_a_root() -> None:
    with pytest.raises(UsageError, match="FIREBACKUP_ALLOW_LOCAL_STORAGE"):
        opener(local_root="/tmp")("local", "file:///tmp/x", {}, None)
    with pytest.raises(UsageError, match="FIREBACKUP_LOCAL_STORAGE_ROOT"):
        opener(allow_local=True)("local", "file:///tmp/x", {}, None)
