"""Fixtures for format tests."""

from __future__ import annotations

import pytest

from fmt_helpers import Built, build_chunk


@pytest.fixture
def built() -> Built:
    return build_chunk()


@pytest.fixture
def fake_kms_key():
    from firebackup.crypto.keys import KmsKey
    from tests.unit.crypto.kms_fakes import KMS_NAME, FakeKmsClient

    return KmsKey(KMS_NAME, FakeKmsClient([KMS_NAME]))
