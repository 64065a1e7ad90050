"""Expected against actual firing: the spec's first reason to look at runs ("an automation is firing more
or less than expected").

- A schedule trigger is expected to fire as often as its cron says over the part of the period that has
  passed, version by version (a version's cron holds from the moment that version took effect).
  Its actual fires are its runs triggered by the schedule; members' "run now" runs are shown apart.
- An event or signal trigger is expected to run once per matching trigger event received.

A mismatch is flagged, with what explains it where the record has it: the spans in which an admin had
the automation disabled (from the audit log), and how many expected fires fell inside them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from core.definitions import DefinitionError, Trigger, Vocabulary, parse_definition
from core.schedule import fire_times

FIRE_COUNT_LIMIT = 100_000  # a cron of every minute over years: count up to here, then say "at least"


@dataclass(frozen=True)
class DisabledSpan:
    start: dt.datetime
    end: dt.datetime | None  # None: still disabled
    by: str


@dataclass(frozen=True)
class FiringCheck:
    definition_id: str
    trigger: str  # in words: "Mondays 06:00 UTC", "event incident.closed", ...
    trigger_kind: str
    expected: int
    actual: int
    manual_runs: int
    disabled_spans: tuple[DisabledSpan, ...]
    expected_while_disabled: int
    at_least: bool = False  # the expected count hit FIRE_COUNT_LIMIT

    @property
    def difference(self) -> int:
        return self.actual - self.expected

    @property
    def verdict(self) -> str:
        if self.difference < 0:
            return "fewer than expected"
        if self.difference > 0:
            return "more than expected"
        return "as expected"

    @property
    def flagged(self) -> bool:
        return self.difference != 0

    def explanation(self) -> str:
        parts = []
        for s in self.disabled_spans:
            until = f"{s.end:%Y-%m-%d %H:%M}" if s.end else "now"
            parts.append(f"disabled {s.start:%Y-%m-%d %H:%M} → {until} UTC by {s.by}")
        if self.expected_while_disabled:
            parts.append(f"{self.expected_while_disabled} expected "
                         f"{'fire' if self.expected_while_disabled == 1 else 'fires'} fell while disabled")
        if self.manual_runs:
            parts.append(f"{self.manual_runs} run-now {'run' if self.manual_runs == 1 else 'runs'} not counted")
        return "; ".join(parts)


def _spans(changes: list[dict[str, Any]], start: dt.datetime, end: dt.datetime) -> list[DisabledSpan]:
    """Disabled spans overlapping [start, end), from the ordered enable/disable audit entries."""
    spans: list[DisabledSpan] = []
    opened: tuple[dt.datetime, str] | None = None
    for c in changes:
        if c["event"] == "definition.disabled" and opened is None:
            opened = (c["occurred_at"], c["actor"])
        elif c["event"] == "definition.enabled" and opened is not None:
            spans.append(DisabledSpan(opened[0], c["occurred_at"], opened[1]))
            opened = None
    if opened is not None:
        spans.append(DisabledSpan(opened[0], None, opened[1]))
    return [s for s in spans if (s.end is None or s.end > start) and s.start < end]


def _triggers_by_window(versions: list[dict[str, Any]], vocabulary: Vocabulary
                        ) -> list[tuple[dt.datetime, dt.datetime | None, Trigger]]:
    """(from, until, trigger) for each version, parsed from the text that was in effect."""
    out = []
    for i, v in enumerate(versions):
        until = versions[i + 1]["created_at"] if i + 1 < len(versions) else None
        try:
            trigger = parse_definition(v["content"], f"{v['definition_id']}@v{v['version']}", vocabulary).trigger
        except DefinitionError:  # a stored version always parsed when it was saved; be safe anyway
            continue
        out.append((v["created_at"], until, trigger))
    return out


def check_firing(definition_id: str, versions: list[dict[str, Any]], changes: list[dict[str, Any]],
                 runs_by_kind: dict[str, int], events_received: dict[tuple[str, str], int],
                 start: dt.datetime, end: dt.datetime, now: dt.datetime,
                 vocabulary: Vocabulary) -> FiringCheck | None:
    """One definition's check over [start, end) (only the part before ``now`` is expected to have fired).

    ``runs_by_kind``: this definition's runs in the period by trigger kind; ``events_received``:
    trigger events in the period by (kind, event type or source)."""
    windows = _triggers_by_window(versions, vocabulary)
    if not windows:
        return None
    latest = windows[-1][2]
    until_now = min(end, now)
    spans = _spans(changes, start, until_now)
    expected = expected_disabled = 0
    at_least = False
    if latest.kind == "schedule":
        for w_from, w_until, trigger in windows:
            if trigger.kind != "schedule":
                continue
            lo, hi = max(start, w_from), min(until_now, w_until or until_now)
            if lo >= hi:
                continue
            times = fire_times(trigger.cron_trigger(), lo, hi, limit=FIRE_COUNT_LIMIT)
            at_least = at_least or len(times) >= FIRE_COUNT_LIMIT
            expected += len(times)
            expected_disabled += sum(1 for t in times if any(
                s.start <= t and (s.end is None or t < s.end) for s in spans))
        actual = runs_by_kind.get("schedule", 0)
    else:
        key = (latest.kind, latest.event if latest.kind == "event" else latest.source)
        expected = events_received.get((key[0], key[1] or ""), 0)
        actual = runs_by_kind.get(latest.kind, 0)
    return FiringCheck(definition_id, latest.describe(), latest.kind, expected, actual,
                       runs_by_kind.get("manual", 0), tuple(spans), expected_disabled, at_least)
