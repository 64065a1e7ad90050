"""Shared shaping for the Runs, Run and Run item pages: rows for tables, breakdowns, engine clock ranges.

No SQL here (the store answers), no status logic (the engine decides); only how things read on screen.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from core.links import RunsView, item_link, record_link, run_link, subject_link
from core.periods import resolve_period
from core.states import (
    ATTENTION_STATUSES,
    AWAITING_APPROVAL,
    COMPLETED_WITH_FAILURES,
    FAILED,
    IDEMPOTENT_REPLAY,
    IN_FLIGHT,
    ITEM_FAILED,
    ITEM_OUTCOMES,
    ITEM_PENDING,
    RUN_STATUSES,
    SKIPPED,
    SUCCEEDED,
    TERMINAL_RUN_STATUSES,
)
from store.views.run_pages import FailedFirst, RunFilter, RunSort
from ui.colors import OUTCOME_COLORS, STATUS_MARKS

OUTCOME_MARKS = {SUCCEEDED: "✓", ITEM_FAILED: "✕", SKIPPED: "skipped", AWAITING_APPROVAL: "awaiting approval",
                 IDEMPOTENT_REPLAY: "replayed", ITEM_PENDING: "pending", IN_FLIGHT: "in flight"}
ATTENTION = set(ATTENTION_STATUSES)
KNOWN_STATUSES = RUN_STATUSES
KNOWN_OUTCOMES = (*ITEM_OUTCOMES, ITEM_PENDING, IN_FLIGHT)


def outcome_breakdown(counts: dict[str, int]) -> str:
    """``590 ✓ · 18 ✕ · 12 skipped``, in the spec's outcome order."""
    order = [o for o in KNOWN_OUTCOMES if counts.get(o)]
    return " · ".join(f"{counts[o]:,} {OUTCOME_MARKS[o]}" for o in order) or "no items"


def duration_seconds(started: dt.datetime | None, completed: dt.datetime | None) -> float | None:
    return (completed - started).total_seconds() if started and completed else None


def run_filter(view: RunsView, today: dt.date) -> tuple[RunFilter, str]:
    """The store filter for a view, and the period's words for the page."""
    period = resolve_period(view.period, today)
    return RunFilter(definitions=view.definitions, statuses=view.statuses, start=period.start, end=period.end,
                     time_field=view.time_field, outcome=view.outcome,
                     failed_attempts=view.failed_attempts), period.label


def run_sort(view: RunsView) -> RunSort:
    return RunSort(view.sort, view.descending)


def recovered_words(f: FailedFirst | None) -> str:
    """`` · ↻ 18 recovered``: items that failed and a later attempt recovered (still-failed ones are the ✕)."""
    return f" · ↻ {f.recovered:,} recovered" if f is not None and f.recovered else ""


def trigger_words(run: dict[str, Any]) -> str:
    """What fired the run, briefly: schedule, event, signal, or who ran it now."""
    if run["trigger_kind"] == "manual":
        return f"run now by {str(run['trigger_source']).removeprefix('member:')}"
    return str(run["trigger_kind"])


def run_time(value: dt.datetime | None, status: str) -> str:
    """To the minute (seconds are on the run's page); an open run says so instead of an empty cell."""
    if value is not None:
        return f"{value:%Y-%m-%d %H:%M}"
    return "— still open" if status not in TERMINAL_RUN_STATUSES else "—"


def runs_frame(rows: list[dict[str, Any]], outcomes: dict[str, dict[str, int]],
               failed_first: dict[str, FailedFirst] | None = None) -> pd.DataFrame:
    failed_first = failed_first or {}
    return pd.DataFrame([{
        "Run": run_link(r["run_id"]).href,
        "Definition": f"{r['definition_id']} v{r['definition_version']}",
        "Trigger": trigger_words(r),
        "Status": f"{STATUS_MARKS.get(r['status'], '')} {r['status']}",
        "Subjects": r["subjects_matched"],
        "Actions": r["actions_invoked"],
        "Outcomes": outcome_breakdown(outcomes.get(r["run_id"], {})) + recovered_words(failed_first.get(r["run_id"])),
        "Triggered": run_time(r["triggered_at"], r["status"]),
        "Completed": run_time(r["completed_at"], r["status"]),
    } for r in rows], columns=RUNS_COLUMNS)


RUNS_COLUMNS = ["Run", "Definition", "Trigger", "Status", "Subjects", "Actions", "Outcomes", "Triggered",
                "Completed"]


def breakdown_figure(breakdown: list[dict[str, Any]]) -> go.Figure:
    """A run's items per action by outcome, stacked horizontally, in the spec's outcome order.

    Built from graph objects: plotly express took ~24 ms a view (~1 ms this way), and the page of a
    running run redraws it every 2 s for every member watching."""
    bars = []
    for outcome in [*KNOWN_OUTCOMES, *sorted({b["outcome"] for b in breakdown} - set(KNOWN_OUTCOMES))]:
        rows = [b for b in breakdown if b["outcome"] == outcome]
        if rows:
            bars.append(go.Bar(x=[b["items"] for b in rows], y=[b["action"] for b in rows], name=outcome,
                               orientation="h", marker=dict(color=OUTCOME_COLORS.get(outcome, "#9aa5b1")),
                               hovertemplate="%{y}<br>%{x:,} items " + outcome + "<extra></extra>"))
    return go.Figure(data=bars, layout=dict(
        barmode="stack", height=120 + 40 * len({b["action"] for b in breakdown}), margin=dict(t=10, b=10),
        legend=dict(title=dict(text="Outcome")), xaxis=dict(title=dict(text="Items")),
        yaxis=dict(title=dict(text=None))))


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


ATTENTION_BACKGROUNDS = {FAILED: "background-color: #fdecea", COMPLETED_WITH_FAILURES: "background-color: #fff4e5"}


def highlight_attention(frame: pd.DataFrame) -> pd.DataFrame:
    """Runs that need a look stand out (a mark in the text too, so colour is not the only signal).

    For ``Styler.apply(axis=None)``: the whole table's styles at once. Row by row, pandas spent ~11 ms of
    a Runs page view (held interpreter time, which twenty members and a running engine share)."""
    status = frame["Status"].astype(str).str.split(" ", n=1).str[-1]
    css = status.map(ATTENTION_BACKGROUNDS).fillna("")
    return pd.DataFrame({c: css for c in frame.columns}, index=frame.index)


ESTIMATED_NOTE = " ≈: estimated from PostgreSQL's statistics (a view this large is not counted run by run)."


def count_figure(n: int, approximate: bool) -> str:
    """A count as the Runs page shows it; PostgreSQL's estimate of a status's runs in a very large view (over
    100,000: store.views.run_pages.count_runs_in_view) to three figures, marked ≈."""
    return f"≈ {float(f'{n:.3g}'):,.0f}" if approximate else f"{n:,}"
