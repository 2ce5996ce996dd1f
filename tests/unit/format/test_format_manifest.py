"""Manifest: encode/decode, public summary without a key, and every detection."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from firebackup.crypto.keys import DataKey, LocalKey
from firebackup.errors import BadKey, CorruptData, IntegrityError, UnsupportedFormat, UsageError, WrongKeyOrTampered
from firebackup.format.manifest import ChunkEntry, Manifest, decode_manifest, encode_manifest, read_manifest_summary

BID = "20261128T025000Z-0123abcd"


def new_kek() -> LocalKey:
    return LocalKey.from_text(LocalKey.generate_text())


def sample() -> Manifest:
    return Manifest(
        backup_id=BID,
        created_at="2026-11-28T02:50:00.000000Z",
        read_time="2026-11-28T02:49:59.123456789Z",
        source={"project": "demo", "database": "(default)"},
        collections=["users", "orders"],
        chunks=[
            ChunkEntry("d00000-00000", "docs", f"backups/{BID}/chunks/d00000-00000.fbc", 10, 1000, 300, "ab" * 32),
            ChunkEntry("a00000", "auth", f"backups/{BID}/chunks/a00000.fbc", 2, 200, 90, "cd" * 32, {"note": "x"}),
        ],
        documents=10,
        auth_users=2,
    )


def reseal_sha(data: bytes) -> bytes:
    """Recompute the trailing SHA-256 (anyone can)."""
    return data[:-32] + hashlib.sha256(data[:-32]).digest()


def test_an_encrypted_manifest_round_trips_with_its_data_key():
    kek, dek = new_kek(), DataKey.generate()
    data = encode_manifest(sample(), data_key=dek, kek=kek)
    m, got = decode_manifest(data, kek=kek)
    assert got == dek
    assert m.chunks == sample().chunks
    assert m.encrypted is True
    assert m.crypto["dek_id"] == dek.key_id and m.crypto["kek_id"] == kek.key_id
    assert m.to_dict() == Manifest.from_dict(json.loads(json.dumps(m.to_dict()))).to_dict()


def test_an_unencrypted_manifest_round_trips_and_says_encrypted_false():
    data = encode_manifest(sample(), data_key=None, kek=None)
    m, dek = decode_manifest(data, kek=None)
    assert dek is None and m.encrypted is False
    assert read_manifest_summary(data)["encrypted"] is False
    assert m.chunks == sample().chunks


def test_the_summary_is_readable_without_a_key_and_holds_no_secrets():
    kek, dek = new_kek(), DataKey.generate()
    data = encode_manifest(sample(), data_key=dek, kek=kek)
    s = read_manifest_summary(data)
    assert {k: s[k] for k in ("backup_id", "created_at", "read_time", "documents", "bytes_stored", "encrypted")} == {
        "backup_id": BID,
        "created_at": "2026-11-28T02:50:00.000000Z",
        "read_time": "2026-11-28T02:49:59.123456789Z",
        "documents": 10,
        "bytes_stored": 390,
        "encrypted": True,
    }
    assert s["kek_id"] == kek.key_id
    # Collection names, project and chunk keys are sealed, not in clear.
    assert b"orders" not in data and b"demo" not in data and b"d00000-00000" not in data


def test_decode_with_the_wrong_kek_says_wrong_key():
    data = encode_manifest(sample(), data_key=DataKey.generate(), kek=new_kek())
    with pytest.raises(WrongKeyOrTampered, match="wrong key, or the data was altered"):
        decode_manifest(data, kek=new_kek())


def test_decode_of_an_encrypted_manifest_without_a_kek_asks_for_the_key():
    kek = new_kek()
    data = encode_manifest(sample(), data_key=DataKey.generate(), kek=kek)
    with pytest.raises(BadKey, match=kek.key_id):
        decode_manifest(data, kek=None)


def test_a_key_given_for_an_unencrypted_manifest_is_refused_unless_the_reader_opts_in():
    data = encode_manifest(sample(), data_key=None, kek=None)
    with pytest.raises(BadKey, match="NOT encrypted, but a key was given") as e:
        decode_manifest(data, kek=new_kek())
    assert "--allow-unencrypted" in str(e.value) and "\n" not in str(e.value)
    m, dek = decode_manifest(data, kek=new_kek(), allow_unencrypted=True)
    assert dek is None and m.encrypted is False and m.chunks == sample().chunks


def test_encode_needs_both_keys_or_neither():
    with pytest.raises(UsageError):
        encode_manifest(sample(), data_key=DataKey.generate(), kek=None)


@pytest.mark.parametrize("encrypted", [True, False])
def test_decode_rejects_a_flipped_byte_anywhere(encrypted):
    kek = new_kek()
    data = encode_manifest(sample(), data_key=DataKey.generate() if encrypted else None, kek=kek if encrypted else None)
    for pos in range(0, len(data), 7):
        b = bytearray(data)
        b[pos] ^= 0x04
        with pytest.raises(IntegrityError):
            decode_manifest(bytes(b), kek=kek)
        with pytest.raises(IntegrityError):
            read_manifest_summary(bytes(b))


def test_decode_rejects_an_edited_clear_summary_even_with_the_checksum_recomputed():
    kek = new_kek()
    data = encode_manifest(sample(), data_key=DataKey.generate(), kek=kek)
    edited = reseal_sha(data.replace(b'"documents":10', b'"documents":99', 1))
    assert read_manifest_summary(edited)["documents"] == 99  # no key: only accidental damage is caught
    with pytest.raises(WrongKeyOrTampered):
        decode_manifest(edited, kek=kek)


def test_decode_rejects_an_edited_unencrypted_body_that_disagrees_with_the_summary():
    data = encode_manifest(sample(), data_key=None, kek=None)
    body_at = data.index(b'"documents":10,', data.index(b'"documents":10,') + 1)
    edited = reseal_sha(data[:body_at] + data[body_at:].replace(b'"documents":10,', b'"documents":11,', 1))
    with pytest.raises(CorruptData):
        decode_manifest(edited, kek=None)


def test_a_wrapped_key_moved_into_another_backups_manifest_does_not_unwrap():
    kek, dek = new_kek(), DataKey.generate()
    a = encode_manifest(sample(), data_key=dek, kek=kek)
    other = sample()
    other.backup_id = "20261128T025001Z-99999999"
    b = encode_manifest(other, data_key=DataKey.generate(), kek=kek)
    wrapped_a = json.loads(a[10 : 10 + int.from_bytes(a[6:10], "big")])["wrapped_dek"]
    hb_len = int.from_bytes(b[6:10], "big")
    hb = json.loads(b[10 : 10 + hb_len])
    hb["wrapped_dek"] = wrapped_a
    new_h = json.dumps(hb, sort_keys=True, separators=(",", ":")).encode()
    forged = reseal_sha(b[:6] + len(new_h).to_bytes(4, "big") + new_h + b[10 + hb_len :])
    with pytest.raises(WrongKeyOrTampered):
        decode_manifest(forged, kek=kek)


def test_decode_rejects_an_unknown_manifest_version():
    data = encode_manifest(sample(), data_key=None, kek=None)
    with pytest.raises(UnsupportedFormat, match="version 7"):
        decode_manifest(reseal_sha(data[:4] + b"\x07" + data[5:]), kek=None)


def test_decode_rejects_bytes_that_are_not_a_manifest():
    with pytest.raises(CorruptData, match="bad magic"):
        decode_manifest(b"FBKC" + bytes(60), kek=None)


def test_decode_rejects_a_truncated_manifest():
    data = encode_manifest(sample(), data_key=None, kek=None)
    for cut in (0, 3, 9, 20, len(data) // 2, len(data) - 1):
        with pytest.raises(CorruptData):
            decode_manifest(data[:cut], kek=None)


def test_from_dict_ignores_unknown_keys_from_newer_writers():
    d = sample().to_dict()
    d["future_field"] = 1
    d["chunks"][0]["future"] = True
    assert Manifest.from_dict(d).chunks[0] == sample().chunks[0]


def test_manifest_with_a_kms_key_round_trips(fake_kms_key):
    dek = DataKey.generate()
    data = encode_manifest(sample(), data_key=dek, kek=fake_kms_key)
    assert read_manifest_summary(data)["kek_id"] == fake_kms_key.key_id
    _, got = decode_manifest(data, kek=fake_kms_key)
    assert got == dek


def test_wrapped_dek_in_clear_header_is_base64_of_61_bytes_for_a_local_key():
    data = encode_manifest(sample(), data_key=DataKey.generate(), kek=new_kek())
    h = json.loads(data[10 : 10 + int.from_bytes(data[6:10], "big")])
    assert len(base64.b64decode(h["wrapped_dek"])) == 61


def test_rewrapping_for_key_rotation_keeps_the_data_key_and_drops_the_old_kek():
    from firebackup.format.manifest import rewrap_manifest

    old, new, dek = new_kek(), new_kek(), DataKey.generate()
    data = encode_manifest(sample(), data_key=dek, kek=old)
    rotated = rewrap_manifest(data, old_kek=old, new_kek=new)
    m, got = decode_manifest(rotated, kek=new)
    assert got == dek and m.chunks == sample().chunks
    assert read_manifest_summary(rotated)["kek_id"] == new.key_id
    with pytest.raises(WrongKeyOrTampered):
        decode_manifest(rotated, kek=old)


def test_a_manifest_value_json_cannot_hold_is_a_usage_error():
    import datetime as dt

    m = sample()
    m.read_time = dt.datetime(2026, 1, 1)  # must be RFC 3339 text
    with pytest.raises(UsageError, match="JSON"):
        encode_manifest(m, data_key=None, kek=None)
