"""Data keys, local key files and the Cloud KMS adapter (with a fake that subclasses the port)."""

from __future__ import annotations

import base64
import os
import stat

import pytest

from firebackup.crypto.keys import DataKey, KeyEncryptionKey, KmsKey, LocalKey, key_file_is_private, write_key_file
from firebackup.errors import BadKey, KmsAccessDenied, KmsError, KmsUnavailable, OperationFailed, WrongKeyOrTampered, is_transient
from firebackup.retry import RetryPolicy
from tests.unit.crypto.kms_fakes import KMS_NAME, FakeKmsClient

CTX = b"20261128T025000Z-0123abcd"


def test_generated_key_text_is_one_line_of_base64_of_32_bytes():
    text = LocalKey.generate_text()
    assert text.endswith("\n") and text.count("\n") == 1
    assert len(base64.b64decode(text.strip(), validate=True)) == 32
    assert LocalKey.generate_text() != text


def test_a_key_file_round_trips_and_is_written_owner_only(tmp_path):
    p = tmp_path / "backup.key"
    text = LocalKey.generate_text()
    write_key_file(p, text)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert key_file_is_private(p)
    assert LocalKey.from_file(p).key_id == LocalKey.from_text(text).key_id


def test_write_key_file_never_replaces_an_existing_key(tmp_path):
    p = tmp_path / "k"
    write_key_file(p, LocalKey.generate_text())
    before = p.read_bytes()
    with pytest.raises(BadKey, match="already exists"):
        write_key_file(p, LocalKey.generate_text())
    assert p.read_bytes() == before


def test_a_group_readable_key_file_is_reported_as_not_private(tmp_path):
    p = tmp_path / "k"
    write_key_file(p, LocalKey.generate_text())
    os.chmod(p, 0o640)
    assert not key_file_is_private(p)


@pytest.mark.parametrize(
    "content", [b"", b"not base64!!\n", base64.b64encode(os.urandom(16)) + b"\n", b"\xff\xfe", b"A" * 5000]
)
def test_a_malformed_key_file_is_a_bad_key_naming_the_file(tmp_path, content):
    p = tmp_path / "bad.key"
    p.write_bytes(content)
    with pytest.raises(BadKey, match="bad.key"):
        LocalKey.from_file(p)


def test_a_missing_key_file_is_a_bad_key(tmp_path):
    with pytest.raises(BadKey, match="does not exist"):
        LocalKey.from_file(tmp_path / "nope.key")


def test_key_ids_are_stable_fingerprints_that_do_not_reveal_the_key():
    raw = os.urandom(32)
    a, b = LocalKey(raw), LocalKey(raw)
    assert a.key_id == b.key_id and a.key_id.startswith("local:")
    assert raw.hex()[:16] not in a.key_id
    d = DataKey(raw)
    assert d.key_id != a.key_id.removeprefix("local:")  # different domains
    assert len(d.key_id) == 32
    assert raw.hex() not in repr(d) and raw.hex() not in repr(a)


def test_local_key_wraps_and_unwraps_a_data_key():
    kek, dek = LocalKey(os.urandom(32)), DataKey.generate()
    assert isinstance(kek, KeyEncryptionKey)
    assert kek.unwrap(kek.wrap(dek, CTX), CTX) == dek


def test_unwrap_with_the_wrong_local_key_says_wrong_key():
    dek = DataKey.generate()
    w = LocalKey(os.urandom(32)).wrap(dek, CTX)
    with pytest.raises(WrongKeyOrTampered, match="wrong key, or the data was altered"):
        LocalKey(os.urandom(32)).unwrap(w, CTX)


def test_unwrap_under_another_context_fails():
    kek, dek = LocalKey(os.urandom(32)), DataKey.generate()
    with pytest.raises(WrongKeyOrTampered):
        kek.unwrap(kek.wrap(dek, CTX), b"other-backup")


def test_unwrap_rejects_a_flipped_bit_in_a_wrapped_key():
    kek = LocalKey(os.urandom(32))
    w = kek.wrap(DataKey.generate(), CTX)
    for pos in range(len(w)):
        b = bytearray(w)
        b[pos] ^= 0x10
        with pytest.raises(WrongKeyOrTampered):
            kek.unwrap(bytes(b), CTX)


def test_a_data_key_must_be_32_bytes():
    with pytest.raises(BadKey):
        DataKey(b"short")


def test_kms_key_wraps_and_unwraps_through_the_client_with_the_context_as_aad():
    client = FakeKmsClient([KMS_NAME])
    kek, dek = KmsKey(KMS_NAME, client), DataKey.generate()
    assert isinstance(kek, KeyEncryptionKey)
    w = kek.wrap(dek, CTX)
    assert kek.unwrap(w, CTX) == dek
    assert client.calls == ["encrypt", "decrypt"]
    assert kek.key_id == "kms:" + KMS_NAME
    with pytest.raises(WrongKeyOrTampered):
        kek.unwrap(w, b"another-backup")


