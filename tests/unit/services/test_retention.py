"""GFS retention with restic `forget` semantics: a table of backups across hours, days, weeks, months, years."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firebackup.services.commands import Retention
from firebackup.services.errors import Invalid
from firebackup.services.retention import Snapshot, Within, check_rules, parse_within, plan

UTC = ZoneInfo("UTC")
NOW = datetime(2027, 1, 10, 12, 0, tzinfo=timezone.utc)

# Newest first, as restic lists them: several a day, days with none, a week and a year boundary.
TIMES = [
    "2027-01-09T20:00", "2027-01-09T08:00", "2027-01-09T07:30", "2027-01-08T23:59", "2027-01-05T10:00",
    "2027-01-01T00:30", "2026-12-31T23:30", "2026-12-28T09:00", "2026-12-27T09:00", "2026-12-01T00:00",
    "2026-11-30T23:00", "2026-11-02T12:00", "2026-06-15T12:00", "2025-12-31T12:00", "2025-06-01T12:00",
    "2024-02-29T12:00",
]
SNAPS = [Snapshot(f"b{i:02d}", datetime.fromisoformat(t).replace(tzinfo=timezone.utc)) for i, t in enumerate(TIMES)]


def kept(rules: Retention, snaps: list[Snapshot] = SNAPS, tz: ZoneInfo = UTC) -> dict[str, tuple[str, ...]]:
    return {k.snapshot.id: k.reasons for k in plan(snaps, rules, tz, NOW).keep}


CASES = [
    (Retention(keep_last=3), {"b00", "b01", "b02"}),
    # The newest of each of the 4 most recent days that have a backup.
    (Retention(keep_daily=4), {"b00", "b03", "b04", "b05"}),
    # ISO weeks: 2026-12-28 (Mon) .. 2027-01-03 is 2026-W53, so b05, b06 and b07 share a week.
    (Retention(keep_weekly=3), {"b00", "b05", "b08"}),
    (Retention(keep_monthly=4), {"b00", "b06", "b10", "b12"}),
    (Retention(keep_yearly=10), {"b00", "b06", "b13", "b15"}),
    (Retention(keep_hourly=3), {"b00", "b01", "b02"}),
    (Retention(keep_last=2, keep_monthly=2), {"b00", "b01", "b06"}),
    (Retention(keep_within="2d"), {"b00", "b01", "b02", "b03"}),  # from the newest backup (9 Jan 20:00), not now
    (Retention(keep_within="1m"), {"b00", "b01", "b02", "b03", "b04", "b05", "b06", "b07", "b08"}),
    (Retention(keep_daily=2, keep_weekly=2, keep_monthly=2, keep_yearly=2),
     {"b00", "b03", "b05", "b06"}),
]


@pytest.mark.parametrize("rules,expected", CASES, ids=[str(r.as_dict()) for r, _ in CASES])
def test_each_rule_keeps_the_newest_backup_of_its_most_recent_periods(rules: Retention, expected: set[str]) -> None:
    result = plan(SNAPS, rules, UTC, NOW)
    assert {k.snapshot.id for k in result.keep} == expected
    assert {s.id for s in result.remove} == {s.id for s in SNAPS} - expected


def test_each_kept_backup_names_every_rule_that_keeps_it() -> None:
    reasons = kept(Retention(keep_last=2, keep_daily=2, keep_within="1d", keep_yearly=1))
    assert reasons == {"b00": ("keep_within 1d", "keep_last", "keep_daily", "keep_yearly"),
                       "b01": ("keep_within 1d", "keep_last"),
                       "b02": ("keep_within 1d",),
                       "b03": ("keep_within 1d", "keep_daily")}


def test_a_rule_with_counts_left_when_backups_run_out_also_keeps_the_oldest() -> None:
    snaps = SNAPS[:3]  # three backups, all on 9 January
    assert set(kept(Retention(keep_daily=7), snaps)) == {"b00", "b02"}


def test_periods_are_read_on_the_schedule_clock_not_utc() -> None:
    snaps = [Snapshot("late", datetime(2026, 6, 1, 5, 0, tzinfo=timezone.utc)),
             Snapshot("early", datetime(2026, 6, 1, 3, 0, tzinfo=timezone.utc)),
             Snapshot("prev", datetime(2026, 5, 31, 12, 0, tzinfo=timezone.utc))]
    rules = Retention(keep_daily=2)
    # In UTC "late" and "early" share 1 June; in New York "early" is 31 May 23:00, a day of its own.
    assert set(kept(rules, snaps, UTC)) == {"late", "prev"}
    assert set(kept(rules, snaps, ZoneInfo("America/New_York"))) == {"late", "early"}


def test_no_rules_keep_everything() -> None:
    result = plan(SNAPS, Retention(), UTC, NOW)
    assert result.remove == [] and len(result.keep) == len(SNAPS)


def test_a_backup_dated_in_the_future_does_not_shift_keep_within() -> None:
    ahead = Snapshot("ahead", NOW + timedelta(days=30))
    assert set(kept(Retention(keep_within="2d"), [ahead, *SNAPS])) == {"ahead", "b00", "b01", "b02", "b03"}


@settings(max_examples=200, deadline=None)
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=3 * 365 * 24), min_size=1, max_size=40, unique=True),
    counts=st.fixed_dictionaries({k: st.none() | st.integers(1, 6) for k in (
        "keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")}),
    within=st.none() | st.sampled_from(["1h", "12h", "3d", "1m", "1y2m"]),
)
def test_the_newest_backup_is_never_removed_and_every_backup_is_either_kept_or_removed(
        offsets: list[int], counts: dict[str, int | None], within: str | None) -> None:
    snaps = [Snapshot(f"s{h}", NOW - timedelta(hours=h)) for h in offsets]
    result = plan(snaps, Retention(**counts, keep_within=within), ZoneInfo("Europe/Paris"), NOW)
    newest = min(offsets)
    assert result.keep[0].snapshot.id == f"s{newest}" and result.keep[0].reasons
    ids = [k.snapshot.id for k in result.keep] + [s.id for s in result.remove]
    assert sorted(ids) == sorted(s.id for s in snaps)


@pytest.mark.parametrize("text,expected", [("30d", Within(days=30)), ("12h", Within(hours=12)),
                                           ("1y6m", Within(years=1, months=6)), ("2y3m4d5h", Within(2, 3, 4, 5))])
def test_keep_within_reads_restic_durations(text: str, expected: Within) -> None:
    assert parse_within(text) == expected


@pytest.mark.parametrize("text", ["", "30", "d", "1x", "-1d", "1d1d", "0d", "1.5d", "1 d", "30D"])
def test_malformed_keep_within_is_rejected_with_the_units_to_use(text: str) -> None:
    with pytest.raises(Invalid, match="keep_within"):
        parse_within(text)


def test_a_month_back_from_the_31st_rolls_over_like_restic() -> None:
    t = datetime(2026, 3, 31, 10, tzinfo=timezone.utc)
    assert Within(months=1).before(t) == datetime(2026, 3, 3, 10, tzinfo=timezone.utc)  # "31 February"
    assert Within(years=1, hours=12).before(t) == datetime(2025, 3, 30, 22, tzinfo=timezone.utc)


@pytest.mark.parametrize("rules", [Retention(keep_daily=0), Retention(keep_last=-1), Retention(keep_within="soon")])
def test_rules_a_schedule_cannot_hold_are_rejected(rules: Retention) -> None:
    with pytest.raises(Invalid, match="keep_"):
        check_rules(rules)
