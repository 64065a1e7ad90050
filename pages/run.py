"""One run: what fired it and why, what it matched, what each action did, and the commands on it."""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from core.links import Link, audit_link, definition_link, query_params_dict, run_link
from core.markup import md_escape, md_repr
from core.periods import last_param
from core.roles import PERMISSION_ROLES
from core.states import IMPORT, ITEM_FAILED, TERMINAL_RUN_STATUSES
from reporting.bundle import build_run_bundle
from store.alerts import DELIVERED, read_run_alerts
from store.dispositions import read_run_dispositions
from store.views.registers import read_import_of_run
from store.views.run_pages import (
    count_failed_first_items,
    count_items_by_action_and_outcome,
    read_entity_audit,
    read_items_page,
    read_run_detail,
)
from ui.colors import STATUS_BADGES
from ui.page_stops import stop_at_runs
from ui.population import render_population
from ui.run_actions import render_cancel, render_retry, show_last_result
from ui.run_views import KNOWN_OUTCOMES, breakdown_figure, duration_seconds, items_frame
from ui.runtime import current_engine
from ui.session import actor_or_stop
from ui.tables import show_table
from ui.text import fmt_duration, fmt_time, pretty_json, show_preformatted

engine = current_engine()
actor = actor_or_stop()
params = query_params_dict(st.query_params)
run_id = (last_param(params, "id") or "").strip()

if not run_id:
    stop_at_runs("Run", "No run chosen. Open one from the Runs page.")
with engine.ws.read() as conn:
    run = read_run_detail(conn, run_id)
if run is None:
    stop_at_runs("Run", f"There is no run {md_repr(run_id)} in this workspace. Check the link (run ids look like "
                 "RUN-000042), or find the run on the Runs page.", error=True)

shown: dict[str, Any] = run  # found (narrowed for the functions below, which mypy cannot see into)
st.title(f"Run {run_id}")
st.caption(md_escape(run["definition_title"] or run["definition_id"]))
show_last_result(run_id)


def render_facts() -> dict[str, int]:
    """Status, times and counts: the part that changes while the run runs."""
    with engine.ws.read() as conn:
        current = read_run_detail(conn, run_id) or shown
        breakdown = count_items_by_action_and_outcome(conn, run_id)
    st.badge(current["status"], color=STATUS_BADGES.get(current["status"], "gray"))
    c = st.columns([1, 1, 3])
    c[0].metric("Subjects matched", f"{current['subjects_matched']:,}")
    c[1].metric("Actions invoked", f"{current['actions_invoked']:,}")
    c[2].dataframe({"": ["Triggered", "Started", "Completed", "Duration"],
                    "UTC": [fmt_time(current["triggered_at"]), fmt_time(current["started_at"]),
                            fmt_time(current["completed_at"]),
                            fmt_duration(duration_seconds(current["started_at"], current["completed_at"]))]})
    if current["cancel_requested_at"] is not None:
        st.warning(f"Cancel requested by {current['cancel_requested_by']} at "
                   f"{fmt_time(current['cancel_requested_at'])}.")
        st.text(f"Reason: {current['cancel_reason']}")
    if current["failure_cause"]:
        st.error("Run-level failure:")
        st.text(current["failure_cause"])
    st.subheader("Action breakdown")
    if breakdown:
        left, right = st.columns([3, 2])
        left.plotly_chart(breakdown_figure(breakdown), config={"displayModeBar": False})
        right.dataframe(breakdown,
                        column_config={"action": "Action", "outcome": "Outcome", "items": "Items"})
    elif current["started_at"] is None:
        st.info("No items yet: the run has not matched its subjects.")
    elif current["trigger_kind"] == IMPORT:
        st.info("A scheduled import: it read the register's source and acts on no subject itself; automations "
                "its changes start have runs of their own.")
    else:
        subject = engine.catalog.get(current["definition_id"], current["definition_version"]).condition.subject
        st.info(f"This run matched no subjects: its condition held for none of the {md_escape(subject)} when it "
                f"ran ({fmt_time(current['started_at'])}), so no action was taken.")
    counts: dict[str, int] = {}
    for b in breakdown:
        counts[b["outcome"]] = counts.get(b["outcome"], 0) + b["items"]
    return counts


