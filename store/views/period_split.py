"""A period cut into what the rollups answer and what ``runs`` itself must: the whole UTC days (or months)
inside it, and the rest — the open runs anywhere in it, and the closed ones of a partial first or last day.

The rollups (store/rollups.py) hold closed runs only, by the UTC day (or month) of their trigger, so a
period that starts or ends mid-day still gets exact figures: its partial days are read from ``runs`` (a few
thousand rows at most), its whole days from the rollup.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from core.states import OPEN_RUN_STATUSES, TERMINAL_RUN_STATUSES
from store.rollups import utc
from store.schema import runs

Unit = Literal["day", "month"]


def _floor(t: dt.datetime, unit: Unit) -> dt.date:
    d = utc(t).date()
    return d.replace(day=1) if unit == "month" else d


def _ceil(t: dt.datetime, unit: Unit) -> dt.date:
    t = utc(t)
    d = _floor(t, unit)
    if dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC) == t:
        return d
    if unit == "day":
        return d + dt.timedelta(days=1)
    return (d + dt.timedelta(days=32)).replace(day=1)


def _at(d: dt.date) -> dt.datetime:
    return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC)


@dataclass(frozen=True)
class PeriodSplit:
    first: dt.date | None  # the first whole day (month) of the period; None: no lower bound
    end: dt.date | None  # the first day (month) after the whole ones; None: no upper bound
    head: bool = True  # whether part of a day (month) comes before ``first`` (a period from 06:00, say)
    tail: bool = True  # whether part of one comes from ``end`` on

    @property
    def whole(self) -> bool:
        """Whether any whole day (month) lies in the period."""
        return self.first is None or self.end is None or self.first < self.end

    def whole_conds(self, column: Any) -> list[Any]:
        """The rollup's rows of the whole days (months): ``column`` is its day (month)."""
        return [*([column >= self.first] if self.first else []), *([column < self.end] if self.end else [])]

    def rest_conds(self, conn: sa.Connection) -> list[Any]:
        """The runs no rollup row of the whole part holds, as disjoint conditions to be read from ``runs`` with
        the period's own conditions: the open runs, and the closed ones of the partial first and last day
        (month). On PostgreSQL one query each (each one index-friendly: an OR of them reads every run); on
        DuckDB one query with their OR (it scans the runs' columns once either way)."""
        if not self.whole:
            return [sa.true()]
        closed = runs.c.status.in_(sorted(TERMINAL_RUN_STATUSES))
        conds = [runs.c.status.in_(OPEN_RUN_STATUSES),
                 *(sa.and_(closed, edge) for edge in self.edge_conds(runs.c.triggered_at))]
        return conds if conn.dialect.name == "postgresql" else [sa.or_(*conds)]

    def edge_conds(self, column: Any) -> list[Any]:
        """The partial first and last day (month), each a condition on the timestamp ``column``: what the
        source table answers beside the whole ones (everything, when no whole one lies in the period)."""
        if not self.whole:
            return [sa.true()]
        return [*([column < _at(self.first)] if self.first and self.head else []),
                *([column >= _at(self.end)] if self.end and self.tail else [])]


def split_period(f: Any, unit: Unit) -> PeriodSplit:
    """``f``: anything with ``start`` and ``end`` (inclusive, exclusive; None: unbounded)."""
    first = _ceil(f.start, unit) if f.start else None
    end = _floor(f.end, unit) if f.end else None
    return PeriodSplit(first, end, head=first is not None and _at(first) != utc(f.start),
                       tail=end is not None and _at(end) != utc(f.end))
