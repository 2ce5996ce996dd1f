"""The real `firebackup` command in a subprocess on a file:// location: keygen -> demo-storage ->
list -> show -> verify, --json key by key, exit codes, and damage detection without tracebacks."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

FIREBACKUP = str(Path(sys.executable).parent / "firebackup")
BACKUP_ID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
DOCS = 1200
CHUNK_DOCS = 300


def fb(*args: str, expect: int | None = 0) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "FIREBACKUP_DEBUG"}
    proc = subprocess.run([FIREBACKUP, *args], capture_output=True, text=True, env=env, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    if expect is not None:
        assert proc.returncode == expect, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def fb_json(*args: str, expect: int = 0) -> dict:
    proc = fb(*args, "--json", expect=expect)
    obj = json.loads(proc.stdout)  # exactly one JSON object: json.loads rejects anything after it
    assert isinstance(obj, dict)
    assert proc.stdout.strip().count("\n") == 0
    return obj


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """One location with an encrypted and an unencrypted demo backup, made through the CLI."""
    root = tmp_path_factory.mktemp("cli")
    key = root / "backup.key"
    fb("keygen", "--out", str(key))
    loc = root / "location"
    loc.mkdir()
    url = f"file://{loc}"
    enc = fb_json("demo-storage", "--to", url, "--docs", str(DOCS), "--chunk-docs", str(CHUNK_DOCS),
                  "--key-file", str(key))
    plain_proc = fb("demo-storage", "--to", url, "--docs", "100", "--json")
    plain = json.loads(plain_proc.stdout)
    return {"root": root, "key": key, "loc": loc, "url": url, "enc": enc, "plain": plain,
            "plain_stderr": plain_proc.stderr}


def damaged_copy(site, name: str) -> tuple[Path, str]:
    dest = site["root"] / name
    shutil.copytree(site["loc"], dest)
    return dest, f"file://{dest}"


def chunk_path(loc: Path, backup_id: str, chunk_id: str) -> Path:
    return loc / "backups" / backup_id / "chunks" / f"{chunk_id}.fbc"


def test_keygen_writes_a_private_key_and_refuses_to_overwrite(site):
    key = site["key"]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = key.read_bytes()
    proc = fb("keygen", "--out", str(key), expect=2)
    assert "already exists" in proc.stderr and proc.stderr.count("\n") == 1
    assert key.read_bytes() == before


def test_demo_storage_prints_the_backup_keys(site):
    enc = site["enc"]
    assert BACKUP_ID_RE.match(enc["backup_id"])
    assert enc["documents"] == DOCS
    assert enc["chunks"] == DOCS // CHUNK_DOCS
    assert enc["encrypted"] is True
    assert enc["auth_users"] == 0
    assert enc["bytes_stored"] > 0 and enc["bytes_raw"] > 0
    assert isinstance(enc["collections"], list) and enc["collections"]
    assert isinstance(enc["compression"], str)
    assert isinstance(enc["duration_s"], (int, float))
    assert enc["read_time"]
    for k in ("backup_id", "read_time", "documents", "collections", "auth_users", "chunks",
              "bytes_raw", "bytes_stored", "compression", "encrypted", "duration_s"):
        assert k in enc


def test_an_unencrypted_backup_says_so(site):
    assert site["plain"]["encrypted"] is False
    assert "NOT encrypted" in site["plain_stderr"]


def test_list_shows_both_backups_sorted_without_a_key(site):
    out = fb_json("list", "--from", site["url"])
    ids = [b["backup_id"] for b in out["backups"]]
    assert ids == sorted([site["enc"]["backup_id"], site["plain"]["backup_id"]])
    by_id = {b["backup_id"]: b for b in out["backups"]}
    enc = by_id[site["enc"]["backup_id"]]
    assert enc["documents"] == DOCS
    assert enc["bytes_stored"] == site["enc"]["bytes_stored"]
    assert enc["read_time"] == site["enc"]["read_time"]
    assert enc["encrypted"] is True
    assert by_id[site["plain"]["backup_id"]]["encrypted"] is False
    assert out["problems"] == []


def test_list_without_json_prints_a_table_on_stdout(site):
    proc = fb("list", "--from", site["url"])
    assert site["enc"]["backup_id"] in proc.stdout
    assert "BACKUP_ID" in proc.stdout


def test_show_with_the_key_gives_the_whole_manifest(site):
    bid = site["enc"]["backup_id"]
    out = fb_json("show", bid, "--from", site["url"], "--key-file", str(site["key"]))
    assert out["backup_id"] == bid
    assert out["encrypted"] is True
    assert out["documents"] == DOCS
    chunks = out["manifest"]["chunks"]
    assert len(chunks) == DOCS // CHUNK_DOCS
    assert {c["chunk_id"] for c in chunks} == {f"d00000-{i:05d}" for i in range(DOCS // CHUNK_DOCS)}
    assert all(len(c["sha256"]) == 64 for c in chunks)
    assert "wrapped_dek" not in json.dumps(out)


def test_show_without_the_key_gives_the_public_summary(site):
    bid = site["enc"]["backup_id"]
    proc = fb("show", bid, "--from", site["url"], "--json")
    out = json.loads(proc.stdout)
    assert out["documents"] == DOCS and out["manifest"] is None
    assert "--key-file" in proc.stderr


def test_verify_an_intact_encrypted_backup(site):
    bid = site["enc"]["backup_id"]
    out = fb_json("verify", bid, "--from", site["url"], "--key-file", str(site["key"]))
    assert out["backup_id"] == bid
    assert out["ok"] is True
    assert out["chunks_checked"] == DOCS // CHUNK_DOCS
    assert out["documents"] == DOCS
    assert out["problems"] == []


def test_verify_an_intact_unencrypted_backup_without_a_key(site):
    out = fb_json("verify", site["plain"]["backup_id"], "--from", site["url"])
    assert (out["ok"], out["documents"], out["chunks_checked"]) == (True, 100, 1)


def test_an_unknown_backup_id_exits_2_with_one_line(site):
    proc = fb("verify", "20200101T000000Z-00000000", "--from", site["url"],
              "--key-file", str(site["key"]), expect=2)
    assert proc.stderr.count("\n") == 1 and "20200101T000000Z-00000000" in proc.stderr
    assert proc.stdout == ""
    fb("show", "20200101T000000Z-00000000", "--from", site["url"], expect=2)


def test_the_wrong_key_exits_2_with_wrong_key_or_altered(site, tmp_path):
    other = tmp_path / "other.key"
    fb("keygen", "--out", str(other))
    for cmd in ("verify", "show"):
        proc = fb(cmd, site["enc"]["backup_id"], "--from", site["url"], "--key-file", str(other), expect=2)
        assert "wrong key, or the data was altered" in proc.stderr
        assert proc.stderr.count("\n") == 1


@pytest.mark.parametrize("url", ["bogus://x/y", "file://relative/path", "not a url", "s3://"])
def test_a_bad_url_exits_2_with_one_line(url):
    for argv in (["list", "--from", url], ["verify", "20200101T000000Z-00000000", "--from", url],
                 ["demo-storage", "--to", url, "--docs", "1"]):
        proc = fb(*argv, expect=2)
        assert proc.stderr.count("\n") == 1, proc.stderr


def test_verify_names_the_chunk_with_a_flipped_byte_and_exits_1(site):
    loc, url = damaged_copy(site, "flipped")
    bid = site["enc"]["backup_id"]
    path = chunk_path(loc, bid, "d00000-00002")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    out = fb_json("verify", bid, "--from", url, "--key-file", str(site["key"]), expect=1)
    assert out["ok"] is False
    assert out["problems"]
    assert any("d00000-00002" in p and "frame" in p for p in out["problems"])
    assert not any("d00000-00001" in p for p in out["problems"])
    proc = fb("verify", bid, "--from", url, "--key-file", str(site["key"]), expect=1)
    assert "d00000-00002" in proc.stderr


def test_verify_reports_a_deleted_chunk(site):
    loc, url = damaged_copy(site, "deleted")
    bid = site["enc"]["backup_id"]
    chunk_path(loc, bid, "d00000-00001").unlink()
    out = fb_json("verify", bid, "--from", url, "--key-file", str(site["key"]), expect=1)
    assert any("d00000-00001" in p and "missing" in p for p in out["problems"])
    assert out["documents"] == DOCS - CHUNK_DOCS


def test_verify_reports_a_truncated_chunk(site):
    loc, url = damaged_copy(site, "truncated")
    bid = site["enc"]["backup_id"]
    path = chunk_path(loc, bid, "d00000-00003")
    path.write_bytes(path.read_bytes()[:-100])
    out = fb_json("verify", bid, "--from", url, "--key-file", str(site["key"]), expect=1)
    assert any("d00000-00003" in p for p in out["problems"])
    assert out["ok"] is False


def test_verify_reports_damage_in_several_chunks_at_once(site):
    loc, url = damaged_copy(site, "several")
    bid = site["plain"]["backup_id"]
    shutil.copy(chunk_path(loc, bid, "d00000-00000"), chunk_path(loc, bid, "d00000-00009"))
    path = chunk_path(loc, bid, "d00000-00000")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    out = fb_json("verify", bid, "--from", url, expect=1)
    assert any("d00000-00000" in p for p in out["problems"])
    assert any("d00000-00009" in p and "extra" in p for p in out["problems"])


def test_a_damaged_manifest_is_a_problem_for_list_not_a_crash(site):
    loc, url = damaged_copy(site, "badmanifest")
    bid = site["plain"]["backup_id"]
    manifest = loc / "backups" / bid / "manifest.fbm"
    data = bytearray(manifest.read_bytes())
    data[20] ^= 0x01
    manifest.write_bytes(bytes(data))
    out = fb_json("list", "--from", url)
    assert [b["backup_id"] for b in out["backups"]] == [site["enc"]["backup_id"]]
    assert len(out["problems"]) == 1 and bid in out["problems"][0]
    out = fb_json("verify", bid, "--from", url, expect=1)
    assert out["ok"] is False
    assert len(out["problems"]) == 1 and "manifest" in out["problems"][0]


def test_a_backup_without_a_manifest_is_not_listed(site):
    loc, url = damaged_copy(site, "incomplete")
    bid = site["plain"]["backup_id"]
    (loc / "backups" / bid / "manifest.fbm").unlink()
    out = fb_json("list", "--from", url)
    assert [b["backup_id"] for b in out["backups"]] == [site["enc"]["backup_id"]]
    assert out["incomplete"] == [bid]
    proc = fb("verify", bid, "--from", url, expect=2)
    assert "incomplete" in proc.stderr


def test_cat_reads_every_document_back_as_json_lines(site):
    bid = site["enc"]["backup_id"]
    proc = fb("cat", bid, "--from", site["url"], "--key-file", str(site["key"]))
    lines = proc.stdout.splitlines()
    assert len(lines) == DOCS
    docs = [json.loads(line) for line in lines]
    assert all(d["name"].startswith("projects/demo-firebackup/databases/(default)/documents/") for d in docs)
    assert len({d["name"] for d in docs}) == DOCS
    # Documents come back in name order, as from a live database; the generator's first one has the edge values.
    first = next(d for d in docs if d["name"].endswith("/doc0000000"))
    edge = first["fields"]["edge"]["mapValue"]["fields"]
    assert edge["int_min"] == {"integerValue": "-9223372036854775808"}
    assert edge["nan"] == {"doubleValue": "NaN"}
    limited = fb("cat", bid, "--from", site["url"], "--key-file", str(site["key"]), "--limit", "3")
    assert limited.stdout.splitlines() == lines[:3]


def test_an_unencrypted_backup_swapped_in_under_an_encrypted_ones_id_is_refused_to_a_key_holder(site):
    """The attack: whoever can write to the bucket replaces an encrypted backup by an unencrypted one with
    the same id; a restore or verify with the key must not take it without authentication."""
    from firebackup.engine.repository import Repository
    from firebackup.format.manifest import Manifest
    from firebackup.storage import open_storage

    dest, url = damaged_copy(site, "swapped")
    bid = site["enc"]["backup_id"]
    repo = Repository(open_storage(url))
    repo.delete_backup(bid)
    from firebackup.firestore.protos import Document

    forged = Document(name="projects/demo-firebackup/databases/(default)/documents/users/evil").SerializeToString()
    entry = repo.write_chunk(bid, "d00000-00000", [forged], kind="docs", codec="zstd", level=None,
                             data_key=None, frame_size=None)
    repo.write_manifest(Manifest(backup_id=bid, chunks=[entry], documents=1, collections=["users"],
                                 source={"project": "demo-firebackup", "database": "(default)"}), None, None)
    for command in (["verify", bid, "--from", url], ["show", bid, "--from", url],
                    ["restore", bid, "--from", url, "--project", "nowhere", "--dry-run"]):
        proc = fb(*command, "--key-file", str(site["key"]), expect=2)
        assert proc.stderr.count("\n") == 1 and "NOT encrypted, but a key was given" in proc.stderr
        assert "--allow-unencrypted" in proc.stderr
    opted_in = fb_json("verify", bid, "--from", url, "--key-file", str(site["key"]), "--allow-unencrypted")
    assert opted_in["ok"] is True and opted_in["documents"] == 1
