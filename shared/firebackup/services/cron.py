"""Five-field cron expressions (minute hour day-of-month month day-of-week) with a time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from firebackup.services.errors import Invalid

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_NAMES = {
    3: {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())},
    4: {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())},
}
_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
           "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    dom_any: bool
    dow_any: bool
    tz: ZoneInfo

    def _day_matches(self, d: datetime) -> bool:
        dow = (d.weekday() + 1) % 7
        if self.dom_any or self.dow_any:
            return d.day in self.days and dow in self.weekdays
        return d.day in self.days or dow in self.weekdays  # classic cron: either restricted field matches

    def next_after(self, after: datetime) -> datetime | None:
        """The first run strictly after `after` (aware), in UTC; None if none within five years."""
        local = after.astimezone(self.tz)
        day = local.date()
        for _ in range(366 * 5):
            if day.month in self.months and self._day_matches(datetime.combine(day, time())):
                for h in sorted(self.hours):
                    for m in sorted(self.minutes):
                        cand = datetime.combine(day, time(h, m), tzinfo=self.tz)
                        # Skip wall-clock times a DST jump makes nonexistent.
                        if cand.astimezone(timezone.utc).astimezone(self.tz).replace(tzinfo=None) != cand.replace(tzinfo=None):
                            continue
                        if cand > after:
                            return cand.astimezone(timezone.utc)
            day += timedelta(days=1)
        return None


def parse_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError for path-like names, etc.
        raise Invalid(f"unknown time zone {name!r}; use an IANA name such as Europe/Paris or UTC") from None


def parse_cron(expr: str, tz: str = "UTC") -> Cron:
    """Parse and validate; raises Invalid naming the bad field."""
    zone = parse_timezone(tz)
    text = _MACROS.get(expr.strip().lower(), expr.strip())
    parts = text.split()
    if len(parts) != 5:
        raise Invalid(f"cron {expr!r} has {len(parts)} fields; use 5: minute hour day-of-month month day-of-week")
    sets = [_field(p, i) for i, p in enumerate(parts)]
    weekdays = frozenset(d % 7 for d in sets[4])
    return Cron(frozenset(sets[0]), frozenset(sets[1]), frozenset(sets[2]), frozenset(sets[3]), weekdays,
                dom_any=parts[2] == "*", dow_any=parts[4] == "*", tz=zone)


def _field(text: str, index: int) -> set[int]:
    name, lo, hi = _FIELDS[index]
    out: set[int] = set()
    for item in text.split(","):
        try:
            rng, _, step_s = item.partition("/")
            step = int(step_s) if step_s else 1
            if step < 1:
                raise ValueError
            if rng == "*":
                a, b = lo, hi
            elif "-" in rng:
                a_s, b_s = rng.split("-", 1)
                a, b = _value(a_s, index), _value(b_s, index)
            else:
                a = _value(rng, index)
                b = hi if step_s else a
        except ValueError:
            raise Invalid(f"cron {name} field {text!r} is not valid; use numbers {lo}-{hi}, *, ranges, lists, steps") from None
        if not (lo <= a <= hi and lo <= b <= hi and a <= b):
            raise Invalid(f"cron {name} field {text!r} is out of range {lo}-{hi}")
        out.update(range(a, b + 1, step))
    return out


def _value(text: str, index: int) -> int:
    names = _NAMES.get(index, {})
    if text.lower() in names:
        return names[text.lower()]
    if not text.isdigit() or len(text) > 3:
        raise ValueError(text)
    return int(text)
