"""Provider-side encryption of a destination: which kinds offer what, and what the connectors receive."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest

from firebackup.errors import UsageError
from firebackup.services.commands import AddDestination, StorageEncryption
from firebackup.services.storage_opener import DestinationPolicy, DestinationStorageOpener
from firebackup.storage.gcs import GCSStorage
from firebackup.storage.retry import RetryingStorage
from firebackup.storage.s3 import S3Encryption, S3Storage

CREDS = {"access_key_id": "AKIDTENANT", "secret_access_key": "tenant-secret"}
SSE_C_KEY = base64.b64encode(os.urandom(32)).decode()
CMEK = "projects/p/locations/europe-west1/keyRings/r/cryptoKeys/backups"


def _open(kind: str, url: str, options: dict[str, str], creds: dict[str, Any] | None = None) -> Any:
    storage = DestinationStorageOpener(DestinationPolicy(allow_ambient=True))(kind, url, options, creds)
    assert isinstance(storage, RetryingStorage)
    return storage.inner


def test_an_s3_destination_with_sse_kms_hands_its_key_id_to_the_connector() -> None:
    s3 = _open("s3", "s3://b/p", {"encryption": "sse-kms", "kms_key": "alias/backups"}, CREDS)
    assert isinstance(s3, S3Storage) and s3.encryption == S3Encryption("aws:kms", "alias/backups")


def test_a_spaces_destination_with_sse_c_sends_the_customer_key_it_was_given_and_not_as_an_access_key() -> None:
    s3 = _open("spaces", "spaces://b/p?region=nyc3", {"encryption": "sse-c"}, {**CREDS, "sse_customer_key": SSE_C_KEY})
    assert s3.encryption == S3Encryption("SSE-C", customer_key=base64.b64decode(SSE_C_KEY))
    assert SSE_C_KEY not in repr(s3.encryption)


def test_a_gcs_destination_with_cmek_hands_its_kms_key_name_to_the_connector() -> None:
    gcs = _open("gcs", "gs://b/p", {"encryption": "cmek", "kms_key": CMEK})
    assert isinstance(gcs, GCSStorage) and gcs.kms_key_name == CMEK


def test_a_destination_without_encryption_asks_its_connector_for_none() -> None:
    assert _open("s3", "s3://b/p", {}, CREDS).encryption is None
    assert _open("gcs", "gs://b/p", {}).kms_key_name is None


@pytest.mark.parametrize("kind, url, options, creds, says", [
    ("spaces", "spaces://b/p?region=nyc3", {"encryption": "sse-s3"}, CREDS, "offers encryption sse-c, not sse-s3"),
    ("s3", "s3://b/p", {"encryption": "cmek", "kms_key": CMEK}, CREDS, "not cmek"),
    ("gcs", "gs://b/p", {"encryption": "sse-kms"}, None, "offers encryption cmek"),
    ("gcs", "gs://b/p", {"encryption": "cmek"}, None, "cmek needs kms_key"),
    ("gcs", "gs://b/p", {"encryption": "cmek", "kms_key": "projects/p/cryptoKeys"}, None, "cmek needs kms_key"),
    ("s3", "s3://b/p", {"encryption": "sse-s3", "kms_key": "alias/x"}, CREDS, "sse-s3 takes no kms_key"),
    ("s3compat", "s3://b/p", {"encryption": "sse-c", "endpoint_url": "https://m.example"}, CREDS, "sse-c needs"),
    ("s3", "s3://b/p", {"encryption": "sse-s3"}, {**CREDS, "sse_customer_key": SSE_C_KEY}, "only sse-c takes one"),
    ("spaces", "spaces://b/p?region=nyc3", {"encryption": "sse-c"}, {**CREDS, "sse_customer_key": "c2hvcnQ="},
     "must be 32 bytes"),
    ("s3", "s3://b/p", {"kms_key": "alias/x"}, CREDS, "needs its encryption mode"),
])
def test_encryption_a_kind_does_not_offer_or_an_incomplete_setting_is_refused_in_one_line(
        kind: str, url: str, options: dict[str, str], creds: dict[str, Any] | None, says: str) -> None:
    with pytest.raises(UsageError) as e:
        DestinationPolicy(allow_ambient=True, egress=_no_dns()).check(kind, url, options, creds)
    assert says in str(e.value) and "\n" not in str(e.value)


def _no_dns() -> Any:
    from firebackup.egress import EgressGuard

    return EgressGuard(resolver=lambda host, port: ["93.184.216.34"])


def test_the_stored_options_show_the_encryption_but_never_the_sse_c_key() -> None:
    cmd = AddDestination(name="d", kind="s3", url="s3://b/p", region="eu-west-1",
                         encryption=StorageEncryption("sse-kms", "alias/backups"))
    assert cmd.options() == {"region": "eu-west-1", "encryption": "sse-kms", "kms_key": "alias/backups"}


def test_s3_encryption_refuses_a_customer_key_of_the_wrong_size() -> None:
    with pytest.raises(UsageError, match="32 bytes"):
        S3Encryption("SSE-C", customer_key=b"short")
