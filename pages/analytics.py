"""Quarterly analytics: what the automations did in a period, per automation and over time, whether each
fired as often as expected, and the audit committee brief. Every figure drills down to the Runs page."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import replace

import polars as pl
import streamlit as st

from core.links import RunsView, failed_items_link, parse_analytics_view, query_params_dict, runs_link
from core.markup import md_escape
from core.periods import AnalyticsPeriod, PeriodChoice, resolve_period
from core.states import AWAITING_APPROVAL, IDEMPOTENT_REPLAY, ITEM_FAILED, SKIPPED, SUCCEEDED
from reporting.analytics import OUTCOME_COLUMNS, Analytics
from reporting.integrity import failures_sentence
from store.views.analytics import read_run_time_range
from store.views.run_pages import read_definition_ids
from ui import analytics_charts
from ui.analytics_cache import analytics_view
from ui.brief_widgets import render_brief
from ui.export_widgets import chart_downloads, table_downloads
from ui.period_picker import pick_period
from ui.runtime import current_engine
from ui.session import actor_or_stop
from ui.tables import show_table
from ui.text import fmt_duration

engine = current_engine()
actor = actor_or_stop()
today = engine.clock.now().date()
with engine.ws.read() as conn:
    known_definitions = read_definition_ids(conn)
    first_run, _ = read_run_time_range(conn)
view, problems = parse_analytics_view(query_params_dict(st.query_params), known_definitions)

st.title("Quarterly analytics")
st.caption("Governance → Automation → Analytics: runs, items and outcomes per automation for a period, "
           "expected against actual firing, and the audit committee brief. Periods are on trigger time (UTC).")
for p in problems:
    st.warning(p)

# --- the period and definitions (widgets start from the URL; a change rewrites it) -----------------------
earliest = first_run.date() if first_run else today
c1, c2 = st.columns([2, 4])
dates_row = st.container()
period = pick_period(c1, view.period, today, earliest, dates_place=dates_row)
definitions = c2.multiselect("Automations", known_definitions, default=list(view.definitions),
                             placeholder="All automations")
chosen = replace(view, period=period, definitions=tuple(definitions))
if chosen != view:
    st.query_params.from_dict(chosen.to_params())
    st.rerun()

resolved = resolve_period(view.period, today, earliest)
first_day, last_day = resolved.first_day or earliest, resolved.last_day or today
label = resolved.label
analytics_period = AnalyticsPeriod(
    dt.datetime.combine(first_day, dt.time(), dt.UTC),
    dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time(), dt.UTC), label, view.definitions)
cached = analytics_view(engine.ws, analytics_period)  # once per workspace change and minute (ui.analytics_cache)
a: Analytics = cached.analytics
figures = cached.figures
totals = a.totals
st.subheader(label)


def runs_view(definition: str | None = None, outcome: str | None = None, week: dt.date | None = None) -> RunsView:
    """The Runs page filtered to this period (the same choice: a quarter stays a quarter) or one week of it,
    one automation and one outcome."""
    if week:
        lo, hi = max(week, first_day), min(week + dt.timedelta(days=6), last_day)
        period = PeriodChoice("custom", start=lo, end=hi)
    elif view.period.kind == "all":
        period = PeriodChoice("all")
    else:
        period = view.period if view.period.kind != "custom" else PeriodChoice("custom", start=first_day,
                                                                               end=last_day)
    defs = (definition,) if definition else view.definitions
    return RunsView(definitions=defs, period=period, outcome=outcome)


# --- headline -----------------------------------------------------------------------------------------------
flagged = [c for c in a.firing if c.flagged]
m = st.columns(7, gap="xsmall")  # seven metrics: a wider gap cut "Needing attention" at 1440 px
m[0].metric("Runs", f"{totals['runs']:,}")
m[1].metric("Items", f"{totals['items']:,}")
m[2].metric("Actions invoked", f"{totals['actions_invoked']:,}",
            help="Items whose action was handed to its actioner at least once (docs/schema.md).")
m[3].metric("Succeeded", f"{totals[SUCCEEDED]:,}")
m[4].metric("Failed (now)", f"{totals[ITEM_FAILED]:,}")
m[5].metric("Skipped", f"{totals[SKIPPED]:,}")
m[6].metric("Needing attention", f"{totals['attention_runs']:,}",
            help="completed-with-failures or failed")
link = runs_link(runs_view())
st.page_link(link.page, query_params=link.params, label=f"Open these {totals['runs']:,} runs in Runs",
             icon=":material/list_alt:")
if a.failures.failed_items:  # how the period's failures stand; open ones need a retry or a disposition
    fl = failed_items_link(view.definitions[0] if len(view.definitions) == 1 else None, view.period)
    (st.success if a.failures.accounted else st.warning)(
        f"{md_escape(failures_sentence(a.failures))} [Failed items]({fl.href})", icon=":material/fact_check:")
if totals["runs"] == 0:
    st.info("No runs were triggered in this period. Choose another quarter, or widen the dates; a new "
            "workspace gets the demo quarter with `make run`.")

# --- per automation -----------------------------------------------------------------------------------------
st.subheader("Per automation")
# The automation's name is the link to its runs in the period: one column, not a name and an "open runs"
# beside it — with thirteen columns, every pixel is a name's.
per = a.per_definition.with_columns(
    pl.Series("Automation", [runs_link(runs_view(d)).href for d in a.per_definition["definition_id"]]))
narrow = {"runs": "Runs", "subjects_matched": "Subjects", "items": "Items", "actions_invoked": "Actions",
          SUCCEEDED: "✓ succeeded", ITEM_FAILED: "✕ failed", SKIPPED: "skipped", AWAITING_APPROVAL: "awaiting",
          IDEMPOTENT_REPLAY: "replayed", "attention_runs": "attention"}
show_table(per.select("Automation", "trigger_kind", "runs", "subjects_matched", "items",
                      "actions_invoked", *OUTCOME_COLUMNS, "attention_runs"), column_config={
    "Automation": st.column_config.LinkColumn("Automation", display_text=r"definition=([^&]+)",
                                              help="Opens this automation's runs in the period"),
    "trigger_kind": st.column_config.TextColumn("Trigger"),
    **{c: st.column_config.NumberColumn(label, help="runs completed-with-failures or failed"
                                        if c == "attention_runs" else None)
       for c, label in narrow.items()}})
table_downloads(engine.ws, actor, a, "per-automation")

# --- expected against actual firing --------------------------------------------------------------------------
st.subheader("Expected against actual firing")
if flagged:
    st.warning("Fired differently than expected: " + "; ".join(
        f"{c.definition_id} — {c.actual} of {c.expected} expected ({c.verdict})" for c in flagged))
else:
    st.success("Every automation fired as expected in this period.")
st.caption("Schedules: the fires their cron implies over the part of the period that has passed, version by "
           "version; events and signals: the trigger events received. Run-now runs are not counted.")
firing = a.firing_frame()
show_table(firing.with_columns(pl.when(pl.col("difference") != 0).then(pl.lit("⚠ ") + pl.col("verdict"))
                                 .otherwise(pl.lit("✓ ") + pl.col("verdict")).alias("verdict")), column_config={
                 "definition_id": "Automation", "trigger": "Trigger", "expected": "Expected",
                 "actual": "Actual runs", "difference": "Difference", "verdict": "Verdict",
                 "explanation": st.column_config.TextColumn("What the record shows", width="large")})
table_downloads(engine.ws, actor, a, "firing")


# --- charts ----------------------------------------------------------------------------------------------------
# The charts a reader sees first are Vega-Lite (ui/analytics_charts.py: Plotly's bundle alone kept this page over
# 2 s in the browser); exports and the brief draw the same figures with Plotly.
def drill_from(event: object, axis: str) -> None:
    """A clicked bar opens the Runs page with the bar's week or automation and outcome."""
    pick = analytics_charts.picked(event)
    if pick is None:
        return
    outcome = pick.get("outcome") if pick.get("outcome") in OUTCOME_COLUMNS else None
    if axis == "week":
        target = runs_link(runs_view(outcome=outcome, week=dt.date.fromisoformat(str(pick["week"])[:10])))
    else:
        target = runs_link(runs_view(definition=str(pick["definition_id"]), outcome=outcome))
    st.switch_page(target.page, query_params=target.params)


