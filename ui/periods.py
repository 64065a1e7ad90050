"""Named periods (last 7 days, this quarter, last quarter, custom) turned into UTC date ranges.

One place decides what "this quarter" means, so the Runs page, the analytics page and the brief agree.
A period is half-open: ``start <= t < end``, both midnight UTC.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

PERIODS: dict[str, str] = {
    "all": "All time",
    "last7": "Last 7 days",
    "this_quarter": "This quarter",
    "last_quarter": "Last quarter",
    "custom": "Custom dates",
}


@dataclass(frozen=True)
class Period:
    start: dt.datetime | None  # inclusive, UTC; None: unbounded
    end: dt.datetime | None  # exclusive, UTC; None: unbounded
    label: str


def _midnight(d: dt.date) -> dt.datetime:
    return dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc)


def quarter_of(d: dt.date) -> tuple[dt.date, dt.date]:
    """First day of the quarter holding ``d`` and first day of the next one."""
    first_month = 3 * ((d.month - 1) // 3) + 1
    start = dt.date(d.year, first_month, 1)
    end = dt.date(d.year + (first_month == 10), (first_month + 2) % 12 + 1, 1)
    return start, end


def quarter_label(start: dt.date) -> str:
    return f"Q{(start.month - 1) // 3 + 1} {start.year}"


def resolve_period(name: str, today: dt.date, start: dt.date | None = None,
                   end: dt.date | None = None) -> Period:
    """``end`` for a custom period is the last day included (as people say it), made exclusive here."""
    if name == "last7":
        return Period(_midnight(today - dt.timedelta(days=6)), _midnight(today + dt.timedelta(days=1)),
                      f"last 7 days ({today - dt.timedelta(days=6):%Y-%m-%d} to {today:%Y-%m-%d})")
    if name == "this_quarter":
        q0, q1 = quarter_of(today)
        return Period(_midnight(q0), _midnight(q1), f"this quarter, {quarter_label(q0)}")
    if name == "last_quarter":
        q0, _ = quarter_of(today)
        p0, p1 = quarter_of(q0 - dt.timedelta(days=1))
        return Period(_midnight(p0), _midnight(p1), f"last quarter, {quarter_label(p0)}")
    if name == "custom":
        label = f"{start or '…'} to {end or '…'}"
        return Period(_midnight(start) if start else None,
                      _midnight(end + dt.timedelta(days=1)) if end else None, label)
    return Period(None, None, "all time")


def quarter_name(start: dt.date) -> str:
    """The URL spelling of a quarter: ``2026-Q3``."""
    return f"{start.year}-Q{(start.month - 1) // 3 + 1}"


def parse_quarter(text: str) -> dt.date | None:
    """``2026-Q3`` → 2026-07-01; None for anything else."""
    year, sep, q = text.strip().upper().partition("-Q")
    if not sep or not year.isdigit() or q not in ("1", "2", "3", "4") or not 1970 <= int(year) <= 9999:
        return None
    return dt.date(int(year), 3 * (int(q) - 1) + 1, 1)


def quarters_between(first: dt.date, last: dt.date) -> list[dt.date]:
    """First days of every quarter from the one holding ``first`` to the one holding ``last``, newest first."""
    out, q = [], quarter_of(first)[0]
    while q <= last:
        out.append(q)
        q = quarter_of(q)[1]
    return out[::-1]


def resolve_analytics_period(period: str, today: dt.date, quarter: str | None = None,
                             start: dt.date | None = None, end: dt.date | None = None) -> tuple[dt.date, dt.date, str]:
    """(first day, last day included, words) of an analytics view's period."""
    if period == "custom" and start and end:
        return start, end, f"{start:%Y-%m-%d} to {end:%Y-%m-%d}"
    if period == "quarter" and quarter and parse_quarter(quarter):
        q0 = parse_quarter(quarter)
        assert q0 is not None
    elif period == "this_quarter":
        q0 = quarter_of(today)[0]
    else:
        q0 = quarter_of(quarter_of(today)[0] - dt.timedelta(days=1))[0]
    q1 = quarter_of(q0)[1] - dt.timedelta(days=1)
    return q0, q1, f"{quarter_label(q0)} ({q0:%Y-%m-%d} to {q1:%Y-%m-%d})"
