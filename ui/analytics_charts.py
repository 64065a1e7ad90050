"""The Quarterly analytics page's charts on arrival, as Vega-Lite (Altair, which Streamlit ships with).

The page drew them with Plotly, as the exports and the brief still do (``reporting.charts``). In Chromium the
page then waited for Plotly's 4.7 MB bundle to be evaluated on the main thread before anything under the title
showed: that alone kept the page over its 2 s (bench/RESULTS.md "Pages in Chromium"). Streamlit's Vega-Lite
bundle is a sixth of it, and measured in the same browser three Vega-Lite charts cost ~0.1 s over none where
three Plotly charts cost ~0.4 s. So the charts a reader sees first, and clicks to drill from, are drawn here
from the same ``Analytics`` frames and colours; a chart exported or printed in the brief is still Plotly's.

Stacks are computed here (each bar's start and end), not left to Vega-Lite, so that a week's bar covers its
days inside the period exactly as the exported chart's does; times are UTC whatever the browser's zone. Each
bar carries a sentence (the ``description`` channel: its ARIA label) saying what it counts, since the stack's
ends it is drawn from are not what a screen reader should read out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import altair as alt
import polars as pl

from reporting.analytics import OUTCOME_COLUMNS, Analytics
from reporting.charts import CLASS_COLORS, NAME_PX, period_ticks, week_span
from reporting.palette import OUTCOME_COLORS

CAUSE_LABEL_PX = 330  # a failure cause's label on the axis; the whole of it is in the tooltip
PICK = "pick"  # the selection a click makes: the clicked bar's fields
# Streamlit's toolbar on a Vega-Lite chart offers its picture as a PNG and its spec (data included) on the
# clipboard: files with no permission check, no provenance and no audit entry. Not offered (the page's CSS).
NO_TOOLBAR_DOWNLOAD = ('[data-testid="stElementToolbar"] button[aria-label="Download as PNG"], '
                       '[data-testid="stElementToolbar"] button[aria-label="Copy Vega-Lite spec"] '
                       '{display: none !important;}')


def _ms(t: dt.datetime) -> float:
    return t.timestamp() * 1000.0


def _outcome_scale(outcomes: list[str]) -> alt.Scale:
    return alt.Scale(domain=outcomes, range=[OUTCOME_COLORS.get(o, "#9aa5b1") for o in outcomes])


def _outcomes_present(names: list[str]) -> list[str]:
    return [*[o for o in OUTCOME_COLUMNS if o in names], *sorted(set(names) - set(OUTCOME_COLUMNS))]


def outcome_trend(a: Analytics) -> alt.Chart | None:
    """Items per week by outcome, stacked; a week straddling the period's start or end covers only its days
    inside it. None when the period has no items."""
    w = a.weekly_outcomes
    if not w.height:
        return None
    start, end = a.period.start, a.period.end
    outcomes = _outcomes_present(w["outcome"].unique().to_list())
    rows, stacked = [], dict.fromkeys(w["week"].to_list(), 0)
    for outcome in outcomes:
        for r in w.filter(pl.col("outcome") == outcome).iter_rows(named=True):
            offset, width = week_span(r["week"], start, end)
            lo = _ms(r["week"]) + offset
            below = stacked[r["week"]]
            stacked[r["week"]] = below + int(r["items"])
            rows.append({"from": lo, "to": lo + width, "week": f"{r['week']:%Y-%m-%d}", "outcome": outcome,
                         "items": int(r["items"]), "y0": below, "y1": below + int(r["items"]),
                         "description": f"week of {r['week']:%Y-%m-%d}: {int(r['items']):,} items {outcome}"})
    pick = alt.selection_point(name=PICK, fields=["week", "outcome"])
    return (alt.Chart(alt.Data(values=rows), title="Item outcomes by week (runs triggered that week)")
            .mark_bar()
            .encode(x=alt.X("from:Q", title=None, scale=alt.Scale(domain=[_ms(start), _ms(end)], nice=False),
                            axis=alt.Axis(values=[_ms(t) for t in period_ticks(start, end)], grid=False,
                                          labelExpr="utcFormat(datum.value, '%d %b')", labelAngle=0)),
                    x2="to:Q",
                    y=alt.Y("y0:Q", title="items", axis=alt.Axis(format=",d", tickMinStep=1, tickCount=6)), y2="y1:Q",
                    color=alt.Color("outcome:N", scale=_outcome_scale(outcomes),
                                    legend=alt.Legend(orient="bottom", title=None)),
                    opacity=alt.condition(pick, alt.value(1.0), alt.value(0.55)),
                    description="description:N",
                    tooltip=[alt.Tooltip("week:N", title="week of"), alt.Tooltip("outcome:N", title="outcome"),
                             alt.Tooltip("items:Q", title="items", format=",")])
            .add_params(pick).properties(height=300))


def outcomes_by_automation(a: Analytics) -> alt.Chart | None:
    """Each automation's items by outcome, stacked horizontally; None when the period has no items."""
    d = a.per_definition.sort("definition_id")
    outcomes = [o for o in OUTCOME_COLUMNS if int(d[o].sum())]
    if not outcomes:
        return None
    rows = []
    for r in d.iter_rows(named=True):
        left = 0
        for outcome in outcomes:
            n = int(r[outcome])
            if n:
                rows.append({"definition_id": r["definition_id"], "outcome": outcome, "items": n,
                             "x0": left, "x1": left + n,
                             "description": f"{r['definition_id']}: {n:,} items {outcome}"})
                left += n
    pick = alt.selection_point(name=PICK, fields=["definition_id", "outcome"])
    return (alt.Chart(alt.Data(values=rows), title="Item outcomes by automation")
            .mark_bar()
            .encode(y=alt.Y("definition_id:N", title=None, sort=d["definition_id"].to_list(),
                            axis=alt.Axis(labelLimit=NAME_PX)),
                    x=alt.X("x0:Q", title="items", axis=alt.Axis(format=",d", tickMinStep=1, tickCount=8)), x2="x1:Q",
                    color=alt.Color("outcome:N", scale=_outcome_scale(outcomes),
                                    legend=alt.Legend(orient="bottom", title=None)),
                    opacity=alt.condition(pick, alt.value(1.0), alt.value(0.55)),
                    description="description:N",
                    tooltip=[alt.Tooltip("definition_id:N", title="automation"),
                             alt.Tooltip("outcome:N", title="outcome"),
                             alt.Tooltip("items:Q", title="items", format=",")])
            .add_params(pick).properties(height=alt.Step(30)))