live = run["status"] not in TERMINAL_RUN_STATUSES
if live:
    st.caption("This run is in progress; the figures below refresh every 2 seconds.")
    counts = st.fragment(render_facts, run_every="2s")() or {}
else:
    counts = render_facts()

# --- the matched population against the previous run of a scheduled automation ------------------------------
if run["trigger_kind"] == "schedule" and not live:
    render_population(engine.ws, run)

# --- items that failed before they succeeded: a clean-looking run can hide an outage ---------------------
with engine.ws.read() as conn:
    failed_first = count_failed_first_items(conn, [run_id]).get(run_id)
    dispositioned = len(read_run_dispositions(conn, run_id)) if failed_first and failed_first.still_failed else 0
if failed_first:
    n, rec, still = failed_first.items, failed_first.recovered, failed_first.still_failed
    if rec == n:
        said = f"**{n:,}** {'item' if n == 1 else 'items'} failed at first and {'was' if n == 1 else 'were'} " \
               "recovered by a retry"
    else:
        parts = [f"{rec:,} recovered by a retry"] if rec else []
        if still:  # a failure stays failed; it is open until an approver dispositions it
            parts.append(f"{still:,} still failed ({still - dispositioned:,} open, {dispositioned:,} dispositioned)")
        if n - rec - still:
            parts.append(f"{n - rec - still:,} retrying, skipped or awaiting a decision")
        said = f"**{n:,}** {'item' if n == 1 else 'items'} failed at least once: " + ", ".join(parts)
    fl = run_link(run_id, failed_attempts=True)
    st.warning(f"{said} — [show them]({fl.href})", icon=":material/history:")

# --- alerts sent about this run (a failed one is retried, and shown here until it is delivered) -------------
with engine.ws.read() as conn:
    run_alerts = read_run_alerts(conn, run_id)
for a in run_alerts:
    to = ", ".join(json.loads(a["recipients"])) or "its webhook"
    said = f"Alert ({md_escape(a['reason'])}) via **{md_escape(a['via'])}** to {md_escape(to)}: "
    if a["status"] == DELIVERED:
        st.caption(f"{said}delivered {fmt_time(a['delivered_at'])} as {md_escape(a['record_ref'])}")
    else:
        when = f"; next try {fmt_time(a['next_attempt_at'])}" if a["next_attempt_at"] else "; no further try"
        st.warning(f"{said}**not delivered** after {a['attempts']} "
                   f"{'try' if a['attempts'] == 1 else 'tries'} ({md_escape(a['last_error'] or 'queued')}){when}",
                   icon=":material/notifications_off:")

# --- definition and trigger -----------------------------------------------------------------------------
left, right = st.columns(2)
if run["trigger_kind"] == IMPORT:
    with engine.ws.read() as conn:
        loaded = read_import_of_run(conn, run_id)
    register_id = run["definition_id"].partition(":")[2]
    with left:
        st.subheader("Import")
        rl = Link("registers", {"id": register_id})
        st.page_link(rl.page, query_params=rl.params, label=f"Register {register_id}", icon=":material/table_view:")
        if loaded:
            st.markdown(f"**{md_escape(loaded['import_id'])}** from {md_escape(loaded['origin'])} "
                        f"{md_escape(loaded['source'])} ({loaded['mode']}): {loaded['added']:,} added, "
                        f"{loaded['changed']:,} changed, {loaded['unchanged']:,} unchanged, "
                        f"{loaded['withdrawn']:,} withdrawn, {loaded['refused']:,} refused, "
                        f"{loaded['events']:,} events raised")
            if loaded["sha256"]:
                st.caption(f"sha256 {loaded['sha256']} · {loaded['bytes']:,} bytes")
        else:
            st.caption("Nothing was loaded (see the run-level failure above).")
else:
    with left:
        st.subheader("Definition")
        st.markdown(f"**{md_escape(run['definition_id'])}**, version {run['definition_version']}")
        link = definition_link(run["definition_id"], run["definition_version"])
        st.page_link(link.page, query_params=link.params, label="This version in Automations",
                     icon=":material/schedule:")
        if run["version"]:
            with st.expander(f"Its text at version {run['definition_version']}"):
                show_preformatted(run["version"]["content"])
                st.caption(f"content hash {run['version']['content_hash']} · by {run['version']['authored_by']} "
                           f"· {fmt_time(run['version']['created_at'])}")