def draw(name: str, empty: str, key: str, axis: str | None = None) -> None:
    spec = cached.page_charts[name]
    if spec is None:
        st.info(empty)
    elif axis is None:
        st.vega_lite_chart(copy.deepcopy(spec), key=key)
    else:
        drill_from(st.vega_lite_chart(copy.deepcopy(spec), on_select="rerun", selection_mode=analytics_charts.PICK,
                                      key=key), axis)


# Streamlit offers "Download as PNG" on every Vega-Lite chart: a file with no permission check, no provenance and
# no audit entry. A chart leaves through "Export chart" (the audited path) or not at all.
st.html(f"<style>{analytics_charts.NO_TOOLBAR_DOWNLOAD}</style>")
left, right = st.columns(2)
with left:
    draw("outcome-trend", "No items in this period", "trend", "week")
    chart_downloads(engine.ws, actor, a, "outcome-trend")
with right:
    draw("outcomes-by-automation", "No items in this period", "by-definition", "definition")
    chart_downloads(engine.ws, actor, a, "outcomes-by-automation")
st.caption("Click a bar to open its runs: a week's bar opens that week, an automation's bar that automation, "
           "each with the clicked outcome.")

with st.container(border=True):
    st.markdown("**Drill down**")
    d1, d2, d3 = st.columns(3)
    pick_def = d1.selectbox("Automation", ["(all)", *a.per_definition["definition_id"].to_list()])
    pick_outcome = d2.selectbox("Outcome", ["(any)", *OUTCOME_COLUMNS])
    weeks = sorted({w.date() for w in a.weekly_outcomes["week"].to_list()})
    pick_week = d3.selectbox("Week", ["(whole period)", *weeks],
                             format_func=lambda w: w if isinstance(w, str) else f"week of {w:%Y-%m-%d}")
    target = runs_link(runs_view(definition=None if pick_def == "(all)" else pick_def,
                                 outcome=None if pick_outcome == "(any)" else pick_outcome,
                                 week=None if isinstance(pick_week, str) else pick_week))
    st.page_link(target.page, query_params=target.params, label="Open these runs", icon=":material/list_alt:")

