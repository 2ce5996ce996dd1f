"""`restore --at`, `history` and `diff`: bad usage is one line on stderr and exit 2, before any storage is read."""

from __future__ import annotations

import pytest

from firebackup import cli

LOC = ["--from", "memory://nowhere", "--project", "p"]


@pytest.mark.parametrize(("argv", "says"), [
    (["restore", *LOC], "pass a BACKUP_ID, or --at INSTANT"),
    (["restore", "20260102T030405Z-0123abcd", "--at", "2026-11-29T10:15:00Z", *LOC], "not both"),
    (["restore", "--at", "yesterday", *LOC], "not an RFC 3339 instant"),
    (["restore", "--at", "2026-11-29T10:15:00Z", "--scope", "users//u1", *LOC], "empty path segment"),
    (["restore", "--at", "2026-11-29T10:15:00Z", "--collections", "users", *LOC], "use --scope instead"),
    (["restore", "20260102T030405Z-0123abcd", "--scope", "users", *LOC], "go with --at"),
    (["diff", "users/u1", "--at", "2026-11-29T10:15:00Z", *LOC], "pass --at twice"),
])
def test_bad_point_in_time_usage_exits_2_with_one_line(capsys: pytest.CaptureFixture[str], argv: list[str],
                                                        says: str) -> None:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and says in err
