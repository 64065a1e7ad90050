"""Shared shaping for the Runs, Run and Run item pages: rows for tables, breakdowns, engine clock ranges.

No SQL here (the store answers), no status logic (the engine decides); only how things read on screen.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd

from engine.statemachine import ITEM_OUTCOMES, RUN_STATUSES
from store.run_queries import RunFilter, RunSort
from ui.colors import STATUS_MARKS
from ui.links import RunsView, item_link, record_link, run_link, subject_link
from ui.periods import resolve_period
from ui.text import fmt_duration

OUTCOME_MARKS = {"succeeded": "✓", "failed": "✕", "skipped": "skipped", "awaiting-approval": "awaiting approval",
                 "idempotent-replay": "replayed", "pending": "pending", "in-flight": "in flight"}
ATTENTION = {"completed-with-failures", "failed"}
KNOWN_STATUSES = RUN_STATUSES
KNOWN_OUTCOMES = (*ITEM_OUTCOMES, "pending", "in-flight")


def outcome_breakdown(counts: dict[str, int]) -> str:
    """``590 ✓ · 18 ✕ · 12 skipped``, in the spec's outcome order."""
    order = [o for o in KNOWN_OUTCOMES if counts.get(o)]
    return " · ".join(f"{counts[o]:,} {OUTCOME_MARKS[o]}" for o in order) or "no items"


def duration_seconds(started: dt.datetime | None, completed: dt.datetime | None) -> float | None:
    return (completed - started).total_seconds() if started and completed else None


def run_filter(view: RunsView, today: dt.date) -> tuple[RunFilter, str]:
    """The store filter for a view, and the period's words for the page."""
    period = resolve_period(view.period, today, view.start, view.end)
    return RunFilter(definitions=view.definitions, statuses=view.statuses, start=period.start, end=period.end,
                     time_field=view.time_field, outcome=view.outcome), period.label


def run_sort(view: RunsView) -> RunSort:
    return RunSort(view.sort, view.descending)


def runs_frame(rows: list[dict[str, Any]], outcomes: dict[str, dict[str, int]]) -> pd.DataFrame:
    return pd.DataFrame([{
        "Run": run_link(r["run_id"]).href,
        "Definition": f"{r['definition_id']} v{r['definition_version']}",
        "Trigger": f"{r['trigger_kind']} · {r['trigger_source']}",
        "Status": f"{STATUS_MARKS.get(r['status'], '')} {r['status']}",
        "Subjects": r["subjects_matched"],
        "Actions": r["actions_invoked"],
        "Outcomes": outcome_breakdown(outcomes.get(r["run_id"], {})),
        "Started": r["started_at"],
        "Completed": r["completed_at"],
        "Duration": fmt_duration(duration_seconds(r["started_at"], r["completed_at"])),
    } for r in rows], columns=["Run", "Definition", "Trigger", "Status", "Subjects", "Actions", "Outcomes",
                               "Started", "Completed", "Duration"])


def items_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    out = []
    for r in rows:
        rec = record_link(r["record_ref"]) if r["record_ref"] else None
        out.append({
            "Item": item_link(r["item_id"]).href,
            "Subject": subject_link(r["subject_kind"], r["subject_id"]).href,
            "Subject name": r["subject_label"],
            "Action": r["action"],
            "Outcome": r["outcome"],
            "Record": rec.href if rec else None,
            "Reason or cause": r["failure_cause"] or r["skip_reason"] or "",
            "Class": r["failure_class"] or "",
            "Attempts": r["attempts"],
        })
    return pd.DataFrame(out, columns=["Item", "Subject", "Subject name", "Action", "Outcome", "Record",
                                      "Reason or cause", "Class", "Attempts"])


def highlight_attention(row: pd.Series) -> list[str]:
    """Runs that need a look stand out (a mark in the text too, so colour is not the only signal)."""
    status = str(row.get("Status", "")).split(" ", 1)[-1]
    if status == "failed":
        return ["background-color: #fdecea"] * len(row)
    if status == "completed-with-failures":
        return ["background-color: #fff4e5"] * len(row)
    return [""] * len(row)
