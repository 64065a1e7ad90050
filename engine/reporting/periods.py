"""An ``AnalyticsPeriod`` from two calendar days, as people say a period: first and last day included.

The CLI (``brief``, ``export``) and any other caller turn "2026-07-01 to 2026-09-30" into the half-open
UTC range the store filters on, with a label that names the quarter when the days are exactly one, so
every file made for a period calls it the same thing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from engine.reporting.analytics import AnalyticsPeriod
from ui.periods import quarter_label, quarter_of

UTC = dt.timezone.utc


class PeriodError(ValueError):
    """The days do not make a period (the last day is before the first)."""


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC)


def period_label(first_day: dt.date, last_day: dt.date) -> str:
    """E.g. "2026-07-01 to 2026-09-30 (Q3 2026)"; the quarter is named only when the days are exactly one."""
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
