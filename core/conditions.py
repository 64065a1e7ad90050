"""Declarative conditions: which subjects a run acts on, and guards checked just before each action.

A condition is data, never code: comparisons on a register's fields and "a related record exists / does
not exist" clauses. ``store.matching`` compiles the same clauses to SQL both for matching and for the
per-item re-check, so the two can never disagree. Each clause carries the sentence recorded as the
skip reason when it stops holding.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

OPS = {"eq": "is", "ne": "is not", "lt": "is before/below", "lte": "is on or before/at most",
       "gt": "is after/above", "gte": "is on or after/at least", "in": "is one of",
       "not_in": "is none of", "is_null": "is empty", "not_null": "is set"}


@dataclass(frozen=True)
class DaysAfterTrigger:
    """A date relative to the trigger's time: ``{days_after_trigger: 30}``."""

    days: int

    def resolve(self, trigger_at: dt.datetime) -> dt.datetime:
        return trigger_at + dt.timedelta(days=self.days)


Value = str | int | float | bool | dt.date | list[Any] | DaysAfterTrigger | None


@dataclass(frozen=True)
class Compare:
    field: str
    op: str
    value: Value = None

    def describe(self) -> str:
        v = f"{self.value.days:+d} days from the trigger" if isinstance(self.value, DaysAfterTrigger) \
            else repr(self.value)
        return f"{self.field} {OPS[self.op]}" + ("" if self.op in ("is_null", "not_null") else f" {v}")


@dataclass(frozen=True)
class Related:
    """A record in another register that matches this subject (``match``: their field → our field)."""

    register: str
    match: tuple[tuple[str, str], ...]
    where: tuple[Compare, ...]
    exists: bool

    def describe(self) -> str:
        link = " and ".join(f"{theirs} = {ours}" for theirs, ours in self.match)
        return f"{'a' if self.exists else 'no'} {self.register} record with {link}"


@dataclass(frozen=True)
class Clause:
    test: Compare | Related
    reason: str  # recorded when the clause does not hold at execution

    def describe(self) -> str:
        return self.test.describe()


@dataclass(frozen=True)
class Condition:
    subject: str
    where: tuple[Clause, ...]
    guards: tuple[Clause, ...]

    @property
    def all_clauses(self) -> tuple[Clause, ...]:
        return self.where + self.guards


def literal_for(value: Value, trigger_at: dt.datetime, field_type: str) -> Any:
    """The comparable value of a clause at a given trigger time, typed like the field."""
    if isinstance(value, DaysAfterTrigger):
        moment = value.resolve(trigger_at)
        return moment.date() if field_type == "date" else moment
    return value
