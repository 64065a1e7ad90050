"""Failed items across runs, grouped by cause and definition, each group's failures open or dispositioned;
bulk retry of every eligible one in the filter (no page cap), and bulk disposition of a failure group, each
with the plan first, a progress bar and a summary."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.links import failed_items_link, item_link, query_params_dict, run_link
from core.markup import md_escape, md_repr, md_value
from core.periods import last_param, parse_period, resolve_period
from engine.commands import COMMAND_REFUSALS, disposition_items, plan_bulk_retry, plan_dispositions, retry_items
from store.views.analytics import read_run_time_range
from store.views.oversight import (
    FailedFilter,
    count_dispositioned_by_cause,
    count_failed_items_by_cause,
    read_failed_items,
)
from store.views.run_pages import read_definition_ids
from ui.dispositions import disposition_fields, may_disposition
from ui.period_picker import pick_period
from ui.runtime import current_engine
from ui.session import actor_or_stop
from ui.tables import show_table
from ui.text import show_command_result

engine = current_engine()
actor = actor_or_stop()
params = query_params_dict(st.query_params)
st.title("Failed items")
st.caption("Every failed item across runs, grouped by cause. Transient failures can be retried with the same "
           "idempotency key; deterministic ones need their cause fixed first.")
show_command_result("failed_items_result")

with engine.ws.read() as conn:
    definitions = read_definition_ids(conn)


problems: list[str] = []
choice = parse_period(params, "all", problems, md_value)
for p in problems:
    st.warning(p)
definition = last_param(params, "definition")
if definition and definition not in definitions:
    st.warning(f"Unknown definition {md_repr(definition)} in the link; showing all.")
    definition = None
c1, c2 = st.columns([3, 2])
dates_row = st.container()
picked_def = c1.selectbox("Definition", [None, *definitions], index=([None, *definitions].index(definition)),
                          format_func=lambda d: d or "All definitions")
today = engine.clock.now().date()
with engine.ws.read() as conn:
    first_run, _ = read_run_time_range(conn)
picked = pick_period(c2, choice, today, first_run.date() if first_run else None, dates_place=dates_row)
if (picked_def, picked) != (definition, choice):
    st.query_params.from_dict(failed_items_link(picked_def, picked).params)
    st.rerun()
period = resolve_period(choice, today)
st.caption(f"Runs triggered in: {period.label}")

f = FailedFilter(definition=definition, start=period.start, end=period.end)
with engine.ws.read() as conn:
    groups = count_failed_items_by_cause(conn, f)
    dispositioned = count_dispositioned_by_cause(conn, f)
if not groups:
    st.success("No failed items in this view. Nothing needs a retry.")
    st.stop()
for g in groups:
    g["dispositioned"] = dispositioned.get((g["definition_id"], g["failure_cause"], g["failure_class"]), 0)
    g["open"] = g["items"] - g["dispositioned"]
open_total = sum(g["open"] for g in groups)
st.markdown(f"**{open_total:,} open** (neither recovered nor dispositioned) · "
            f"{sum(g['dispositioned'] for g in groups):,} dispositioned")

st.subheader("By cause and definition")
show_table(pd.DataFrame(groups)[["definition_id", "failure_cause", "failure_class", "items", "open", "dispositioned",
                                 "runs"]]
           .rename(columns={"definition_id": "Definition", "failure_cause": "Cause", "failure_class": "Class",
                            "items": "Items", "open": "Open", "dispositioned": "Dispositioned", "runs": "Runs"}))

st.subheader("Bulk retry")
st.caption("Takes every eligible failed item in this view, however many; the plan comes first.")
plan_key = ("failed_items_plan", definition, period.start, period.end)
if st.button("Plan a bulk retry", icon=":material/checklist:"):
    with engine.ws.read() as conn:
        st.session_state["failed_items_plan"] = (plan_key, plan_bulk_retry(read_failed_items(conn, f, limit=None)))
held = st.session_state.get("failed_items_plan")
if held and held[0] == plan_key:
    plan = held[1]
    st.markdown(f"**Plan:** {len(plan.eligible):,} of {len(plan.eligible) + len(plan.not_eligible):,} failed "
                f"items are eligible for a retry; {len(plan.not_eligible):,} are not.")
    if plan.not_eligible:
        with st.expander(f"Not eligible, and why ({len(plan.not_eligible):,})"):
            show_table(pd.DataFrame([{"Item": item_link(r["item_id"]).href, "Why not": why}
                                       for r, why in plan.not_eligible[:2000]]),
                         column_config={"Item": st.column_config.LinkColumn(display_text=r"id=(.*)")})
    may = actor.may("retry")
    if not may:
        st.caption(f"Retrying needs the operator role; {actor.member_id} has "
                   f"{', '.join(sorted(actor.roles)) or 'no role'}.")
    if st.button(f"Retry all {len(plan.eligible):,} eligible items", type="primary",
                 disabled=not may or not plan.eligible, help=None if may else "Needs the operator role"):
        bar = st.progress(0.0, text="Retrying…")
        st.session_state.pop("failed_items_plan", None)
        try:
            results = retry_items(engine, actor, [r["item_id"] for r in plan.eligible],
                                  progress=lambda n, total: bar.progress(n / total, text=f"{n:,}/{total:,}"))
            tally = pd.Series(list(results.values())).value_counts().to_dict()
            st.session_state["failed_items_result"] = (
                "ok", "Bulk retry finished: " + ", ".join(f"{n:,} {o}" for o, n in tally.items()))
        except COMMAND_REFUSALS as exc:
            st.session_state["failed_items_result"] = ("error", md_escape(exc))
        st.rerun()

st.subheader("Bulk disposition of a failure group")
st.caption("For failures that will not be retried: an approver waives them, records that they were resolved "
           "outside, or names what superseded them. Their outcome stays failed; the plan comes first.")
open_groups = [g for g in groups if g["open"]]
if not open_groups:
    st.caption("Every failure in this view is dispositioned.")
elif may_disposition(actor):
    group = st.selectbox("Failure group", open_groups, key="disposition_group",
                         format_func=lambda g: f"{g['definition_id']} · {g['failure_cause']} · {g['failure_class']} "
                                               f"({g['open']:,} open)")
    given = disposition_fields("bulk_disposition")
    dplan_key = ("failed_items_dplan", definition, period.start, period.end, group["definition_id"],
                 group["failure_cause"], group["failure_class"])
    if st.button("Plan the disposition", icon=":material/checklist:"):
        gf = FailedFilter(definition=group["definition_id"], start=period.start, end=period.end)
        with engine.ws.read() as conn:
            rows = read_failed_items(conn, gf, limit=None, cause=(group["failure_cause"], group["failure_class"]))
        st.session_state["failed_items_dplan"] = (dplan_key, plan_dispositions(engine, actor, rows))
    held_d = st.session_state.get("failed_items_dplan")
    if held_d and held_d[0] == dplan_key:
        dplan = held_d[1]
        st.markdown(f"**Plan:** {len(dplan.eligible):,} of {len(dplan.eligible) + len(dplan.not_eligible):,} "
                    f"failed items in the group can be dispositioned by {md_escape(actor.member_id)}; "
                    f"{len(dplan.not_eligible):,} cannot.")
        if dplan.not_eligible:
            with st.expander(f"Not dispositioned, and why ({len(dplan.not_eligible):,})"):
                show_table(pd.DataFrame([{"Item": item_link(r["item_id"]).href, "Why not": why}
                                           for r, why in dplan.not_eligible[:2000]]),
                             column_config={"Item": st.column_config.LinkColumn(display_text=r"id=(.*)")})
        if st.button(f"Disposition {len(dplan.eligible):,} items as {given.kind}", type="primary",
                     disabled=not dplan.eligible):
            bar = st.progress(0.0, text="Recording…")
            st.session_state.pop("failed_items_dplan", None)
            try:
                done = disposition_items(engine, actor, [r["item_id"] for r in dplan.eligible], given.kind,
                                         given.reason, given.reference, given.superseded_by,
                                         progress=lambda n, total: bar.progress(n / total, text=f"{n:,}/{total:,}"))
                recorded = sum(1 for v in done.values() if not v.startswith("not dispositioned"))
                st.session_state["failed_items_result"] = (
                    "ok", f"Bulk disposition finished: {recorded:,} dispositioned as {given.kind}, "
                          f"{len(done) - recorded:,} not (changed since the plan).")
            except COMMAND_REFUSALS as exc:
                st.session_state["failed_items_result"] = ("error", md_escape(exc))
            st.rerun()

st.subheader("Items")
with engine.ws.read() as conn:
    shown = read_failed_items(conn, f, limit=500)
show_table(pd.DataFrame([{"Item": item_link(r["item_id"]).href, "Run": run_link(r["run_id"]).href,
                            "Definition": r["definition_id"], "Subject": r["subject_label"],
                            "Cause": r["failure_cause"], "Class": r["failure_class"], "Attempts": r["attempts"],
                            "Disposition": r["disposition"] or "open"}
                           for r in shown]),
             column_config={"Item": st.column_config.LinkColumn(display_text=r"id=(.*)"),
                            "Run": st.column_config.LinkColumn(display_text=r"id=(.*)")})
total_failed = sum(g["items"] for g in groups)
if total_failed > len(shown):
    st.caption(f"Showing the newest {len(shown):,} of {total_failed:,}; the bulk retry takes them all.")
