"""The CLI's edge: argument errors, exit codes, one-line messages, keygen (in-process, no storage)."""

from __future__ import annotations

import io
import json
import os
import stat

import pytest

from firebackup import cli
from firebackup.crypto.keys import LocalKey
from firebackup.errors import OperationFailed
from firebackup.progress import NoProgress, TerminalProgress, progress_for


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv", [
    ["bogus"],
    [],
    ["verify"],
    ["verify", "20260102T030405Z-0123abcd"],
    ["list"],
    ["backup", "--to", "file:///tmp/x"],
    ["restore", "20260102T030405Z-0123abcd", "--from", "file:///tmp/x", "--project", "p", "--mode", "replace"],
    ["backup", "--project", "p", "--to", "file:///tmp/x", "--compression", "lz4"],
    ["backup", "--project", "p", "--to", "file:///tmp/x", "--level", "-1"],
    ["backup", "--project", "p", "--to", "file:///tmp/x", "--collections", "a,,b"],
])
def test_bad_usage_exits_2_with_one_line_on_stderr_and_nothing_on_stdout(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("firebackup")
    assert "Traceback" not in err and "usage:" not in err


def test_bad_usage_with_json_still_prints_one_json_object(capsys):
    code, out, err = run(capsys, "list", "--json")
    assert code == 2
    assert json.loads(out)["exit_code"] == 2
    assert "--from" in json.loads(out)["error"]


def test_help_lists_the_contract_commands_and_hides_the_demo(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for name in ("keygen", "backup", "restore", "verify", "list", "show"):
        assert name in out
    assert "demo-storage" not in out


def test_a_malformed_backup_id_is_exit_2_before_any_storage_is_opened(capsys, tmp_path):
    code, out, err = run(capsys, "verify", "../../etc", "--from", f"file://{tmp_path}")
    assert code == 2
    assert "not a backup id" in err and err.count("\n") == 1


def test_a_missing_key_file_is_exit_2_naming_the_file(capsys, tmp_path):
    code, out, err = run(capsys, "verify", "20260102T030405Z-0123abcd", "--from", f"file://{tmp_path}",
                         "--key-file", str(tmp_path / "nope.key"))
    assert code == 2
    assert "nope.key" in err and err.count("\n") == 1


def test_a_malformed_key_file_is_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.key"
    bad.write_text("not base64 !!!\n")
    code, out, err = run(capsys, "show", "20260102T030405Z-0123abcd", "--from", f"file://{tmp_path}",
                         "--key-file", str(bad))
    assert code == 2
    assert "not a FireBackup key" in err


def test_keygen_writes_a_mode_0600_key_that_loads_and_refuses_to_overwrite(capsys, tmp_path):
    path = tmp_path / "k.key"
    code, out, err = run(capsys, "keygen", "--out", str(path))
    assert code == 0 and out == ""
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    key = LocalKey.from_file(path)
    assert key.key_id in err
    before = path.read_bytes()
    code, out, err = run(capsys, "keygen", "--out", str(path))
    assert code == 2
    assert "already exists" in err
    assert path.read_bytes() == before
    assert path.read_text().endswith("\n") and path.read_text().count("\n") == 1


def test_keygen_without_out_prints_one_line_key_on_stdout(capsys):
    code, out, err = run(capsys, "keygen")
    assert code == 0
    assert out.count("\n") == 1
    LocalKey.from_text(out)


def test_an_unexpected_exception_is_one_line_and_exit_1_without_traceback(capsys, monkeypatch):
    def boom(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.delenv("FIREBACKUP_DEBUG", raising=False)
    monkeypatch.setattr(cli, "cmd_keygen", boom)
    code, out, err = run(capsys, "keygen")
    assert code == 1
    assert err.count("\n") == 1
    assert "ZeroDivisionError" in err and "Traceback" not in err


def test_the_traceback_appears_only_with_firebackup_debug(capsys, monkeypatch):
    def boom(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setenv("FIREBACKUP_DEBUG", "1")
    monkeypatch.setattr(cli, "cmd_keygen", boom)
    code, out, err = run(capsys, "keygen")
    assert code == 1
    assert "Traceback" in err


def test_a_firebackup_error_uses_its_exit_code(capsys, monkeypatch):
    def fail(args):
        raise OperationFailed("3 documents were not written: see the log")

    monkeypatch.setattr(cli, "cmd_keygen", fail)
    code, out, err = run(capsys, "keygen")
    assert code == 1
    assert err == "firebackup: 3 documents were not written: see the log\n"


def test_progress_is_silent_when_stderr_is_not_a_terminal():
    assert isinstance(progress_for("x", io.StringIO()), NoProgress)


def test_the_terminal_bar_shows_documents_bytes_and_eta():
    now = [100.0]
    stream = io.StringIO()
    bar = TerminalProgress("backup", stream, interval=0.0, clock=lambda: now[0])
    bar.set_total(documents=1000)
    now[0] = 110.0
    bar(documents=250, bytes=2_500_000)
    line = bar.line()
    assert "250/1,000 docs" in line
    assert "2.5 MB" in line
    assert "25%" in line
    assert "ETA 00:30" in line
    bar.close()
    assert stream.getvalue().endswith("\n")


def test_show_hides_the_password_hash_signer_key_and_salt_separator():
    shown = cli.redact_hash_config({"algorithm": "SCRYPT", "signerKey": "c2VjcmV0", "saltSeparator": "Bw==",
                                    "rounds": 8, "memoryCost": 14})
    assert shown == {"algorithm": "SCRYPT", "signerKey": "<redacted>", "saltSeparator": "<redacted>",
                     "rounds": 8, "memoryCost": 14}
