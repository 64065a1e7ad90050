"""The period picker the Runs and Analytics pages share: one select box of named periods and quarters, and
custom dates that start from what was shown and stay what the member chose (the URL holds them)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from core.periods import (
    PERIOD_KINDS,
    PeriodChoice,
    parse_quarter,
    quarter_label,
    quarter_name,
    quarter_of,
    quarters_between,
    resolve_period,
)


def _options(today: dt.date, earliest: dt.date | None, choice: PeriodChoice) -> dict[str, str]:
    """Option value → label: the relative periods (naming their quarter), then every quarter with runs by its
    name (a link to "Q3 2026" means Q3 2026 next year too; "last quarter" moves on), then custom."""
    this_q = quarter_of(today)[0]
    last_q = quarter_of(this_q - dt.timedelta(days=1))[0]
    options = {"all": PERIOD_KINDS["all"], "last7": PERIOD_KINDS["last7"],
               "this_quarter": f"This quarter ({quarter_label(this_q)})",
               "last_quarter": f"Last quarter ({quarter_label(last_q)})"}
    for q in quarters_between(earliest or last_q, today):
        options[quarter_name(q)] = quarter_label(q)
    if choice.kind == "quarter" and choice.quarter and choice.quarter not in options:
        start = parse_quarter(choice.quarter)  # a quarter named in a link, outside the workspace's runs
        options[choice.quarter] = quarter_label(start) if start else choice.quarter
    options["custom"] = PERIOD_KINDS["custom"]
    return options


def pick_period(place: Any, choice: PeriodChoice, today: dt.date, earliest: dt.date | None = None,
                dates_place: Any = None) -> PeriodChoice:
    """Draw the picker in ``place`` (custom dates in ``dates_place``, or below it) and return the choice.

    Switching to custom dates starts from the days of the period shown until then (Q3 → 1 July to
    30 September), not from an arbitrary default, so "custom" refines what the member was looking at."""
    options = _options(today, earliest, choice)
    current = choice.quarter if choice.kind == "quarter" and choice.quarter else choice.kind
    values = list(options)
    picked = place.selectbox("Period", values, index=values.index(current), format_func=options.get)
    if picked != "custom":
        if picked in PERIOD_KINDS:
            return PeriodChoice(picked)
        return PeriodChoice("quarter", quarter=picked)
    if choice.kind == "custom":
        start, end = choice.start, choice.end
    else:
        shown = resolve_period(choice, today, earliest)
        start, end = shown.first_day, shown.last_day
    start, end = start or today - dt.timedelta(days=29), end or today
    where = dates_place or place
    left, right = where.columns(2)
    first = left.date_input("From", value=start, max_value=dt.date(9999, 12, 31))
    last = right.date_input("To (included)", value=end, max_value=dt.date(9999, 12, 31))
    first, last = first or start, last or end
    if last < first:
        first, last = last, first
    return PeriodChoice("custom", start=first, end=last)