with right:
    st.subheader("Trigger")
    event = run["event"]
    st.markdown(f"**{md_escape(run['trigger_kind'])}** from **{md_escape(run['trigger_source'])}** at "
                f"{fmt_time(run['triggered_at'])}")
    if event:
        st.caption(f"event {md_escape(event['event_id'])} · {md_escape(event['event_type'])} · received "
                   f"{fmt_time(event['received_at'])}")
        with st.expander("Trigger payload"):
            show_preformatted(pretty_json(event["payload"]))

# --- commands -------------------------------------------------------------------------------------------
render_cancel(engine, actor, run)
render_retry(engine, actor, run, counts.get(ITEM_FAILED, 0))
may_export = actor.may("export")
st.download_button(  # a callable: the zip is built, and its export audited, when the member clicks
    "Download evidence bundle (.zip)", data=lambda: build_run_bundle(engine, actor, run_id)[1],
    file_name=f"{run_id}-evidence.zip", mime="application/zip", on_click="ignore", key=f"bundle-{run_id}",
    icon=":material/folder_zip:", disabled=not may_export,
    help="The run, every item, attempt and approval, the definition text, the trigger event and every audit "
         "entry about the run, with a verifier an auditor runs offline. The export is recorded in the audit "
         "log." if may_export else
         f"Exporting evidence needs the {' or '.join(PERMISSION_ROLES['export'])} role; {actor.member_id} has "
         f"{', '.join(sorted(actor.roles)) or 'no role'}.")

# --- items ----------------------------------------------------------------------------------------------
st.subheader("Items")
outcome = last_param(params, "outcome")
if outcome and outcome not in KNOWN_OUTCOMES:
    st.warning(f"Unknown outcome {md_repr(outcome)} in the link; showing every item.")
    outcome = None
failed_attempts = last_param(params, "attempts") == ITEM_FAILED  # ?attempts=failed
options = ["all", *[o for o in KNOWN_OUTCOMES if counts.get(o)], *(["failed-first"] if failed_first else [])]
current_option = "failed-first" if failed_attempts else outcome if outcome in options else "all"
labels = {"all": "All", "failed-first": f"failed at first ({failed_first.items:,})" if failed_first else ""}
picked = st.segmented_control("Outcome", options, default=current_option,
                              format_func=lambda o: labels.get(o) or f"{o} ({counts.get(o, 0):,})")
if picked != current_option:
    st.query_params.from_dict(run_link(run_id, None if picked in (None, "all", "failed-first") else picked,
                                       failed_attempts=picked == "failed-first").params)
    st.rerun()
try:
    after = int(last_param(params, "from") or "0")
except ValueError:
    after = 0
with engine.ws.read() as conn:
    items, next_position = read_items_page(conn, run_id, None if failed_attempts else outcome,
                                           after_position=after, failed_attempts=failed_attempts)
if items:
    show_table(items_frame(items), column_config={
        "Item": st.column_config.LinkColumn("Item", display_text=r"item\?id=(.*)"),
        "Subject": st.column_config.LinkColumn("Subject", display_text=r"id=(.*)$"),
        "Record": st.column_config.LinkColumn("Resulting record", display_text=r"id=(.*)$"),
    })
else:
    st.info("No items with this outcome.")
nav = st.columns([1, 1, 6])
if after and nav[0].button("First items", icon=":material/first_page:"):
    st.query_params.from_dict(run_link(run_id, outcome, failed_attempts).params)
    st.rerun()
if next_position and nav[1].button("More items", icon=":material/navigate_next:"):
    st.query_params.from_dict({**run_link(run_id, outcome, failed_attempts).params, "from": str(next_position)})
    st.rerun()

# --- audit ----------------------------------------------------------------------------------------------
with st.expander("This run's audit entries"):
    with engine.ws.read() as conn:
        entries = read_entity_audit(conn, "run", run_id)
    show_table(entries)
    al = audit_link(entity_kind="run", entity_id=run_id)
    st.page_link(al.page, query_params=al.params, label="Open in the audit log", icon=":material/policy:")
