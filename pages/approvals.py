"""Items awaiting approval, oldest first: approve (the action then executes) or dismiss with a reason
(the item is skipped with it). Segregation of duties and roles are checked by the engine's commands."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from engine.commands import COMMAND_REFUSALS, approve_item, dismiss_item
from store.oversight_queries import read_open_approvals_oldest_first, read_recent_decisions
from ui.links import item_link, run_link
from ui.runtime import current_engine
from ui.session import actor_or_stop
from ui.text import fmt_duration, fmt_time, md_escape, pretty_json
from ui.tables import show_table

engine = current_engine()
actor = actor_or_stop()
st.title("Approvals")
st.caption("Actions that need a person's decision before they execute. Oldest first.")
result = st.session_state.pop("approvals_result", None)
if result:
    (st.success if result[0] == "ok" else st.error)(result[1])

with engine.ws.read() as conn:
    waiting = read_open_approvals_oldest_first(conn)
may_approve, may_dismiss = actor.may("approve"), actor.may("dismiss")
if not (may_approve and may_dismiss):
    st.info(f"Deciding needs the approver role; {actor.member_id} has "
            f"{', '.join(sorted(actor.roles)) or 'no role'}. You can see what waits, not decide it.")
if not waiting:
    st.success("Nothing is awaiting approval.")
now = engine.clock.now()
for a in waiting:
    item_id = a["item_id"]
    with st.container(border=True):
        top = st.columns([3, 2, 2])
        top[0].markdown(f"**{md_escape(a['subject_label'])}** — {md_escape(a['definition_id'])} "
                        f"v{a['definition_version']}")
        il, rl = item_link(item_id), run_link(a["run_id"])
        top[1].page_link(il.page, query_params=il.params, label=item_id)
        top[2].page_link(rl.page, query_params=rl.params, label=a["run_id"])
        st.caption(f"{a['action']} · waiting since {fmt_time(a['opened_at'])} "
                   f"({fmt_duration((now - a['opened_at']).total_seconds())})")
        with st.expander("Parameters it will execute with"):
            st.code(pretty_json(a["parameters"]), language="json", wrap_lines=True)
        left, right = st.columns(2)
        if left.button("Approve", key=f"approve-{item_id}", type="primary", disabled=not may_approve,
                       help=None if may_approve else "Needs the approver role"):
            try:
                outcome = approve_item(engine, actor, item_id)
                st.session_state["approvals_result"] = ("ok", f"Approved {item_id}: the action ran and the item "
                                                              f"is {outcome}.")
            except COMMAND_REFUSALS as exc:
                st.session_state["approvals_result"] = ("error", md_escape(exc))
            st.rerun()
        with right.form(f"dismiss-{item_id}", border=False):
            reason = st.text_input("Reason to dismiss", key=f"reason-{item_id}", disabled=not may_dismiss,
                                   placeholder="e.g. not applicable to credit unions")
            if st.form_submit_button("Dismiss", disabled=not may_dismiss,
                                     help=None if may_dismiss else "Needs the approver role"):
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
        show_table(pd.DataFrame([{"Item": d["item_id"], "Decision": d["decision"], "By": d["decided_by"],
                                    "At": fmt_time(d["decided_at"]), "Reason": d["reason"] or ""}
                                   for d in decided]))
    else:
        st.caption("No decisions yet.")
