"""A subject's story (``?kind=accounts&id=…``): the subject as its register holds it now, then everything
Runledger recorded about it in time order — runs that matched it, re-checks that excluded it, attempts,
records, register changes, events, approvals and dispositions — exported as CSV or PDF with provenance."""

from __future__ import annotations

import streamlit as st

from core.links import item_link, query_params_dict, run_link
from core.markup import md_repr, md_value
from core.periods import last_param
from reporting.subject_story import story_frame
from store.registers import read_registers
from store.subjects import read_subject
from ui.export_widgets import subject_story_downloads
from ui.page_stops import stop_at_runs
from ui.runtime import current_engine
from ui.session import actor_or_stop
from ui.tables import show_table

engine = current_engine()
actor = actor_or_stop()
params = query_params_dict(st.query_params)
kind, subject_id = (last_param(params, "kind") or "").strip(), (last_param(params, "id") or "").strip()
with engine.ws.read() as conn:
    registers = read_registers(conn)
if not kind or not subject_id:
    stop_at_runs("Subject", "No subject chosen. Open one from any subject id in the app (a run's items, a "
                 "record, a register).")
if kind not in registers:
    stop_at_runs("Subject", f"There is no register {md_repr(kind)}. Registers: {', '.join(sorted(registers))}.",
                 error=True)
st.title(f"{kind} {md_value(subject_id)}")
with engine.ws.read() as conn:
    row = read_subject(conn, kind, subject_id)
if row is None:
    st.warning(f"The {kind} register holds no record {md_repr(subject_id)} now; what was recorded about it "
               "follows.")
else:
    with st.expander("As the register holds it now"):
        show_table([{"Field": k, "Value": "" if v is None else str(v)} for k, v in row.items()])
frame, cut = story_frame(engine.ws, kind, subject_id)
st.subheader("Its story")
st.caption("Every run that matched it, every re-check that excluded it, every attempt and its outcome, every "
           "record created for it, every register change and event, approvals and dispositions — oldest first.")
subject_story_downloads(engine.ws, actor, kind, subject_id)
if cut:
    st.warning("This subject has more run items than the page reads; the first of them are shown.")
if frame.is_empty():
    st.info("Nothing has been recorded about this subject yet.")
else:
    shown = frame.to_pandas()
    shown["run_id"] = [run_link(r).href if r else "" for r in shown["run_id"]]
    shown["item_id"] = [item_link(i).href if i else "" for i in shown["item_id"]]
    show_table(shown, column_config={
        "at": "When (UTC)", "what": "What", "detail": st.column_config.TextColumn("Detail", width="large"),
        "run_id": st.column_config.LinkColumn("Run", display_text=r"id=(.*)"),
        "item_id": st.column_config.LinkColumn("Item", display_text=r"id=(.*)"), "by": "By"})
