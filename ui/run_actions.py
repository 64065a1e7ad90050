"""The Run page's two commands, cancel and retry failed items, as panels: who may act, what will happen
(the retry plan first), then the command, its progress and its result. The engine checks the actor
again; a refusal is shown as the engine words it."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core.links import item_link
from core.markup import md_escape
from core.roles import Actor
from core.states import TERMINAL_RUN_STATUSES
from engine.commands import COMMAND_REFUSALS, cancel_run, plan_retry, retry_items
from engine.runtime import Engine
from ui.tables import show_table

_RESULT = "run_action_result"


def show_last_result(run_id: str) -> None:
    result = st.session_state.pop(_RESULT, None)
    if result and result[0] == run_id:
        kind, text = result[1], result[2]
        (st.success if kind == "ok" else st.error)(text)


def _remember(run_id: str, kind: str, text: str) -> None:
    st.session_state[_RESULT] = (run_id, kind, text)


def render_cancel(engine: Engine, actor: Actor, run: dict[str, Any]) -> None:
    run_id = run["run_id"]
    if run["status"] in TERMINAL_RUN_STATUSES:
        return
    may = actor.may("cancel")
    with st.expander("Cancel this run", icon=":material/cancel:"):
        if run["cancel_requested_at"] is not None:
            st.info("A cancel request is already recorded; the run settles once its in-flight items finish.")
            return
        if not may:
            st.caption(f"Cancelling needs the operator role; {actor.member_id} has "
                       f"{', '.join(sorted(actor.roles)) or 'no role'}.")
        st.caption("Items not yet started are skipped with reason `cancelled`; items in flight finish and "
                   "their outcomes are recorded; then the run is `cancelled`.")
        with st.form(f"cancel-{run_id}"):
            reason = st.text_area("Reason (goes into the audit trail)", disabled=not may)
            confirm = st.checkbox(f"Yes, cancel {run_id}", disabled=not may)
            submitted = st.form_submit_button("Cancel run", type="primary", disabled=not may,
                                              help=None if may else "Needs the operator role")
        if submitted:
            if not confirm:
                st.warning("Tick the confirmation to cancel the run.")
                return
            try:
                status = cancel_run(engine, actor, run_id, reason)
            except COMMAND_REFUSALS as exc:
                _remember(run_id, "error", md_escape(exc))
            else:
                _remember(run_id, "ok", f"Cancel request recorded; the run is now {status}.")
            st.rerun()


def render_retry(engine: Engine, actor: Actor, run: dict[str, Any], failed_count: int) -> None:
    run_id = run["run_id"]
    if not failed_count:
        return
    may = actor.may("retry")
    with st.expander(f"Retry failed items ({failed_count:,} failed)", icon=":material/replay:"):
        plan = plan_retry(engine, run_id)
        st.markdown(f"**Plan:** {len(plan.eligible):,} eligible for a retry (same idempotency key, so nothing "
                    f"acts twice); {len(plan.not_eligible):,} not eligible.")
        if plan.eligible:
            show_table(pd.DataFrame([{"Item": item_link(i["item_id"]).href, "Subject": i["subject_label"],
                                      "Cause": i["failure_cause"], "Class": i["failure_class"]}
                                     for i in plan.eligible]),
                       key=f"plan-ok-{run_id}",
                       column_config={"Item": st.column_config.LinkColumn(display_text=r"id=(.*)")})
        if plan.not_eligible:
            st.markdown("**Not eligible, and why:**")
            show_table(pd.DataFrame([{"Item": item_link(i["item_id"]).href, "Subject": i["subject_label"],
                                      "Why not": why} for i, why in plan.not_eligible]),
                       key=f"plan-no-{run_id}",
                       column_config={"Item": st.column_config.LinkColumn(display_text=r"id=(.*)")})
        if not may:
            st.caption(f"Retrying needs the operator role; {actor.member_id} has "
                       f"{', '.join(sorted(actor.roles)) or 'no role'}.")
        go = st.button(f"Retry {len(plan.eligible):,} eligible items", type="primary",
                       disabled=not may or not plan.eligible, key=f"retry-{run_id}",
                       help=None if may else "Needs the operator role")
        if go:
            bar = st.progress(0.0, text="Retrying…")
            try:
                results = retry_items(engine, actor, [i["item_id"] for i in plan.eligible],
                                      progress=lambda n, total: bar.progress(n / total, text=f"{n}/{total}"))
            except COMMAND_REFUSALS as exc:
                _remember(run_id, "error", md_escape(exc))
            else:
                tally = pd.Series(list(results.values())).value_counts().to_dict()
                _remember(run_id, "ok", "Retry finished: " + ", ".join(f"{n} {o}" for o, n in tally.items()))
            st.rerun()
