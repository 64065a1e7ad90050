"""Items awaiting approval, oldest first: approve (the action then executes) or dismiss with a reason
(the item is skipped with it). How long each has waited is said plainly, and one waiting past its
definition's ``approval.due_within_hours`` is flagged overdue. Roles and four eyes are checked by the
engine's commands; the buttons say beforehand why a member may not decide."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from core.links import item_link, run_link
from core.markup import md_escape
from engine.catalog import UnknownDefinition
from engine.commands import COMMAND_REFUSALS, approve_item, dismiss_item, four_eyes_conflict
from store.views.oversight import read_open_approvals_oldest_first, read_recent_decisions
from ui.runtime import current_engine
from ui.session import actor_or_stop
from ui.tables import show_table
from ui.text import fmt_age, fmt_time, pretty_json, show_command_result

engine = current_engine()
actor = actor_or_stop()
st.title("Approvals")
st.caption("Actions that need a person's decision before they execute. Oldest first.")
show_command_result("approvals_result")

with engine.ws.read() as conn:
    waiting = read_open_approvals_oldest_first(conn)
may_approve, may_dismiss = actor.may("approve"), actor.may("dismiss")
if not (may_approve and may_dismiss):
    st.info(f"Deciding needs the approver role; {actor.member_id} has "
            f"{', '.join(sorted(actor.roles)) or 'no role'}. You can see what waits, not decide it.")
now = engine.clock.now()


def _due_hours(definition_id: str, version: int) -> float | None:
    try:
        return engine.catalog.get(definition_id, version).approval_due_within_hours
    except UnknownDefinition:
        return None


def _proposal(parameters: str) -> str | None:
    """The rendered title (or subject) of the action: what the approver is asked to let happen."""
    try:
        params = json.loads(parameters)
    except (TypeError, ValueError):
        return None
    if not isinstance(params, dict):
        return None
    for name in ("title", "subject", "summary"):
        if isinstance(params.get(name), str) and params[name].strip():
            return str(params[name])
    return None


overdue = 0
for a in waiting:
    due = _due_hours(a["definition_id"], a["definition_version"])
    waited = (now - a["opened_at"]).total_seconds()
    a["overdue_by"] = waited - due * 3600 if due is not None and waited > due * 3600 else None
    a["due_hours"], a["waited"] = due, waited
    overdue += a["overdue_by"] is not None
if not waiting:
    st.success("Nothing is awaiting approval.")
else:
    st.markdown(f"**{len(waiting):,}** waiting · oldest has waited **{fmt_age(waiting[0]['waited'])}**"
                + (f" · :red[**{overdue:,} overdue**]" if overdue else ""))

for a in waiting:
    item_id, run_id = a["item_id"], a["run_id"]
    with st.container(border=True):
        head, age = st.columns([4, 2])
        head.markdown(f"**{md_escape(a['subject_label'])}** — {md_escape(a['definition_id'])} "
                      f"v{a['definition_version']}")
        head.markdown(f"Item [{item_id}]({item_link(item_id).href}) of run [{run_id}]({run_link(run_id).href}) · "
                      f"{md_escape(a['action'])}")
        if a["overdue_by"] is not None:
            age.error(f"Waiting {fmt_age(a['waited'])}: overdue by {fmt_age(a['overdue_by'])} "
                      f"(due within {a['due_hours']:g} h)", icon=":material/schedule:")
        else:
            due_words = f", due within {a['due_hours']:g} h" if a["due_hours"] is not None else ""
            age.info(f"Waiting {fmt_age(a['waited'])}{due_words}", icon=":material/schedule:")
        # What the action would do, in its own words, before anyone unfolds the parameters.
        proposed = _proposal(a["parameters"])
        if proposed:
            st.markdown(f"Proposes: **{md_escape(proposed)}**")
        st.caption(f"Awaiting approval since {fmt_time(a['opened_at'])}")
        with st.expander("Parameters it will execute with"):
            st.code(pretty_json(a["parameters"]), language="json", wrap_lines=True)
        # The sentence the command would refuse with, shown before a click (the command refuses anyway).
        conflict = four_eyes_conflict(engine, actor, {"item_id": item_id, "run_id": run_id},
                                      {"run_id": run_id, "trigger_kind": a["trigger_kind"],
                                       "trigger_source": a["trigger_source"]}, "decide")
        approve_why = None if may_approve else "Needs the approver role"
        dismiss_why = None if may_dismiss else "Needs the approver role"
        if conflict is not None:
            approve_why = dismiss_why = conflict.message
            st.warning(md_escape(conflict.message))
        left, right = st.columns(2)
        if left.button("Approve", key=f"approve-{item_id}", type="primary", disabled=approve_why is not None,
                       help=approve_why):
            try:
                outcome = approve_item(engine, actor, item_id)
                st.session_state["approvals_result"] = ("ok", f"Approved {item_id}: the action ran and the item "
                                                              f"is {outcome}.")
            except COMMAND_REFUSALS as exc:
                st.session_state["approvals_result"] = ("error", md_escape(exc))
            st.rerun()
        with right.form(f"dismiss-{item_id}", border=False):
            reason = st.text_input("Reason to dismiss", key=f"reason-{item_id}", disabled=dismiss_why is not None,
                                   placeholder="e.g. not applicable to credit unions")
            if st.form_submit_button("Dismiss", disabled=dismiss_why is not None, help=dismiss_why):
                try:
                    dismiss_item(engine, actor, item_id, reason)
                    st.session_state["approvals_result"] = ("ok", f"Dismissed {item_id}: skipped with your reason.")
                except COMMAND_REFUSALS as exc:
                    st.session_state["approvals_result"] = ("error", md_escape(exc))
                st.rerun()

with st.expander("Recent decisions"):
    with engine.ws.read() as conn:
        decided = read_recent_decisions(conn)
    if decided:
        show_table(pd.DataFrame([{"Item": item_link(d["item_id"]).href, "Run": run_link(d["run_id"]).href,
                                  "Decision": d["decision"], "By": d["decided_by"], "At": fmt_time(d["decided_at"]),
                                  "Waited": fmt_age((d["decided_at"] - d["opened_at"]).total_seconds()),
                                  "Reason": d["reason"] or ""} for d in decided]),
                   column_config={"Item": st.column_config.LinkColumn("Item", display_text=r"item\?id=(.*)"),
                                  "Run": st.column_config.LinkColumn("Run", display_text=r"run\?id=(.*)")})
    else:
        st.caption("No decisions yet.")
