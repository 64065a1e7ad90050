"""Fire times of a cron trigger over an interval, computed by APScheduler's own trigger.

The demo's simulated quarter and the analytics' expected-fires check use this one function, so "how
often should it have fired" is answered the same way the engine's scheduler answers "when do I fire".
"""

from __future__ import annotations

import datetime as dt

from apscheduler.triggers.cron import CronTrigger

UTC = dt.UTC


def fire_times(trigger: CronTrigger, start: dt.datetime, end: dt.datetime,
               limit: int | None = None) -> list[dt.datetime]:
    """Fire times in [start, end); at most ``limit`` of them (a cron of every minute over years is big)."""
    out: list[dt.datetime] = []
    t = trigger.get_next_fire_time(None, start)
    while t is not None and t < end and (limit is None or len(out) < limit):
        out.append(t.astimezone(UTC))
        t = trigger.get_next_fire_time(t, t + dt.timedelta(seconds=1))
    return out


_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_DAY_WORDS = ["Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays", "Saturdays", "Sundays"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _expand(field: str, names: list[str] | None, low: int, high: int) -> list[int] | None:
    """The values a cron field lists (``mon,thu``, ``1-5``, ``1,15``), or None for anything fancier."""
    out: list[int] = []
    for part in field.lower().split(","):
        ends = part.split("-")
        if len(ends) > 2:
            return None
        nums = []
        for e in ends:
            if e.isdigit():
                nums.append(int(e))
            elif names and e in names:
                nums.append(names.index(e) + low)
            else:
                return None
        first, last = nums[0], nums[-1]
        if not low <= first <= last <= high:
            return None
        out += range(first, last + 1)
    return sorted(set(out))


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def describe_cron(cron: str, timezone: str = "UTC") -> str:
    """A schedule as people say it: ``0 6 * * mon`` → "Mondays 06:00 UTC"; ``0 7 1 * *`` → "the 1st of
    every month 07:00 UTC". What it cannot say plainly it names as the cron expression it is."""
    fields = cron.split()
    fallback = f"cron '{cron}' ({timezone})"
    if len(fields) != 5:
        return fallback
    minute, hour, dom, month, dow = fields
    if not (minute.isdigit() and hour.isdigit() and int(minute) < 60 and int(hour) < 24):
        return fallback
    at = f"{int(hour):02d}:{int(minute):02d} {timezone}"
    months = None if month == "*" else _expand(month, [m[:3].lower() for m in _MONTHS], 1, 12)
    if month != "*" and months is None:
        return fallback
    in_months = "" if months is None else " of " + _and([_MONTHS[m - 1] for m in months])
    if dom == "*" and dow == "*":
        return f"every day{' in ' + in_months[4:] if in_months else ''} {at}"
    if dom == "*":
        # Said as the engine fires it: APScheduler 3 reads a numeric weekday with 0 = Monday (classic cron
        # has 0 = Sunday), so "0 6 * * 1" fires on Tuesdays and this says so; names (mon, tue) mean the same
        # to both.
        days = _expand(dow, _DAYS, 0, 6)
        if days is None:
            return fallback
        if days == [0, 1, 2, 3, 4]:
            words = "weekdays (Monday to Friday)"
        else:
            words = _and([_DAY_WORDS[d] for d in days])
        return f"{words}{' in ' + in_months[4:] if in_months else ''} {at}"
    if dow == "*":
        dates = _expand(dom, None, 1, 31)
        if dates is None:
            return fallback
        return f"the {_and([_ordinal(d) for d in dates])} of {in_months[4:] or 'every month'} {at}"
    return fallback