def failure_causes(a: Analytics, top: int = 10) -> alt.Chart | None:
    """The most frequent failure causes (failed attempts, recovered or not), coloured by class; None when
    nothing failed."""
    c = a.failure_causes.head(top)
    if not c.height:
        return None
    rows: list[dict[str, Any]] = []
    for r in c.iter_rows(named=True):
        label = f"{r['definition_id']} · {r['failure_cause'] or '(no cause recorded)'}"
        if any(row["label"] == label for row in rows):  # one cause of one automation in two classes
            label += f" ({r['failure_class']})"
        rows.append({"label": label, "cause": r["failure_cause"], "definition_id": r["definition_id"],
                     "class": r["failure_class"], "attempts": int(r["attempts"]),
                     "recovered": int(r["recovered"]), "still_failed": int(r["still_failed"]),
                     "description": f"{label}: {int(r['attempts']):,} failed attempts ({r['failure_class']})"})
    classes = [k for k in CLASS_COLORS if any(row["class"] == k for row in rows)]
    return (alt.Chart(alt.Data(values=rows), title=f"Top failure causes (failed attempts, top {top})")
            .mark_bar()
            .encode(y=alt.Y("label:N", title=None, sort=[row["label"] for row in rows],
                            axis=alt.Axis(labelLimit=CAUSE_LABEL_PX)),
                    x=alt.X("attempts:Q", title="failed attempts", axis=alt.Axis(format=",d", tickMinStep=1,
                                                                                 tickCount=8)),
                    color=alt.Color("class:N", scale=alt.Scale(domain=classes,
                                                               range=[CLASS_COLORS[k] for k in classes]),
                                    legend=alt.Legend(orient="bottom", title=None)),
                    description="description:N",
                    tooltip=[alt.Tooltip("cause:N", title="cause"), alt.Tooltip("definition_id:N", title="automation"),
                             alt.Tooltip("attempts:Q", title="failed attempts", format=","),
                             alt.Tooltip("recovered:Q", title="items recovered", format=","),
                             alt.Tooltip("still_failed:Q", title="still failed", format=",")])
            .properties(height=alt.Step(34)))


# The charts drawn by this module, by the name ``reporting.charts.CHARTS`` gives their Plotly versions.
PAGE_CHARTS: dict[str, Callable[[Analytics], alt.Chart | None]] = {
    "outcome-trend": outcome_trend, "outcomes-by-automation": outcomes_by_automation,
    "failure-causes": failure_causes,
}


def picked(event: object) -> dict[str, Any] | None:
    """The bar a click picked (its fields), from ``st.altair_chart``'s selection event; None if none."""
    selection = getattr(event, "selection", None)
    points = (selection.get(PICK) if isinstance(selection, dict) else getattr(selection, PICK, None)) or []
    return dict(points[0]) if points else None
