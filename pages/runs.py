"""Runs: every execution of every automation, filtered by definition, status and period, newest first.

The filters live in the URL, so a filtered view can be shared and reopened; a run opens from its row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import streamlit as st

from store.run_queries import BadCursor, count_outcomes_for_runs, count_runs_by_status, read_definition_ids, \
    read_runs_page
from ui.colors import STATUS_MARKS
from ui.links import RUN_SORTS, parse_runs_view, query_params_dict, run_link, runs_link
from ui.periods import PERIODS
from ui.run_views import KNOWN_OUTCOMES, KNOWN_STATUSES, highlight_attention, run_filter, run_sort, runs_frame
from ui.runtime import current_engine
from ui.session import actor_or_stop
from ui.text import md_escape

engine = current_engine()
actor_or_stop()
with engine.ws.read() as conn:
    known_definitions = read_definition_ids(conn)
params = query_params_dict(st.query_params)
view, problems = parse_runs_view(params, known_definitions, KNOWN_STATUSES, KNOWN_OUTCOMES)

st.title("Runs")
st.caption("Governance → Automation → Runs: every execution of a governed automation, with when it fired "
           "and why, what it matched and what each action did.")
for p in problems:
    st.warning(p)

# --- filters (widgets start from the URL; a change rewrites the URL) ---------------------------------
c1, c2, c3 = st.columns([3, 3, 2])
definitions = c1.multiselect("Definition", known_definitions, default=list(view.definitions),
                             placeholder="All definitions")
statuses = c2.multiselect("Status", KNOWN_STATUSES, default=list(view.statuses), placeholder="All statuses",
                          format_func=lambda s: f"{STATUS_MARKS.get(s, '')} {s}")
period = c3.selectbox("Period", list(PERIODS), index=list(PERIODS).index(view.period),
                      format_func=PERIODS.get)
c4, c5, c6, c7 = st.columns([2, 2, 2, 2])
start, end = view.start, view.end
if period == "custom":
    today = engine.clock.now().date()
    start = c4.date_input("From", value=view.start or today - dt.timedelta(days=30))
    end = c5.date_input("To (included)", value=view.end or today)
time_field = c6.radio("Period applies to", ["triggered", "completed"],
                      index=["triggered", "completed"].index(view.time_field), horizontal=True,
                      format_func=lambda f: "trigger time" if f == "triggered" else "completion time")
sort_labels = {"completed": "Completion time", "triggered": "Trigger time", "started": "Start time",
               "duration": "Duration", "definition": "Definition", "status": "Status",
               "subjects": "Subjects matched", "actions": "Actions invoked"}
sort = c7.selectbox("Sort by", RUN_SORTS, index=RUN_SORTS.index(view.sort), format_func=sort_labels.get)
descending = c7.toggle("Newest / largest first", value=view.descending)

chosen = replace(view, definitions=tuple(definitions), statuses=tuple(statuses), period=period,
                 start=start if period == "custom" else None, end=end if period == "custom" else None,
                 time_field=time_field, sort=sort, descending=descending)
if chosen != view:  # the URL is the view: rewrite it (dropping the page position) and show the new one
    st.query_params.from_dict(chosen.to_params())
    st.rerun()
if view.outcome:
    st.info(f"Showing runs with at least one item whose outcome is {view.outcome}.")
    if st.button("Show runs of every outcome"):
        st.query_params.from_dict(replace(view, outcome=None).to_params())
        st.rerun()

# --- counts and the page -----------------------------------------------------------------------------
f, period_words = run_filter(view, engine.clock.now().date())
after = (params.get("after") or [None])[-1]
with engine.ws.read() as conn:
    counts = count_runs_by_status(conn, f)
    try:
        rows, next_cursor = read_runs_page(conn, f, run_sort(view), after=after)
    except BadCursor as exc:
        st.warning(f"{md_escape(exc)}; showing the first page.")  # it quotes the link's text
        rows, next_cursor, after = *read_runs_page(conn, f, run_sort(view)), None
    outcomes = count_outcomes_for_runs(conn, [r["run_id"] for r in rows])

total = sum(counts.values())
cols = st.columns(1 + len(KNOWN_STATUSES))
cols[0].metric("Runs in view", f"{total:,}", help=f"Period: {period_words}")
for col, status in zip(cols[1:], KNOWN_STATUSES):
    col.metric(f"{STATUS_MARKS.get(status, '')} {status}", f"{counts.get(status, 0):,}")

if not rows:
    st.info("No runs match these filters. Widen the period or clear a filter; if the workspace is new, run "
            "`make run` to seed the demo quarter, or fire an automation from Automations.")
    st.stop()

frame = runs_frame(rows, outcomes)
event = st.dataframe(
    frame.style.apply(highlight_attention, axis=None), hide_index=True, width="stretch",
    on_select="rerun", selection_mode="single-row", key="runs-table",
    column_config={
        "Run": st.column_config.LinkColumn("Run", display_text=r"run\?id=(.*)", help="Open the run"),
        "Started": st.column_config.DatetimeColumn("Started (UTC)", format="YYYY-MM-DD HH:mm:ss"),
        "Completed": st.column_config.DatetimeColumn("Completed (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    })
st.caption(f"{len(rows)} runs on this page · ⚠ completed-with-failures and ✕ failed are highlighted · "
           "select a row (or click its run id) to open it.")
if event.selection.rows:
    chosen_run = rows[event.selection.rows[0]]["run_id"]
    link = run_link(chosen_run)
    st.switch_page(link.page, query_params=link.params)

b1, b2, _ = st.columns([1, 1, 6])
if after and b1.button("⏮ First page"):
    first = runs_link(view)
    st.query_params.from_dict(first.params)
    st.rerun()
if next_cursor and b2.button("Next page ▶"):
    st.query_params.from_dict(runs_link(view, after=next_cursor).params)
    st.rerun()
