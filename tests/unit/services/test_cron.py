from __future__ import annotations

from datetime import datetime, timezone

import pytest

from firebackup.services.cron import parse_cron
from firebackup.services.errors import Invalid

T0 = datetime(2026, 3, 28, 12, 0, tzinfo=timezone.utc)  # a Saturday, the eve of Europe's DST change


@pytest.mark.parametrize(
    "expr",
    ["* * * * *", "0 3 * * *", "*/15 0-6 1,15 * mon-fri", "@daily", "0 0 1 jan *", "5 4 * * 7"],
)
def test_valid_cron_expressions_parse(expr: str) -> None:
    assert parse_cron(expr).minutes


@pytest.mark.parametrize(
    "expr",
    ["", "* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "*/0 * * * *", "5-1 * * * *",
     "x * * * *", "* * * * 8", "'; DROP TABLE schedules; --", "<script> * * * *"],
)
def test_invalid_cron_expressions_are_rejected_with_a_clear_error(expr: str) -> None:
    with pytest.raises(Invalid, match="cron"):
        parse_cron(expr)


@pytest.mark.parametrize("tz", ["Mars/Olympus", "../../etc/passwd", "", "UTC\x00"])
def test_unknown_time_zones_are_rejected(tz: str) -> None:
    with pytest.raises(Invalid, match="time zone"):
        parse_cron("0 3 * * *", tz)


def test_next_run_is_computed_in_the_schedule_time_zone_and_returned_in_utc() -> None:
    cron = parse_cron("30 2 * * *", "Europe/Paris")
    # 02:30 on 29 March does not exist in Paris (clocks jump 02:00 -> 03:00): the next run is the 30th.
    assert cron.next_after(T0) == datetime(2026, 3, 30, 0, 30, tzinfo=timezone.utc)


def test_day_of_month_and_day_of_week_match_either_when_both_are_restricted() -> None:
    cron = parse_cron("0 0 1 * mon", "UTC")
    assert cron.next_after(T0) == datetime(2026, 3, 30, 0, 0, tzinfo=timezone.utc)  # Monday 30th before April 1st
