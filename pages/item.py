"""One run item: the subject as it was, the action and parameters at execution, every attempt, the
approval, the resulting record and this item's audit trail — Retry when it is eligible, and a failure's
disposition (or the form to record one) when it will not be retried."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from core.integrations import describe_evidence
from core.links import audit_link, query_params_dict, record_link, run_link, subject_link
from core.markup import md_escape, md_repr
from core.periods import last_param
from core.states import ITEM_FAILED
from engine.commands import (
    COMMAND_REFUSALS,
    CommandRefused,
    NotEligible,
    check_disposition_eligible,
    check_retry_eligible,
    disposition_item,
    four_eyes_conflict,
    retry_item,
)
from store.views.run_pages import read_entity_audit, read_item_detail
from ui.colors import OUTCOME_BADGES
from ui.dispositions import describe_disposition, disposition_fields, may_disposition
from ui.page_stops import stop_at_runs
from ui.runtime import current_engine
from ui.session import actor_or_stop
from ui.tables import show_table
from ui.text import fmt_time, pretty_json

engine = current_engine()
actor = actor_or_stop()
item_id = (last_param(query_params_dict(st.query_params), "id") or "").strip()
if not item_id:
    stop_at_runs("Run item", "No item chosen. Open a run, then one of its items.")
with engine.ws.read() as conn:
    item = read_item_detail(conn, item_id)
if item is None:
    stop_at_runs("Run item", f"There is no run item {md_repr(item_id)} in this workspace. Item ids look like "
                 "RUN-000042-000007; open the run and pick the item from its list.", error=True)

run = item["run"]
st.title(f"Item {item_id}")
rl = run_link(run["run_id"])
st.page_link(rl.page, query_params=rl.params, label=f"Part of run {run['run_id']} ({run['definition_id']} "
             f"v{run['definition_version']}, {run['status']})", icon=":material/play_circle:")
result = st.session_state.pop("item_action_result", None)
if result and result[0] == item_id:
    (st.success if result[1] == "ok" else st.error)(result[2])

st.badge(item["outcome"], color=OUTCOME_BADGES.get(item["outcome"], "gray"))
c = st.columns(3)
c[0].metric("Action", item["action"])
c[1].metric("Attempts", item["attempts"])
c[2].metric("Failure class", item["failure_class"] or "—")
st.caption(f"Last change {fmt_time(item['updated_at'])}")
if item["failure_cause"]:
    st.markdown("**Failure cause**")
    st.text(item["failure_cause"])
if item["skip_reason"]:
    st.markdown("**Skip reason**")
    st.text(item["skip_reason"])

# --- retry ----------------------------------------------------------------------------------------------
disposition = item["disposition"]
if item["outcome"] == ITEM_FAILED:
    try:
        check_retry_eligible(item, run, disposition["kind"] if disposition else None)
        why_not = None
    except NotEligible as exc:
        why_not = str(exc)
    if why_not:
        st.info(f"Not retryable: {md_escape(why_not)}")
    else:
        may = actor.may("retry")
        if not may:
            st.caption(f"Retrying needs the operator role; {actor.member_id} has "
                       f"{', '.join(sorted(actor.roles)) or 'no role'}.")
        if st.button("Retry this item", type="primary", disabled=not may,
                     help="Same idempotency key: if the action did happen, it is not done again"
                     if may else "Needs the operator role"):
            try:
                outcome = retry_item(engine, actor, item_id)
                st.session_state["item_action_result"] = (item_id, "ok", f"Retried: the item is now {outcome}.")
            except COMMAND_REFUSALS as exc:
                st.session_state["item_action_result"] = (item_id, "error", md_escape(exc))
            st.rerun()

# --- disposition: why a failure that will not be retried may stay failed ------------------------------------
if item["outcome"] == ITEM_FAILED:
    if disposition:
        st.markdown("**Failure dispositioned:** " + describe_disposition(disposition))
    else:
        st.warning("Open failure: not recovered and not dispositioned.")
        with st.expander("Disposition this failure"):
            try:
                check_disposition_eligible(item, None)
                conflict = four_eyes_conflict(engine, actor, item, run, "disposition")
                if conflict:
                    raise CommandRefused(conflict.message)
                blocked = None
            except CommandRefused as exc:
                blocked = str(exc)
            if blocked:
                st.info(md_escape(blocked))
            elif may_disposition(actor):
                given = disposition_fields("item_disposition")
                if st.button("Record the disposition", type="primary"):
                    try:
                        kind = disposition_item(engine, actor, item_id, given.kind, given.reason, given.reference,
                                                given.superseded_by)
                        st.session_state["item_action_result"] = (item_id, "ok", f"Dispositioned as {kind}; the "
                                                                  "outcome stays failed.")
                    except COMMAND_REFUSALS as exc:
                        st.session_state["item_action_result"] = (item_id, "error", md_escape(exc))
                    st.rerun()

# --- subject, parameters, record ----------------------------------------------------------------------
left, right = st.columns(2)
with left:
    st.subheader("Subject, as it was at execution")
    sl = subject_link(item["subject_kind"], item["subject_id"])
    st.page_link(sl.page, query_params=sl.params, label=f"{item['subject_kind']} {item['subject_id']} today",
                 icon=":material/folder_open:")
    try:
        snapshot = json.loads(item["subject_snapshot"])
        show_table(pd.DataFrame({"Field": list(snapshot), "Value": [str(v) for v in snapshot.values()]}))
    except (ValueError, AttributeError):
        st.code(str(item["subject_snapshot"]))
with right:
    st.subheader("Action and parameters at execution")
    st.markdown(f"**{md_escape(item['action'])}**")
    st.code(pretty_json(item["parameters"]), language="json", wrap_lines=True)
    st.caption(f"Idempotency key {item['idempotency_key']}")
    st.subheader("Resulting record")
    rec = record_link(item["record_ref"]) if item["record_ref"] else None
    if rec:
        st.page_link(rec.page, query_params=rec.params, label=item["record_ref"], icon=":material/description:")
    elif item["record_ref"]:  # a remote system's record: named here, held there
        st.markdown(f"**{md_escape(item['record_ref'])}** — held by the remote system; what it answered is under "
                    "Attempts.")
    else:
        st.caption("None: the action created no record.")

# --- attempts, approval, audit ------------------------------------------------------------------------
st.subheader("Attempts")
if item["attempt_rows"]:
    answers = {a["attempt"]: json.loads(a["evidence"]) for a in item["attempt_rows"] if a.get("evidence")}
    show_table(pd.DataFrame([{"Attempt": a["attempt"], "By": a["actor"], "Started": fmt_time(a["started_at"]),
                                "Finished": fmt_time(a["finished_at"]), "Outcome": a["outcome"],
                                "Record": a["record_ref"] or "",
                                **({"Remote answer": describe_evidence(answers.get(a["attempt"]))} if answers else {}),
                                "Cause": a["failure_cause"] or ""}
                               for a in item["attempt_rows"]]))
    if answers:
        with st.expander("What the remote system answered, attempt by attempt"):
            for attempt, answer in answers.items():
                st.caption(f"Attempt {attempt}")
                st.json(answer, expanded=True)
else:
    st.caption("No attempt yet.")
approval = item["approval"]
if approval:
    st.subheader("Approval")
    decision = approval["decision"] or "open — awaiting a decision"
    st.markdown(f"Opened {fmt_time(approval['opened_at'])} · **{md_escape(decision)}**"
                + (f" by {md_escape(approval['decided_by'])} at {fmt_time(approval['decided_at'])}"
                   if approval["decided_by"] else ""))
    if approval["reason"]:
        st.text(f"Reason: {approval['reason']}")
st.subheader("Audit entries")
with engine.ws.read() as conn:
    entries = read_entity_audit(conn, "run_item", item_id)
if entries:
    show_table(pd.DataFrame([{"Seq": e["seq"], "When": fmt_time(e["occurred_at"]), "Actor": e["actor"],
                                "Event": e["event"], "Payload": e["payload"]} for e in entries]))
al = audit_link(entity_kind="run_item", entity_id=item_id)
st.page_link(al.page, query_params=al.params, label="Open in the audit log", icon=":material/policy:")
