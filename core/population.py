"""The matched population compared between two runs: who entered, who left, and which clause changed for each.

Pure. A clause is evaluated in Python on a subject's fields as they stood at each run's trigger time (the
store reconstructs them from the register's recorded changes); a comparison whose answer differs between the
two times names the change: the field's value changed ("status became 'inactive'"), or the value stayed and
the window moved with the trigger time ("kyc_review_due moved inside the window"). A clause on a related
register is not evaluated here: when no comparison explains a move, the explanation says so.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.conditions import Compare, Condition, DaysAfterTrigger, literal_for

_TESTS: dict[str, Any] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "in": lambda a, b: a in b, "not_in": lambda a, b: a not in b,
    "is_null": lambda a, b: a is None, "not_null": lambda a, b: a is not None,
}


def _comparable(value: Any, field_type: str) -> Any:
    if field_type == "date" and isinstance(value, str):
        return dt.date.fromisoformat(value[:10])
    if field_type == "date" and isinstance(value, dt.datetime):
        return value.date()
    if field_type == "timestamp" and isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    return value


def holds(c: Compare, fields: Mapping[str, Any], at: dt.datetime, field_type: str) -> bool | None:
    """Whether the comparison holds for these field values at ``at``; None if it cannot be told (a value
    missing or of another type: a NULL compares false in SQL, and so here)."""
    value = _comparable(fields.get(c.field), field_type)
    if c.op in ("is_null", "not_null"):
        return bool(_TESTS[c.op](value, None))
    if value is None:
        return False
    wanted = literal_for(c.value, at, field_type)
    wanted = [_comparable(v, field_type) for v in wanted] if isinstance(wanted, list) else \
        _comparable(wanted, field_type)
    try:
        return bool(_TESTS[c.op](value, wanted))
    except TypeError:
        return None


def explain_move(condition: Condition, field_types: Mapping[str, str], before: Mapping[str, Any],
                 before_at: dt.datetime, after: Mapping[str, Any], after_at: dt.datetime) -> list[str]:
    """Why a subject entered (the condition now holds) or left (it no longer does): each ``where`` comparison
    whose answer changed between the two times, in words."""
    out: list[str] = []
    for clause in condition.where:
        c = clause.test
        if not isinstance(c, Compare):
            continue
        ftype = field_types.get(c.field, "string")
        was, now = holds(c, before, before_at, ftype), holds(c, after, after_at, ftype)
        if was is None or now is None or was == now:
            continue
        old, new = before.get(c.field), after.get(c.field)
        if old != new:
            out.append(f"{c.field} changed from {old!r} to {new!r}" if old is not None else
                       f"{c.field} became {new!r}")
        elif isinstance(c.value, DaysAfterTrigger):
            out.append(f"{c.field} {'moved inside' if now else 'moved outside'} the window "
                       f"({c.describe()})")
        else:
            out.append(f"{c.describe()} {'now holds' if now else 'no longer holds'}")
    return out or [NOT_EXPLAINED]


NOT_EXPLAINED = ("no compared field changed: a clause on a related register, or a change not recorded as a "
                 "register load, moved it")


def explain_by_version(condition: Condition, version: int, field_types: Mapping[str, str],
                       fields: Mapping[str, Any], at: dt.datetime) -> list[str]:
    """The comparisons of ``condition`` (a version's) that do not hold for ``fields`` at ``at``: why the other
    version would (not) have matched the subject, when no data changed but the definition did."""
    out = []
    for clause in condition.where:
        c = clause.test
        if isinstance(c, Compare) and holds(c, fields, at, field_types.get(c.field, "string")) is False:
            out.append(f"version {version}'s clause {c.describe()} does not hold ({clause.reason})")
    return out


@dataclass(frozen=True)
class MovedSubject:
    subject_id: str
    label: str
    why: tuple[str, ...]


@dataclass(frozen=True)
class PopulationChange:
    """This run's matched subjects against the previous run's."""

    previous_run_id: str | None
    previous_version: int | None
    matched: int
    previous_matched: int
    stayed: int
    entered_total: int
    left_total: int
    entered: tuple[MovedSubject, ...] = field(default_factory=tuple)  # the first of them, explained
    left: tuple[MovedSubject, ...] = field(default_factory=tuple)

    @property
    def moved(self) -> int:
        return self.entered_total + self.left_total

    def moved_percent(self) -> float:
        return 100.0 * self.moved / max(self.previous_matched, 1)


def split_population(current: Sequence[str], previous: Sequence[str]) -> tuple[list[str], list[str], int]:
    """(entered, left, stayed) between two runs' matched subject ids, entered and left in key order."""
    cur, prev = set(current), set(previous)
    return sorted(cur - prev), sorted(prev - cur), len(cur & prev)
