"""Gap windows: around each update a backup saw that capture never recorded, between the captured instants."""

from __future__ import annotations

from collections.abc import Iterator

from firebackup.services.pitr import gap_windows


def _once(pairs: list[tuple[str, int]]) -> Iterator[tuple[str, int]]:
    yield from pairs  # a stream: read once, as the maintenance reads rows and segments


def test_a_missed_update_lies_strictly_inside_its_window_and_captured_or_later_ones_make_none() -> None:
    seen = {"a": 5, "b": 12, "c": 20, "d": 2}
    captured = [("a", 5), ("b", 10), ("x", 3), ("x", 15)]
    # b at 12 was missed: the captured instants around it are 10 and 15. a was captured; c is after
    # the backup's read time; d at 2 is missed before the first captured instant, so from the start.
    assert gap_windows(seen, _once(captured), start=0, read_time=18) == [(0, 3), (10, 15)]


def test_a_missed_update_after_the_last_captured_instant_runs_to_the_backups_read_time() -> None:
    assert gap_windows({"a": 9}, _once([("b", 4)]), start=1, read_time=10) == [(4, 10)]
    assert gap_windows({"a": 9}, _once([]), start=1, read_time=10) == [(1, 10)]
