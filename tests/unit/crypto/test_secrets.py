from __future__ import annotations

import os

import pytest

from google.api_core import exceptions as gexc

from firebackup.crypto.keys import KmsClient
from firebackup.crypto.secrets import KmsMasterKey, LocalMasterKey, Sealer, fingerprint
from firebackup.errors import BadKey, CorruptData, KmsAccessDenied, KmsUnavailable, WrongKeyOrTampered, is_transient
from firebackup.retry import RetryPolicy
from firebackup.settings import Settings

SECRET = b'{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEv..."}'


class FakeKms(KmsClient):
    """Stands in for KeyManagementServiceClient: AES-GCM under a key only it holds, AAD enforced;
    `error` (a google.api_core exception) is raised by every call while it is set."""

    class _Resp:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    def __init__(self):
        self._inner = LocalMasterKey(os.urandom(32))
        self.calls = 0
        self.error: Exception | None = None

    def encrypt(self, request, *, retry=None, timeout=None):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self._Resp(ciphertext=self._inner.wrap(request["plaintext"], request["additional_authenticated_data"]))

    def decrypt(self, request, *, retry=None, timeout=None):
        self.calls += 1
        if self.error is not None:
            raise self.error
        try:
            return self._Resp(plaintext=self._inner.unwrap(request["ciphertext"], request["additional_authenticated_data"]))
        except WrongKeyOrTampered:
            raise gexc.InvalidArgument("Decryption failed: the ciphertext is invalid.") from None


def test_a_sealed_secret_opens_with_the_same_context_and_does_not_contain_the_clear_text() -> None:
    sealer = Sealer(LocalMasterKey(os.urandom(32)))
    token = sealer.seal(SECRET, "projects.credentials_sealed:prj_1")
    assert SECRET not in token.encode() and b"PRIVATE" not in token.encode()
    assert sealer.open(token, "projects.credentials_sealed:prj_1") == SECRET


def test_a_sealed_secret_copied_to_another_row_does_not_open() -> None:
    sealer = Sealer(LocalMasterKey(os.urandom(32)))
    token = sealer.seal(SECRET, "projects.credentials_sealed:prj_1")
    with pytest.raises(WrongKeyOrTampered):
        sealer.open(token, "projects.credentials_sealed:prj_2")


def test_a_flipped_character_in_a_sealed_secret_is_detected() -> None:
    sealer = Sealer(LocalMasterKey(os.urandom(32)))
    token = sealer.seal(SECRET, "c")
    i = len(token) - 5
    bad = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
    with pytest.raises((WrongKeyOrTampered, CorruptData)):
        sealer.open(bad, "c")


def test_a_secret_sealed_under_an_unknown_master_key_names_the_missing_key() -> None:
    token = Sealer(LocalMasterKey(os.urandom(32))).seal(SECRET, "c")
    with pytest.raises(WrongKeyOrTampered, match="FIREBACKUP_OLD_MASTER_KEYS"):
        Sealer(LocalMasterKey(os.urandom(32))).open(token, "c")


def test_garbage_is_reported_as_corrupt_not_as_a_crash() -> None:
    sealer = Sealer(LocalMasterKey(os.urandom(32)))
    for junk in ["", "fbs1.", "fbs1.AAAA", "plain text", "fbs1.!!!!"]:
        with pytest.raises((CorruptData, WrongKeyOrTampered)):
            sealer.open(junk, "c")


def test_reseal_moves_a_token_to_the_current_key_and_leaves_current_tokens_alone() -> None:
    old, new = LocalMasterKey(os.urandom(32)), LocalMasterKey(os.urandom(32))
    token = Sealer(old).seal(SECRET, "c")
    rotating = Sealer(new, [old])
    resealed = rotating.reseal(token, "c")
    assert resealed is not None and rotating.key_id_of(resealed) == new.key_id
    assert Sealer(new).open(resealed, "c") == SECRET
    assert rotating.reseal(resealed, "c") is None