def test_kms_unwrap_with_another_kms_key_says_wrong_key():
    other = "projects/p/locations/global/keyRings/r/cryptoKeys/other"
    client = FakeKmsClient([KMS_NAME, other])
    w = KmsKey(KMS_NAME, client).wrap(DataKey.generate(), CTX)
    with pytest.raises(WrongKeyOrTampered, match="wrong key, or the data was altered"):
        KmsKey(other, client).unwrap(w, CTX)


def test_kms_unwrap_of_a_locally_wrapped_key_says_wrong_key():
    w = LocalKey(os.urandom(32)).wrap(DataKey.generate(), CTX)
    with pytest.raises(WrongKeyOrTampered):
        KmsKey(KMS_NAME, FakeKmsClient([KMS_NAME])).unwrap(w, CTX)


def test_kms_permission_denied_is_reported_as_access_denied_saying_which_role_not_as_a_wrong_key():
    client = FakeKmsClient([KMS_NAME])
    wrapped = KmsKey(KMS_NAME, client).wrap(DataKey.generate(), CTX)
    client.denied = True
    for call in (lambda k: k.wrap(DataKey.generate(), CTX), lambda k: k.unwrap(wrapped, CTX)):
        with pytest.raises(KmsAccessDenied, match="cryptoKeyEncrypterDecrypter") as e:
            call(KmsKey(KMS_NAME, client, retry=RetryPolicy(sleep=lambda s: None)))
        assert e.value.exit_code == 2 and not is_transient(e.value)
    assert client.calls == ["encrypt", "encrypt", "decrypt"], "a permanent error is not retried"


def test_kms_unknown_key_is_a_bad_key():
    with pytest.raises(BadKey, match="does not exist"):
        KmsKey(KMS_NAME, FakeKmsClient([])).wrap(DataKey.generate(), CTX)


class Unavailable(FakeKmsClient):
    """Cloud KMS answering UNAVAILABLE to the first `failures` calls."""

    def __init__(self, names, failures):
        super().__init__(names)
        self.failures = failures

    def _key(self, name):
        from google.api_core import exceptions as gexc

        if self.failures:
            self.failures -= 1
            raise gexc.ServiceUnavailable("The service is currently unavailable.")
        return super()._key(name)


def test_kms_unavailable_is_retried_under_the_policy_and_then_succeeds():
    sleeps: list[float] = []
    client = Unavailable([KMS_NAME], failures=2)
    kek, dek = KmsKey(KMS_NAME, client, retry=RetryPolicy(sleep=sleeps.append)), DataKey.generate()
    wrapped = kek.wrap(dek, CTX)
    client.failures = 2
    assert kek.unwrap(wrapped, CTX) == dek
    assert client.calls == ["encrypt"] * 3 + ["decrypt"] * 3 and len(sleeps) == 4


def test_kms_unavailable_for_good_is_transient_not_a_wrong_key_nor_a_vendor_error():
    client = Unavailable([KMS_NAME], failures=0)
    wrapped = KmsKey(KMS_NAME, client).wrap(DataKey.generate(), CTX)
    client.failures = 99
    with pytest.raises(KmsUnavailable, match="retry later.*gave up after 3 attempts") as e:
        KmsKey(KMS_NAME, client, retry=RetryPolicy(attempts=3, sleep=lambda s: None)).unwrap(wrapped, CTX)
    assert is_transient(e.value) and e.value.exit_code == 1 and "\n" not in str(e.value)


def test_a_disabled_kms_key_version_is_refused_as_such_not_as_a_wrong_key():
    from google.api_core import exceptions as gexc

    class Disabled(FakeKmsClient):
        def decrypt(self, request, *, retry=None, timeout=None):
            raise gexc.FailedPrecondition("The request cannot be fulfilled: CryptoKeyVersion 1 is not enabled.")

    client = Disabled([KMS_NAME])
    wrapped = KmsKey(KMS_NAME, client).wrap(DataKey.generate(), CTX)
    with pytest.raises(KmsError, match="enabled") as e:
        KmsKey(KMS_NAME, client).unwrap(wrapped, CTX)
    assert not isinstance(e.value, WrongKeyOrTampered) and not is_transient(e.value)


def test_kms_response_damaged_in_transit_is_refused():
    from types import SimpleNamespace

    class Damaging(FakeKmsClient):
        def encrypt(self, request, *, retry=None, timeout=None):
            r = super().encrypt(request)
            return SimpleNamespace(ciphertext=r.ciphertext, verified_plaintext_crc32c=True, ciphertext_crc32c=1)

    with pytest.raises(OperationFailed, match="damaged in transit"):
        KmsKey(KMS_NAME, Damaging([KMS_NAME])).wrap(DataKey.generate(), CTX)


@pytest.mark.parametrize("name", ["my-key", "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1"])
def test_kms_key_names_must_be_crypto_key_resource_names(name):
    with pytest.raises(BadKey):
        KmsKey(name, FakeKmsClient([]))
