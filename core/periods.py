"""The one period model of the Runs and Analytics pages: what a member chose (all time, the last 7 days,
this or last quarter, a named quarter, custom dates), how it reads in a URL, and the UTC range it means.

One place decides what "this quarter" means, so the Runs page, the analytics page and the brief agree.
A period is half-open: ``start <= t < end``, both midnight UTC. Nothing here imports Streamlit: the
picker widget (``ui.period_picker``) draws a ``PeriodChoice``; links and the store read it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

# kind → how the picker names it. A named quarter is its own option per quarter (``2026-Q3``).
PERIOD_KINDS: dict[str, str] = {
    "all": "All time",
    "last7": "Last 7 days",
    "this_quarter": "This quarter",
    "last_quarter": "Last quarter",
    "quarter": "A named quarter",
    "custom": "Custom dates",
}
UTC = dt.UTC


def _midnight(d: dt.date) -> dt.datetime:
    return dt.datetime(d.year, d.month, d.day, tzinfo=UTC)


class PeriodError(ValueError):
    """The days do not make a period (the last day is before the first)."""


def quarter_of(d: dt.date) -> tuple[dt.date, dt.date]:
    """First day of the quarter holding ``d`` and first day of the next one."""
    first_month = 3 * ((d.month - 1) // 3) + 1
    start = dt.date(d.year, first_month, 1)
    end = dt.date(d.year + (first_month == 10), (first_month + 2) % 12 + 1, 1)
    return start, end


def quarter_label(start: dt.date) -> str:
    return f"Q{(start.month - 1) // 3 + 1} {start.year}"


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


@dataclass(frozen=True)
class PeriodChoice:
    """What the member chose, as it lives in the URL (``period``, ``quarter``, ``from``, ``to``)."""

    kind: str = "all"
    quarter: str | None = None  # "2026-Q3", with kind "quarter"
    start: dt.date | None = None  # custom: first day included
    end: dt.date | None = None  # custom: last day included

    def to_params(self, default_kind: str) -> dict[str, str]:
        params = {"period": self.kind} if self.kind != default_kind else {}
        if self.kind == "quarter" and self.quarter:
            params["quarter"] = self.quarter
        if self.kind == "custom":
            if self.start:
                params["from"] = self.start.isoformat()
            if self.end:
                params["to"] = self.end.isoformat()
        return params


@dataclass(frozen=True)
class Period:
    """A resolved period: the half-open UTC range the store filters on, and its words."""

    start: dt.datetime | None  # inclusive; None: unbounded
    end: dt.datetime | None  # exclusive; None: unbounded
    label: str

    @property
    def first_day(self) -> dt.date | None:
        return self.start.date() if self.start else None

    @property
    def last_day(self) -> dt.date | None:
        return (self.end - dt.timedelta(days=1)).date() if self.end else None


def _span_label(first: dt.date, last: dt.date) -> str:
    return f"{first:%Y-%m-%d} to {last:%Y-%m-%d}"


def _quarter_period(q0: dt.date) -> Period:
    q1 = quarter_of(q0)[1]
    return Period(_midnight(q0), _midnight(q1),
                  f"{quarter_label(q0)} ({_span_label(q0, q1 - dt.timedelta(days=1))})")


def resolve_period(choice: PeriodChoice, today: dt.date, earliest: dt.date | None = None) -> Period:
    """The range ``choice`` means on ``today``. ``earliest`` bounds "all time" where a page needs days
    (analytics draws weeks from the first run to today); without it all time is unbounded."""
    if choice.kind == "last7":
        first = today - dt.timedelta(days=6)
        return Period(_midnight(first), _midnight(today + dt.timedelta(days=1)),
                      f"last 7 days ({_span_label(first, today)})")
    if choice.kind == "this_quarter":
        return _quarter_period(quarter_of(today)[0])
    if choice.kind == "last_quarter":
        return _quarter_period(quarter_of(quarter_of(today)[0] - dt.timedelta(days=1))[0])
    if choice.kind == "quarter" and choice.quarter and (q0 := parse_quarter(choice.quarter)):
        return _quarter_period(q0)
    if choice.kind == "custom":
        start = _midnight(choice.start) if choice.start else None
        end = _midnight(choice.end + dt.timedelta(days=1)) if choice.end else None
        return Period(start, end, f"{choice.start or '…'} to {choice.end or '…'}")
    if earliest is not None:
        return Period(_midnight(earliest), _midnight(today + dt.timedelta(days=1)),
                      f"all time ({_span_label(earliest, today)})")
    return Period(None, None, "all time")


def last_param(params: Mapping[str, list[str]], key: str) -> str | None:
    """A URL param's value (the last, when a link repeats it), or None when absent or empty: the one way
    every page and view reads a single-valued param."""
    values = params.get(key) or []
    return values[-1] or None if values else None


def _cut(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _date(text: str | None, name: str, problems: list[str], show: Callable[[str], str]) -> dt.date | None:
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        problems.append(f"'{name}={show(text)}' is not a date like 2026-07-01; it was ignored.")
        return None


def parse_period(params: Mapping[str, list[str]], default_kind: str, problems: list[str],
                 show: Callable[[str], str] = _cut) -> PeriodChoice:
    """A choice from URL params; every param that could not be used adds a sentence (never an error).

    ``show`` names a value from the link inside a sentence (pages pass one that escapes markdown).
    ``from``/``to`` alone mean custom dates, ``quarter`` alone a named quarter, so a link written by hand
    reads as meant."""
    def one(key: str) -> str | None:
        return last_param(params, key)

    default = PERIOD_KINDS[default_kind].lower()
    kind = one("period") or default_kind
    if kind not in PERIOD_KINDS:
        problems.append(f"Unknown period '{show(kind)}'; showing {default}.")
        kind = default_kind
    quarter = one("quarter")
    if quarter and parse_quarter(quarter) is None:
        problems.append(f"'quarter={show(quarter)}' is not a quarter like 2026-Q3; showing {default}.")
        quarter, kind = None, default_kind
    start, end = _date(one("from"), "from", problems, show), _date(one("to"), "to", problems, show)
    if start and end and end < start:
        problems.append("The 'to' date is before the 'from' date; they were swapped.")
        start, end = end, start
    if start or end:
        kind = "custom"
    elif quarter:
        kind = "quarter"
    if kind == "quarter" and not quarter:
        problems.append(f"No quarter was named in the link; showing {default}.")
        kind = default_kind
    return PeriodChoice(kind, quarter if kind == "quarter" else None,
                        start if kind == "custom" else None, end if kind == "custom" else None)


# --- a period as analytics, exports and the brief cover it: two calendar days, both included -----------
@dataclass(frozen=True)
class AnalyticsPeriod:
    start: dt.datetime  # inclusive, UTC
    end: dt.datetime  # exclusive, UTC
    label: str  # e.g. "Q3 2026 (2026-07-01 to 2026-09-30)"
    definitions: tuple[str, ...] = ()  # empty: all

    @property
    def last_day(self) -> dt.date:
        return (self.end - dt.timedelta(days=1)).date()

    def filters(self) -> dict[str, str]:
        return {"definitions": ", ".join(self.definitions) if self.definitions else "all"}


def period_label(first_day: dt.date, last_day: dt.date) -> str:
    """E.g. "2026-07-01 to 2026-09-30 (Q3 2026)"; the quarter is named only when the days are exactly one.
    The CLI (``brief``, ``export``) names a period so, so every file made for a period calls it alike."""
    label = f"{first_day:%Y-%m-%d} to {last_day:%Y-%m-%d}"
    q_start, q_end = quarter_of(first_day)
    if first_day == q_start and last_day == q_end - dt.timedelta(days=1):
        label += f" ({quarter_label(q_start)})"
    return label


def period_from_dates(first_day: dt.date, last_day: dt.date, definitions: Iterable[str] = ()) -> AnalyticsPeriod:
    """[first_day 00:00 UTC, last_day + 1 day 00:00 UTC), optionally limited to some definitions."""
    if last_day < first_day:
        raise PeriodError(f"the period ends ({last_day:%Y-%m-%d}) before it starts ({first_day:%Y-%m-%d})")
    return AnalyticsPeriod(_midnight(first_day), _midnight(last_day + dt.timedelta(days=1)),
                           period_label(first_day, last_day), tuple(sorted(set(definitions))))
