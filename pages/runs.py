"""Runs: every execution of every automation, filtered by definition, status and period, newest first.

The filters live in the URL, so a filtered view can be shared and reopened; a run opens from its row.
"""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from core.links import RUN_SORTS, parse_runs_view, query_params_dict, run_link, runs_link
from core.markup import md_escape
from core.periods import last_param
from store.views.analytics import read_run_time_range
from store.views.run_pages import (
    BadCursor,
    count_failed_first_items,
    count_outcomes_for_runs,
    count_runs,
    count_runs_in_view,
    read_definition_ids,
    read_runs_page,
)
from ui.colors import STATUS_MARKS
from ui.period_picker import pick_period
from ui.population import render_population_flags
from ui.run_views import (
    ATTENTION,
    ESTIMATED_NOTE,
    KNOWN_OUTCOMES,
    KNOWN_STATUSES,
    count_figure,
    highlight_attention,
    run_filter,
    run_sort,
    runs_frame,
)
from ui.runtime import current_engine
from ui.session import actor_or_stop
from ui.table_widths import FULL_WIDTH_PX, SELECT_COLUMN_PX, sized_config
from ui.tables import table_height

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
today = engine.clock.now().date()
c1, c2, c3 = st.columns([3, 3, 2])
definitions = c1.multiselect("Definition", known_definitions, default=list(view.definitions),
                             placeholder="All definitions")
statuses = c2.multiselect("Status", KNOWN_STATUSES, default=list(view.statuses), placeholder="All statuses",
                          format_func=lambda s: f"{STATUS_MARKS.get(s, '')} {s}")
dates_row = st.container()
c4, c5, c6 = st.columns([3, 3, 2])
with engine.ws.read() as conn:
    first_run, _last_run = read_run_time_range(conn)
period = pick_period(c3, view.period, today, first_run.date() if first_run else None, dates_place=dates_row)
time_field = c4.radio("Period applies to", ["triggered", "completed"],
                      index=["triggered", "completed"].index(view.time_field), horizontal=True,
                      format_func=lambda f: "trigger time" if f == "triggered" else "completion time")
failed_attempts = c5.toggle("Only runs with failed attempts (recovered or not)", value=view.failed_attempts,
                            help="Runs in which any item failed at least once, including those a retry "
                                 "later recovered: a clean-looking run can hide an outage.")
sort_labels = {"completed": "Completion time", "triggered": "Trigger time", "started": "Start time",
               "duration": "Duration", "definition": "Definition", "status": "Status",
               "subjects": "Subjects matched", "actions": "Actions invoked"}
sort = c6.selectbox("Sort by", RUN_SORTS, index=RUN_SORTS.index(view.sort), format_func=lambda s: sort_labels.get(s, s))
descending = c6.toggle("Newest / largest first", value=view.descending)

chosen = replace(view, definitions=tuple(definitions), statuses=tuple(statuses), period=period,
                 time_field=time_field, sort=sort or view.sort, descending=descending, failed_attempts=failed_attempts)
if chosen != view:  # the URL is the view: rewrite it (dropping the page position) and show the new one
    st.query_params.from_dict(chosen.to_params())
    st.rerun()
if view.outcome:
    st.info(f"Showing runs with at least one item whose outcome is {view.outcome}.")
    if st.button("Show runs of every outcome"):
        st.query_params.from_dict(replace(view, outcome=None).to_params())
        st.rerun()

# --- counts and the page -----------------------------------------------------------------------------
f, period_words = run_filter(view, today)
after = last_param(params, "after")
with engine.ws.read() as conn:
    view_counts = count_runs_in_view(conn, f)
    try:
        rows, next_cursor = read_runs_page(conn, f, run_sort(view), after=after)
    except BadCursor as exc:
        st.warning(f"{md_escape(exc)}; showing the first page.")  # it quotes the link's text
        rows, next_cursor, after = *read_runs_page(conn, f, run_sort(view)), None
    page_ids = [r["run_id"] for r in rows]
    outcomes = count_outcomes_for_runs(conn, page_ids)
    failed_first = count_failed_first_items(conn, page_ids)
    in_workspace = count_runs(conn) if not rows else None

counts, estimated = view_counts.by_status, view_counts.estimated
attention = sum(counts.get(s, 0) for s in ATTENTION)
m = st.columns(3)
m[0].metric("Runs in view", count_figure(view_counts.total, bool(estimated)),
            help=f"Period: {period_words}." + (ESTIMATED_NOTE if estimated else ""))
m[1].metric("With failed attempts", f"{view_counts.with_failed_attempts:,}",
            help="Runs in view with an item that failed at least once, recovered by a retry or not.")
m[2].metric("Needing attention", count_figure(attention, bool(estimated & set(ATTENTION))),
            help="completed-with-failures or failed")
st.markdown(" · ".join(f"{STATUS_MARKS.get(s, '')} {s} **{count_figure(counts.get(s, 0), s in estimated)}**"
                       for s in KNOWN_STATUSES))

if not rows:
    if in_workspace:
        st.info(f"No runs match these filters ({period_words}); the workspace holds {in_workspace:,} runs. "
                "Widen the period or clear a filter.")
        first = runs_link()
        st.page_link(first.page, query_params=first.params, label="Show every run", icon=":material/filter_alt_off:")
    else:
        st.info("This workspace has no runs yet. An automation runs on its trigger (a schedule, an event or a "
                "signal); an operator can also start one from Automations with Run now.")
    st.stop()

render_population_flags(engine, rows)
frame = runs_frame(rows, outcomes, failed_first)
event = st.dataframe(
    frame.style.apply(highlight_attention, axis=None), hide_index=True, width="stretch",
    height=table_height(len(rows)), on_select="rerun", selection_mode="single-row", key="runs-table",
    column_config=sized_config(frame, room=FULL_WIDTH_PX - SELECT_COLUMN_PX, whole=("Run", "Status"), config={
        "Run": st.column_config.LinkColumn("Run", display_text=r"run\?id=(.*)", help="Open the run", pinned=True),
        "Definition": st.column_config.TextColumn("Definition"),
        "Trigger": st.column_config.TextColumn("Trigger"),
        "Status": st.column_config.TextColumn("Status"),
        "Subjects": st.column_config.NumberColumn("Subjects", help="Subjects matched"),
        "Actions": st.column_config.NumberColumn("Actions", help="Actions invoked"),
        "Outcomes": st.column_config.TextColumn(
            "Outcomes", help="Items by outcome now; ↻ counts items that failed at first and a retry recovered"),
        "Triggered": st.column_config.TextColumn("Triggered (UTC)"),
        "Completed": st.column_config.TextColumn("Completed (UTC)"),
    }))
st.caption(f"{len(rows)} runs on this page · ⚠ completed-with-failures and ✕ failed are highlighted; ↻ marks "
           "items that failed at first and were recovered by a retry · select a row (or click its run id) to "
           "open it.")
if event.selection.rows:
    chosen_run = rows[event.selection.rows[0]]["run_id"]
    link = run_link(chosen_run)
    st.switch_page(link.page, query_params=link.params)

b1, b2, _ = st.columns([1, 1, 6])
if after and b1.button("First page", icon=":material/first_page:"):
    st.query_params.from_dict(runs_link(view).params)
    st.rerun()
if next_cursor and b2.button("Next page", icon=":material/navigate_next:"):
    st.query_params.from_dict(runs_link(view, after=next_cursor).params)
    st.rerun()
