"""Five-field cron expressions (minute hour day-of-month month day-of-week) in an IANA time zone, by croniter.

croniter matches the fields (names, ranges, steps, lists, `L`, `#`, macros such as @daily) and
walks local wall-clock time; this module adds the two DST rules cron users expect (cronie's):

- a wall time that does not exist (spring forward, 02:30 on the night clocks jump from 02:00 to
  03:00) fires once, at the jump, for a job with fixed times; a job with `*` in its minute or
  hour field follows elapsed time and simply has no run in the missing hour;
- a wall time that happens twice (fall back) fires once, at its first occurrence, for a job
  with fixed times; a `*` job runs in both copies of the hour (they are real, distinct minutes).

Every instant this module returns is aware UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter

from firebackup.services.errors import Invalid

_SEARCH = 5 * 366  # steps croniter may take looking for a run before we call the expression empty
_UTC = timezone.utc


def parse_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError for path-like names, etc.
        raise Invalid(f"unknown time zone {name!r}; use an IANA name such as Europe/Paris or UTC") from None


@dataclass(frozen=True)
class Cron:
    """A validated expression in its time zone; `fixed` is False when minute or hour is a `*` field."""

    expr: str
    tz: ZoneInfo
    fixed: bool

    def next_after(self, after: datetime) -> datetime | None:
        """The first run strictly after `after` (aware), in UTC; None if there is none within five years."""
        return next(self._runs(after, forward=True), None)

    def latest_at_or_before(self, now: datetime) -> datetime | None:
        """The last run at or before `now` (aware), in UTC; None if there is none within five years."""
        # croniter's get_prev is strictly before its start: start one second later, then drop a
        # run that lands in that second (a `now` with a fractional second just before the minute).
        for run in self._runs(now + timedelta(seconds=1), forward=False):
            if run <= now:
                return run
        return None

    def _runs(self, start: datetime, *, forward: bool) -> Iterator[datetime]:
        if start.tzinfo is None:
            raise ValueError("naive datetime given to Cron")
        it = croniter(self.expr, start.astimezone(self.tz))
        for _ in range(_SEARCH):
            try:
                local: datetime = it.get_next(datetime) if forward else it.get_prev(datetime)
            except CroniterError:
                return  # nothing more in croniter's own search window
            run = local.astimezone(_UTC)
            if self.fixed and _second_occurrence(run, self.tz):
                continue
            yield run


def _second_occurrence(run: datetime, tz: ZoneInfo) -> bool:
    """True when `run`'s local wall time also happened an hour (or so) earlier: the repeat after a fall-back."""
    wall = run.astimezone(tz).replace(tzinfo=None)
    # Decided from the UTC instant, never from croniter's fold flags, which it does not keep consistent.
    return wall.replace(tzinfo=tz, fold=0).astimezone(_UTC) != run


def parse_cron(expr: str, tz: str = "UTC") -> Cron:
    """Parse and validate; raises Invalid naming what is wrong."""
    zone = parse_timezone(tz)
    text = " ".join(expr.split())
    if text.startswith("@"):
        text = text.lower()
        if text not in _MACRO_TIMES:
            raise Invalid(f"cron macro {expr!r} is not known; use one of {', '.join(_MACRO_TIMES)}")
    elif len(text.split()) != 5:
        raise Invalid(f"cron {expr!r} has {len(text.split())} fields; use 5: minute hour day-of-month month "
                      f"day-of-week (or a macro such as @daily)")
    if not _accepted(text):
        raise Invalid(_what_is_wrong(expr, text))
    minute, hour = _MACRO_TIMES.get(text.lower(), text.split()[:2])
    return Cron(text, zone, fixed=not (minute.startswith("*") or hour.startswith("*")))


_FIELDS = (("minute", "0-59"), ("hour", "0-23"), ("day-of-month", "1-31 or L"), ("month", "1-12 or jan-dec"),
           ("day-of-week", "0-7 or sun-sat"))


def _accepted(text: str) -> bool:
    try:
        croniter(text, datetime(2000, 1, 1, tzinfo=_UTC))
    except (CroniterError, ValueError, KeyError, IndexError):
        return False
    return True


def _what_is_wrong(expr: str, text: str) -> str:
    """One line naming the first field croniter refuses on its own (croniter's own messages name none)."""
    parts = text.split()
    for i, (name, allowed) in enumerate(_FIELDS):
        if not _accepted(" ".join(parts[i] if j == i else "*" for j in range(5))):
            return f"cron {name} field {parts[i]!r} is not valid; use {allowed}, *, ranges (a-b), lists (a,b) and steps (*/n)"
    return f"cron {expr!r} is not valid; check each field: minute hour day-of-month month day-of-week"


# The minute and hour fields of croniter's macros: @hourly follows elapsed time, the others fixed times.
_MACRO_TIMES = {"@hourly": ["0", "*"], "@daily": ["0", "0"], "@midnight": ["0", "0"], "@weekly": ["0", "0"],
                "@monthly": ["0", "0"], "@yearly": ["0", "0"], "@annually": ["0", "0"]}
