"""The analytics charts, built once for the page, the exports and the brief.

Colours come from ``reporting.palette`` (one colour per status and outcome everywhere). Each builder takes
the ``Analytics`` frames and returns a Plotly figure; ``CHARTS`` names them for exports and the CLI.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Callable

import plotly.graph_objects as go
import polars as pl

from core.states import (
    APPROVAL_CANCELLED,
    APPROVAL_OPEN,
    APPROVED,
    AWAITING_APPROVAL,
    CANCELLED,
    DETERMINISTIC,
    DISMISSED,
    ITEM_FAILED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    TRANSIENT,
    UNKNOWN_CLASS,
)
from reporting.analytics import OUTCOME_COLUMNS, Analytics, bucket_labels
from reporting.chart_layout import fit_layout, name_ticks, wrap_label
from reporting.palette import OUTCOME_COLORS, STATUS_COLORS
from reporting.provenance import Provenance

FONT = dict(family="DejaVu Sans, Arial, sans-serif", size=12, color="#1f2933")
DECISION_COLORS = {APPROVED: OUTCOME_COLORS[SUCCEEDED], DISMISSED: OUTCOME_COLORS[SKIPPED],
                   APPROVAL_OPEN: OUTCOME_COLORS[AWAITING_APPROVAL], APPROVAL_CANCELLED: STATUS_COLORS[CANCELLED]}
CLASS_COLORS = {TRANSIENT: "#d9822b", DETERMINISTIC: OUTCOME_COLORS[ITEM_FAILED], UNKNOWN_CLASS: "#9aa5b1"}
# One steady colour per definition (by its position in the sorted ids) for charts split by definition.
DEFINITION_PALETTE = ["#2f6fde", "#d9822b", "#2e8540", "#8e44ad", "#1f8a9e", "#b7472a", "#5c6ac4", "#9c6b30"]
NAME_PX = 165  # an automation's name on an axis: two lines of about 23 characters, the rest shortened
CAUSE_PX = 330  # a failure cause: two lines of about 48 characters (its first clause, as before)


def _layout(fig: go.Figure, title: str, height: int = 380, **kw: object) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.01, xanchor="left", font=dict(size=15)), font=FONT,
                      height=height, margin=dict(l=10, r=10, t=50, b=10), plot_bgcolor="white",
                      paper_bgcolor="white", legend=dict(orientation="h", y=-0.18, x=0), **kw)
    fig.update_xaxes(showgrid=False, linecolor="#cbd2d9")
    fig.update_yaxes(gridcolor="#eef0f3", zeroline=False)
    return fig


def _largest(counts: pl.Series) -> int:
    """The largest of some counts; 0 when there are none."""
    top = counts.max() if counts.len() else None
    return int(top) if isinstance(top, (int, float)) else 0


def _counts_axis(fig: go.Figure, axis: str, largest: int) -> None:
    """Counts are whole: small ranges get a tick per unit, never "0.5 approvals"."""
    update = fig.update_xaxes if axis == "x" else fig.update_yaxes
    update(rangemode="tozero", tickformat=",d", **({"dtick": 1} if largest <= 8 else {}))


def _empty(fig: go.Figure, text: str) -> go.Figure:
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=13, color="#616e7c"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def outcome_trend(a: Analytics) -> go.Figure:
    """Items per week by outcome, stacked: a change in the mix shows as a change in colour.

    The time axis is the period itself, first day to last: a week that straddles the period's start or end
    is drawn over its days inside the period only (its bar is narrower), never past the axis's ends."""
    fig = go.Figure()
    w = a.weekly_outcomes
    start, end = a.period.start, a.period.end
    for outcome in [*OUTCOME_COLUMNS, *sorted(set(w["outcome"].to_list()) - set(OUTCOME_COLUMNS))]:
        part = w.filter(pl.col("outcome") == outcome)
        if part.height:
            weeks = part["week"].to_list()
            spans = [week_span(week, start, end) for week in weeks]
            fig.add_bar(x=weeks, y=part["items"].to_list(), name=outcome, offset=[o for o, _ in spans],
                        width=[wd for _, wd in spans], marker_color=OUTCOME_COLORS.get(outcome, "#9aa5b1"),
                        customdata=[outcome] * part.height,
                        hovertemplate="week of %{x|%Y-%m-%d}<br>%{y:,} items " + outcome + "<extra></extra>")
    _layout(fig, "Item outcomes by week (runs triggered that week)", barmode="stack")
    ticks = period_ticks(start, end)
    fig.update_xaxes(type="date", range=[start, end], tickmode="array", tickvals=ticks,
                     ticktext=[f"{t:%d %b}" for t in ticks], title=None)
    fig.update_yaxes(title="items")
    _counts_axis(fig, "y", _largest(w.group_by("week").agg(pl.col("items").sum())["items"]))
    return fig if w.height else _empty(fig, "No items in this period")