# The four other charts, one at a time (each also in the brief and as a file): drawing all six on arrival was
# most of this page's time in the browser (bench/RESULTS.md "Pages in Chromium"). Their tables are all shown.
MORE_CHARTS = {"failure-causes": "Top failure causes", "firing": "Expected against actual firing",
               "completion-time": "Trigger to completion", "approvals": "Approvals by decision"}
st.markdown("**More charts** — one at a time; each is also in the brief and exports as a file")
more = st.segmented_control("More charts", list(MORE_CHARTS), format_func=MORE_CHARTS.__getitem__,
                            default="failure-causes", key="more-chart", label_visibility="collapsed")
if more == "failure-causes":
    draw("failure-causes", "No failed attempts in this period", "more-failure-causes")
elif more:  # drawn by Plotly, as exported: only when asked for (see the note above)
    st.plotly_chart(figures[more], config={"displayModeBar": False}, key=f"more-{more}")
if more:
    chart_downloads(engine.ws, actor, a, more)

with st.expander("Failure causes as a table"):
    show_table(a.failure_causes, column_config={
        "definition_id": "Automation", "failure_cause": st.column_config.TextColumn("Cause", width="large"),
        "failure_class": "Class", "attempts": "Failed attempts", "items": "Items", "runs": "Runs",
        "still_failed": "Still failed", "recovered": "Recovered"})
    table_downloads(engine.ws, actor, a, "failure-causes")
with st.expander("Completion times per automation"):
    show_table(a.completion_times.with_columns(
        *(pl.col(c).map_elements(fmt_duration, return_dtype=pl.String)
          for c in ("p50_seconds", "p90_seconds", "max_seconds"))), column_config={
            "definition_id": "Automation", "closed_runs": "Closed runs", "p50_seconds": "Median",
            "p90_seconds": "90th percentile", "max_seconds": "Longest",
            "approximate": st.column_config.CheckboxColumn(
                "Within 1%", help="Over many runs the times come from a duration histogram: each within 1% of "
                                  "the exact figure.")})
    table_downloads(engine.ws, actor, a, "completion-times")

st.subheader("Approvals")
open_now = a.approvals.filter(pl.col("decision") == "open")
waiting = int(open_now["approvals"].sum()) if open_now.height else 0
st.metric("Items awaiting approval (from this period's runs)", f"{waiting:,}")
show_table(a.approvals.with_columns(
    *(pl.col(c).map_elements(fmt_duration, return_dtype=pl.String)
      for c in ("median_wait_seconds", "max_wait_seconds"))), column_config={
        "definition_id": "Automation", "decision": "Decision", "approvals": "Items",
        "median_wait_seconds": "Median wait", "max_wait_seconds": "Longest wait"})
table_downloads(engine.ws, actor, a, "approvals")

# --- the brief -------------------------------------------------------------------------------------------------
st.divider()
render_brief(engine.ws, actor, analytics_period)