def test_kms_master_key_wraps_through_the_client_and_binds_the_context() -> None:
    kms = FakeKms()
    sealer = Sealer(KmsMasterKey("projects/p/locations/l/keyRings/r/cryptoKeys/k", kms))
    token = sealer.seal(SECRET, "c")
    assert sealer.key_id_of(token) == "kms:projects/p/locations/l/keyRings/r/cryptoKeys/k"
    assert sealer.open(token, "c") == SECRET
    assert kms.calls == 2
    with pytest.raises(WrongKeyOrTampered):
        sealer.open(token, "other")


@pytest.mark.parametrize("error,kind,transient", [
    (gexc.PermissionDenied("Permission 'cloudkms.cryptoKeyVersions.useToDecrypt' denied"), KmsAccessDenied, False),
    (gexc.ServiceUnavailable("The service is currently unavailable."), KmsUnavailable, True),
])
def test_kms_master_key_reports_denied_and_unavailable_as_such_not_as_a_wrong_key(error, kind, transient) -> None:
    kms = FakeKms()
    sealer = Sealer(KmsMasterKey("projects/p/locations/l/keyRings/r/cryptoKeys/k", kms,
                                 retry=RetryPolicy(attempts=3, sleep=lambda s: None)))
    token = sealer.seal(SECRET, "c")
    kms.error, kms.calls = error, 0
    with pytest.raises(kind) as e:
        sealer.open(token, "c")
    assert not isinstance(e.value, WrongKeyOrTampered) and is_transient(e.value) is transient
    assert kms.calls == (3 if transient else 1) and "\n" not in str(e.value)


def test_sealer_from_settings_requires_a_master_key_and_opens_with_old_keys() -> None:
    with pytest.raises(BadKey, match="FIREBACKUP_MASTER_KEY"):
        Sealer.from_settings(Settings())
    old, new = os.urandom(32), os.urandom(32)
    token = Sealer(LocalMasterKey(old)).seal(SECRET, "c")
    sealer = Sealer.from_settings(Settings(master_key=new, old_master_keys=(old,)))
    assert sealer.open(token, "c") == SECRET


def test_fingerprint_is_stable_short_and_not_the_secret() -> None:
    key = b"f" * 32
    assert fingerprint(SECRET, key) == fingerprint(SECRET.decode(), key)
    assert fingerprint(SECRET, key) != fingerprint(SECRET + b" ", key)
    assert fingerprint(SECRET, key).startswith("hmac:") and len(fingerprint(SECRET, key)) == 21


def test_a_fingerprint_cannot_be_checked_against_guesses_without_the_servers_key() -> None:
    """A Viewer sees the label; trying a dictionary of weak secrets against it needs the key, which stays on the server."""
    import hashlib

    weak = b"hunter2"
    sealer = Sealer(LocalMasterKey(os.urandom(32)))
    label = sealer.fingerprint(weak)
    unkeyed_guesses = {"sha256:" + hashlib.sha256(b"firebackup fingerprint\0" + weak).hexdigest()[:16],
                       "hmac:" + hashlib.sha256(weak).hexdigest()[:16]}
    assert label not in unkeyed_guesses
    assert Sealer(LocalMasterKey(os.urandom(32))).fingerprint(weak) != label  # another server, another label
    assert sealer.fingerprint(weak) == label  # stable on this server


def test_a_kms_sealer_without_a_local_key_has_no_fingerprint_key_and_says_what_to_set() -> None:
    sealer = Sealer.from_settings(Settings(kms_key_name="projects/p/locations/l/keyRings/r/cryptoKeys/k"),
                                  kms_client=FakeKms())
    with pytest.raises(BadKey, match="FIREBACKUP_MASTER_KEY"):
        sealer.fingerprint("x")


def test_master_key_repr_does_not_reveal_the_key() -> None:
    key = os.urandom(32)
    assert key.hex() not in repr(LocalMasterKey(key)) and str(key) not in repr(LocalMasterKey(key))


def test_settings_reject_a_master_key_of_the_wrong_length_with_an_actionable_message() -> None:
    import base64

    with pytest.raises(BadKey, match="32 random bytes"):
        Settings.from_env({"FIREBACKUP_MASTER_KEY": base64.b64encode(b"short").decode()})
    with pytest.raises(BadKey, match="not base64"):
        Settings.from_env({"FIREBACKUP_MASTER_KEY": "@@@"})