_DAY_MS = 86_400_000
_BAR_GAP_DAYS = 0.8  # white between two weeks' bars


def week_span(week: dt.datetime, start: dt.datetime, end: dt.datetime) -> tuple[float, float]:
    """(offset from the week's Monday, width), in ms, of the week's bar: its days inside the period."""
    lo, hi = max(week, start), min(week + dt.timedelta(days=7), end)
    days = max((hi - lo).total_seconds() / 86_400 - _BAR_GAP_DAYS, 0.2)
    offset = (lo - week).total_seconds() / 86_400 + _BAR_GAP_DAYS / 2
    return offset * _DAY_MS, days * _DAY_MS


def period_ticks(start: dt.datetime, end: dt.datetime, most: int = 8) -> list[dt.datetime]:
    """The first and the last day, and Mondays between them (every n-th, so that at most ``most`` print);
    a Monday closer than 8 days to either end is left out, so no two labels crowd each other."""
    first, last = start, end - dt.timedelta(days=1)
    mondays = []
    day = first + dt.timedelta(days=(7 - first.weekday()) % 7)
    while day <= last:
        if (day - first).days >= 8 and (last - day).days >= 8:
            mondays.append(day)
        day += dt.timedelta(days=7)
    step = max(1, math.ceil(len(mondays) / max(most - 2, 1)))
    return sorted({first, *mondays[::step], last})


def outcomes_by_definition(a: Analytics) -> go.Figure:
    """Each automation's items by outcome, stacked horizontally."""
    d = a.per_definition.sort("definition_id", descending=True)
    fig = go.Figure()
    for outcome in OUTCOME_COLUMNS:
        if int(d[outcome].sum()):
            fig.add_bar(y=d["definition_id"].to_list(), x=d[outcome].to_list(), name=outcome, orientation="h",
                        marker_color=OUTCOME_COLORS[outcome],
                        hovertemplate="%{y}<br>%{x:,} items " + outcome + "<extra></extra>")
    _layout(fig, "Item outcomes by automation", height=120 + 42 * max(d.height, 1), barmode="stack")
    fig.update_xaxes(title="items")
    name_ticks(fig, "y", d["definition_id"].to_list(), NAME_PX)
    _counts_axis(fig, "x", _largest(d["items"]))
    return fig if int(d["items"].sum()) else _empty(fig, "No items in this period")


def firing(a: Analytics) -> go.Figure:
    """Expected against actual runs per automation; a flagged automation is marked in its label."""
    frame = a.firing_frame()
    labels = [f"⚠ {r['definition_id']}" if r["difference"] else r["definition_id"]
              for r in frame.iter_rows(named=True)]
    fig = go.Figure()
    fig.add_bar(y=labels, x=frame["expected"].to_list(), name="expected", orientation="h", marker_color="#cbd2d9",
                hovertemplate="%{y}<br>expected %{x:,}<extra></extra>")
    fig.add_bar(y=labels, x=frame["actual"].to_list(), name="actual runs", orientation="h",
                marker_color=STATUS_COLORS[RUNNING], hovertemplate="%{y}<br>actual %{x:,}<extra></extra>")
    _layout(fig, "Expected against actual firing (⚠ = mismatch)", height=130 + 46 * max(frame.height, 1),
            barmode="group")
    fig.update_yaxes(autorange="reversed")
    name_ticks(fig, "y", labels, NAME_PX)
    fig.update_xaxes(title="runs")
    _counts_axis(fig, "x", max([*frame["expected"].to_list(), *frame["actual"].to_list(), 0]))
    return fig if frame.height else _empty(fig, "No automations in scope")


