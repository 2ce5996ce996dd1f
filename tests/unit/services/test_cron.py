from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from firebackup.services.cron import Cron, parse_cron
from firebackup.services.errors import Invalid

UTC = timezone.utc
T0 = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)  # a Saturday, the eve of Europe's DST change


def z(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def forward(cron: Cron, start: datetime, end: datetime) -> list[datetime]:
    out, t = [], start
    while (nxt := cron.next_after(t)) is not None and nxt <= end:
        out.append(nxt)
        t = nxt
    return out


def backward(cron: Cron, start: datetime, end: datetime) -> list[datetime]:
    out, t = [], end
    while (prev := cron.latest_at_or_before(t)) is not None and prev > start:
        out.append(prev)
        t = prev - timedelta(seconds=1)
    return out[::-1]


@pytest.mark.parametrize(
    "expr",
    ["* * * * *", "0 3 * * *", "*/15 0-6 1,15 * mon-fri", "@daily", "@DAILY", "0 0 1 jan *", "5 4 * * 7",
     "0 0 L * *", "0 0 * * mon#2", "  0   3 * * *  "],
)
def test_valid_cron_expressions_parse(expr: str) -> None:
    assert parse_cron(expr).next_after(T0) is not None


@pytest.mark.parametrize(
    "expr",
    ["", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "*/0 * * * *",
     "x * * * *", "* * * * 8", "'; DROP TABLE schedules; --", "<script> * * * *", "@reboot", "H * * * *"],
)
def test_invalid_cron_expressions_are_rejected_with_a_clear_error(expr: str) -> None:
    with pytest.raises(Invalid, match="cron"):
        parse_cron(expr)


@pytest.mark.parametrize("expr,field", [("61 3 * * *", "minute"), ("0 24 * * *", "hour"), ("0 3 0 * *", "day-of-month"),
                                        ("0 3 * 13 *", "month"), ("0 3 * * funday", "day-of-week")])
def test_the_error_names_the_field_that_is_wrong_and_what_it_takes(expr: str, field: str) -> None:
    with pytest.raises(Invalid, match=f"^cron {field} field .* is not valid; use "):
        parse_cron(expr)


@pytest.mark.parametrize("tz", ["Mars/Olympus", "../../etc/passwd", "", "UTC\x00"])
def test_unknown_time_zones_are_rejected(tz: str) -> None:
    with pytest.raises(Invalid, match="time zone"):
        parse_cron("0 3 * * *", tz)


def test_day_of_month_and_day_of_week_match_either_when_both_are_restricted() -> None:
    cron = parse_cron("0 0 1 * mon", "UTC")
    assert cron.next_after(T0) == z(2026, 3, 30, 0, 0)  # Monday 30th before April 1st


def test_a_fixed_time_job_in_the_hour_paris_skips_in_spring_runs_once_at_the_jump() -> None:
    # 29 March 2026: Paris clocks jump from 02:00 CET to 03:00 CEST (01:00 UTC); 02:30 never happens.
    cron = parse_cron("30 2 * * *", "Europe/Paris")
    assert forward(cron, T0, z(2026, 3, 31, 12)) == [z(2026, 3, 29, 1, 0), z(2026, 3, 30, 0, 30), z(2026, 3, 31, 0, 30)]


def test_a_fixed_time_job_in_the_hour_paris_repeats_in_autumn_runs_once_at_its_first_occurrence() -> None:
    # 25 October 2026: Paris clocks go back from 03:00 CEST to 02:00 CET; 02:30 happens twice.
    cron = parse_cron("30 2 * * *", "Europe/Paris")
    assert forward(cron, z(2026, 10, 24, 12), z(2026, 10, 26, 12)) == [z(2026, 10, 25, 0, 30), z(2026, 10, 26, 1, 30)]


def test_new_york_fixed_times_run_once_on_both_transition_days() -> None:
    spring = parse_cron("30 2 * * *", "America/New_York")  # 8 March 2026: 02:00 EST -> 03:00 EDT
    assert forward(spring, z(2026, 3, 7, 12), z(2026, 3, 9, 12)) == [z(2026, 3, 8, 7, 0), z(2026, 3, 9, 6, 30)]
    autumn = parse_cron("30 1 * * *", "America/New_York")  # 1 November 2026: 02:00 EDT -> 01:00 EST
    assert forward(autumn, z(2026, 10, 31, 12), z(2026, 11, 2, 12)) == [z(2026, 11, 1, 5, 30), z(2026, 11, 2, 6, 30)]


def test_an_elapsed_time_job_runs_in_both_copies_of_the_repeated_hour_and_not_in_the_missing_one() -> None:
    every_half_hour = parse_cron("*/30 * * * *", "America/New_York")
    assert forward(every_half_hour, z(2026, 11, 1, 4, 45), z(2026, 11, 1, 7, 0)) == [
        z(2026, 11, 1, 5, 0), z(2026, 11, 1, 5, 30), z(2026, 11, 1, 6, 0), z(2026, 11, 1, 6, 30), z(2026, 11, 1, 7, 0)]
    hourly = parse_cron("@hourly", "Europe/Paris")
    assert forward(hourly, z(2026, 3, 28, 23, 30), z(2026, 3, 29, 2, 0)) == [
        z(2026, 3, 29, 0, 0), z(2026, 3, 29, 1, 0), z(2026, 3, 29, 2, 0)]


@pytest.mark.parametrize("tz,day", [("Europe/Paris", (2026, 3, 29)), ("Europe/Paris", (2026, 10, 25)),
                                    ("America/New_York", (2026, 3, 8)), ("America/New_York", (2026, 11, 1))])
@pytest.mark.parametrize("expr", ["30 2 * * *", "0 2 * * *", "30 1 * * *", "*/30 * * * *", "0 * * * *", "15 1-3 * * *"])
def test_walking_back_from_now_finds_the_same_runs_as_walking_forward(tz: str, day: tuple[int, int, int],
                                                                      expr: str) -> None:
    cron = parse_cron(expr, tz)
    start = datetime(*day, tzinfo=UTC) - timedelta(days=1)
    end = start + timedelta(days=3)
    runs = forward(cron, start, end)
    assert runs and backward(cron, start, end) == runs
    assert len(set(runs)) == len(runs)


def test_the_latest_run_includes_one_at_exactly_now_and_not_one_a_fraction_of_a_second_later() -> None:
    cron = parse_cron("0 3 * * *", "UTC")
    assert cron.latest_at_or_before(z(2026, 6, 1, 3, 0)) == z(2026, 6, 1, 3, 0)
    assert cron.latest_at_or_before(z(2026, 6, 1, 2, 59, 59) + timedelta(microseconds=500)) == z(2026, 5, 31, 3, 0)
