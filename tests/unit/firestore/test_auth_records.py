"""Unit tests of Auth user records and hash parameters (no server)."""

from __future__ import annotations

import base64
import json

from firebase_admin._user_mgt import ExportedUserRecord

from firebackup.firestore import auth as fa

API_USER = {
    "localId": "u1",
    "email": "a@example.com",
    "emailVerified": True,
    "passwordHash": "bHVja3kgaGFzaA==",
    "salt": "c2FsdHk=",
    "displayName": "Ann",
    "photoUrl": "https://example.com/a.png",
    "phoneNumber": "+15555550100",
    "disabled": True,
    "customAttributes": '{"admin": true}',
    "createdAt": "1700000000123",
    "lastLoginAt": "1700000500456",
    "validSince": "1700000000",
    "providerUserInfo": [
        {"providerId": "password", "rawId": "a@example.com", "email": "a@example.com"},
        {"providerId": "google.com", "rawId": "g-1", "email": "a@example.com", "displayName": "Ann G"},
    ],
}


def test_a_user_becomes_an_auth_export_record_with_hash_claims_and_metadata():
    rec = fa.user_to_record(ExportedUserRecord(API_USER))
    assert rec["passwordHash"] == API_USER["passwordHash"] and rec["salt"] == API_USER["salt"]
    assert json.loads(rec["customAttributes"]) == {"admin": True}
    assert rec["createdAt"] == "1700000000123" and rec["lastSignedInAt"] == "1700000500456"
    assert rec["disabled"] is True and rec["emailVerified"] is True and rec["validSince"] == "1700000000"
    assert [p["providerId"] for p in rec["providerUserInfo"]] == ["password", "google.com"]
    assert json.loads(fa.encode_record(rec)) == rec


def test_import_payload_carries_the_stored_hash_and_salt_verbatim():
    Record = fa._import_record_class()
    rec = fa.user_to_record(ExportedUserRecord(API_USER))
    payload = Record(rec, with_password=True).to_dict()
    assert payload["passwordHash"] == API_USER["passwordHash"] and payload["salt"] == API_USER["salt"]
    assert payload["createdAt"] == "1700000000123" and payload["lastLoginAt"] == "1700000500456"
    assert [p["providerId"] for p in payload["providerUserInfo"]] == ["google.com"]
    assert json.loads(payload["customAttributes"]) == {"admin": True} and payload["disabled"] is True


def test_scrypt_parameters_become_the_import_hash():
    key, sep = b"k" * 64, b"\x01"
    hc = {"algorithm": "SCRYPT", "signerKey": base64.b64encode(key).decode(),
          "saltSeparator": base64.b64encode(sep).decode(), "rounds": 8, "memoryCost": 14}
    h, why = fa._import_hash(hc, emulator=False)
    d = h.to_dict()
    assert why is None and d["hashAlgorithm"] == "SCRYPT" and d["rounds"] == 8 and d["memoryCost"] == 14
    assert base64.urlsafe_b64decode(d["signerKey"]) == key and base64.urlsafe_b64decode(d["saltSeparator"]) == sep


def test_emulator_hashes_are_refused_for_a_real_project_and_accepted_by_an_emulator():
    h, why = fa._import_hash({"algorithm": fa.EMULATOR_HASH}, emulator=False)
    assert h is None and "emulator" in why
    h, why = fa._import_hash({"algorithm": fa.EMULATOR_HASH}, emulator=True)
    assert h is not None and why is None
    h, why = fa._import_hash(None, emulator=True)
    assert h is None and "no password-hash parameters" in why


def test_dry_run_counts_password_users_without_hash_parameters_as_failed():
    records = [json.dumps({"localId": "a"}).encode(), json.dumps({"localId": "b", "passwordHash": "eA=="}).encode()]
    out = fa.import_user_records("p", records, None, dry_run=True)
    assert (out.imported, out.failed) == (1, 1) and out.errors[0].startswith("auth user b:")
