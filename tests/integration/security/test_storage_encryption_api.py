"""A destination's storage-provider encryption through the API: set at creation, shown by GET, checked, never echoing a key."""

from __future__ import annotations

import base64
import os

import pytest

pytestmark = pytest.mark.integration

KEYS = {"access_key_id": "AKIDTENANT", "secret_access_key": "tenant-secret-access-key"}


def test_get_destination_shows_the_sse_kms_encryption_it_was_created_with(tenant) -> None:
    t = tenant()
    body = {"name": "s3", "kind": "s3", "url": "s3://tenant-bucket/x", "credentials": KEYS,
            "encryption": {"mode": "sse-kms", "kms_key": "arn:aws:kms:us-east-1:123456789012:key/abc"}}
    r = t.post("/destinations", body)
    assert r.status_code == 201, r.get_json()
    got = t.call("GET", f"/destinations/{r.get_json()['id']}").get_json()
    assert got["options"] == {"encryption": "sse-kms", "kms_key": "arn:aws:kms:us-east-1:123456789012:key/abc"}


def test_a_spaces_sse_c_key_is_kept_sealed_and_never_shown(tenant) -> None:
    t = tenant()
    key = base64.b64encode(os.urandom(32)).decode()
    r = t.post("/destinations", {"name": "sp", "kind": "spaces", "url": "spaces://b/x", "region": "nyc3",
                                 "credentials": {**KEYS, "sse_customer_key": key}, "encryption": {"mode": "sse-c"}})
    assert r.status_code == 201, r.get_json()
    listed = t.call("GET", "/destinations").get_data(as_text=True)
    assert key not in listed and '"encryption":"sse-c"' in listed.replace(" ", "")


def test_encryption_the_provider_does_not_offer_is_a_422_in_one_line(tenant) -> None:
    t = tenant()
    r = t.post("/destinations", {"name": "sp", "kind": "spaces", "url": "spaces://b/x", "region": "nyc3",
                                 "credentials": KEYS, "encryption": {"mode": "sse-s3"}})
    assert r.status_code == 422
    message = r.get_json()["error"]["message"]
    assert "offers encryption sse-c" in message and "\n" not in message