def failure_causes(a: Analytics, top: int = 10) -> go.Figure:
    """The most frequent failure causes (failed attempts, recovered or not), coloured by class."""
    c = a.failure_causes.head(top).reverse()
    # Plotly reads <a href>, <b> and <br> in labels as markup: wrap_label escapes each line of a cause after
    # cutting it, so a cause's own tags print as the characters they are; only our <br> and <i> format.
    labels = [f"{wrap_label(r['failure_cause'] or '', CAUSE_PX)}<br><i>{html.escape(r['definition_id'])}</i>"
              for r in c.iter_rows(named=True)]
    fig = go.Figure()
    for cls in (TRANSIENT, DETERMINISTIC, UNKNOWN_CLASS):
        idx = [i for i, r in enumerate(c.iter_rows(named=True)) if r["failure_class"] == cls]
        if idx:
            fig.add_bar(y=[labels[i] for i in idx], x=[c["attempts"][i] for i in idx], orientation="h",
                        name=cls, marker_color=CLASS_COLORS[cls],
                        customdata=[[c["recovered"][i], c["still_failed"][i]] for i in idx],
                        hovertemplate="%{y}<br>%{x:,} failed attempts · %{customdata[0]:,} items recovered · "
                                      "%{customdata[1]:,} still failed<extra></extra>")
    _layout(fig, f"Top failure causes (failed attempts, top {top})", height=150 + 56 * max(c.height, 1))
    fig.update_xaxes(title="failed attempts")
    _counts_axis(fig, "x", _largest(c["attempts"]))
    return fig if c.height else _empty(fig, "No failed attempts in this period")


def completion_distribution(a: Analytics) -> go.Figure:
    """Runs by time from trigger to completion, one colour per automation."""
    b = a.completion_buckets
    fig = go.Figure()
    ids = sorted(set(b["definition_id"].to_list()))
    for i, d_id in enumerate(ids):
        part = b.filter(pl.col("definition_id") == d_id)
        fig.add_bar(x=part["bucket"].to_list(), y=part["runs"].to_list(), name=d_id,
                    marker_color=DEFINITION_PALETTE[i % len(DEFINITION_PALETTE)],
                    hovertemplate=d_id + "<br>%{x}: %{y:,} runs<extra></extra>")
    _layout(fig, "Time from trigger to completion (closed runs)", barmode="stack")
    fig.update_xaxes(categoryorder="array", categoryarray=bucket_labels(), title=None)
    fig.update_yaxes(title="runs")
    _counts_axis(fig, "y", _largest(b.group_by("bucket").agg(pl.col("runs").sum())["runs"]))
    return fig if b.height else _empty(fig, "No closed runs in this period")


def approvals(a: Analytics) -> go.Figure:
    """Approvals per automation by decision; hover shows how long they waited."""
    ap = a.approvals
    fig = go.Figure()
    for decision in (APPROVED, DISMISSED, APPROVAL_OPEN, APPROVAL_CANCELLED):
        part = ap.filter(pl.col("decision") == decision)
        if part.height:
            waits = [f"median wait {_hours(m)}, longest {_hours(x)}"
                     for m, x in zip(part["median_wait_seconds"], part["max_wait_seconds"], strict=True)]
            fig.add_bar(x=part["definition_id"].to_list(), y=part["approvals"].to_list(), name=decision,
                        marker_color=DECISION_COLORS[decision], customdata=waits,
                        hovertemplate="%{x}<br>%{y:,} " + decision + "<br>%{customdata}<extra></extra>")
    _layout(fig, "Approvals by decision (open = still awaiting)", barmode="stack")
    fig.update_yaxes(title="items")
    if ap.height:
        name_ticks(fig, "x", sorted(set(ap["definition_id"].to_list())), NAME_PX)
    _counts_axis(fig, "y", _largest(ap.group_by("definition_id").agg(pl.col("approvals").sum())["approvals"]))
    return fig if ap.height else _empty(fig, "No approvals in this period")


def _hours(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds / 3600:.1f} h" if seconds < 3 * 86400 else f"{seconds / 86400:.1f} days"


CHARTS: dict[str, tuple[str, Callable[[Analytics], go.Figure]]] = {
    "outcome-trend": ("Item outcomes by week", outcome_trend),
    "outcomes-by-automation": ("Item outcomes by automation", outcomes_by_definition),
    "firing": ("Expected against actual firing", firing),
    "failure-causes": ("Top failure causes", failure_causes),
    "completion-time": ("Time from trigger to completion", completion_distribution),
    "approvals": ("Approvals by decision", approvals),
}


def with_provenance(fig: go.Figure, provenance: Provenance, width: int) -> go.Figure:
    """The chart as a file of ``width`` px: laid out to its labels, the provenance printed under it, so a
    pasted image still says where it came from (the legend sits right of the plot, clear of that line)."""
    return fit_layout(fig, width, footer=provenance.one_line())
