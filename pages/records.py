"""The owning modules' records (findings, evidence requests, assessments, lifecycle instances) and the
registers' subjects — each traced to the run items that produced or touched it, both ways."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.links import Link, item_link, query_params_dict, record_link, run_link, subject_link
from core.markup import md_repr, md_value
from core.periods import last_param
from store.records import read_record
from store.registers import read_registers
from store.subjects import read_subject
from store.views.oversight import RECORD_MODULES, read_items_for_subject, read_records
from ui.runtime import current_engine
from ui.session import actor_or_stop
from ui.tables import show_table
from ui.text import fmt_time, pretty_json

engine = current_engine()
actor_or_stop()
params = query_params_dict(st.query_params)
module, register, record_id = last_param(params, "module"), last_param(params, "register"), last_param(params, "id")
LABELS = {"findings": "Findings", "evidence_requests": "Evidence requests", "assessments": "Assessments",
          "lifecycle_instances": "Lifecycle instances"}


def _fields(row: dict) -> None:
    show_table(pd.DataFrame({"Field": list(row), "Value": [fmt_time(v) if hasattr(v, "tzinfo") else
                                                             ("" if v is None else str(v)) for v in row.values()]}))


def _items_table(rows: list[dict]) -> None:
    show_table(pd.DataFrame([{"Item": item_link(r["item_id"]).href, "Run": run_link(r["run_id"]).href,
                                "Definition": r["definition_id"], "Action": r["action"], "Outcome": r["outcome"],
                                "Triggered": fmt_time(r["triggered_at"])} for r in rows]),
                 column_config={"Item": st.column_config.LinkColumn(display_text=r"id=(.*)"),
                                "Run": st.column_config.LinkColumn(display_text=r"id=(.*)")})


def _back() -> None:
    st.page_link(Link("records").page, label="All records", icon=":material/folder_open:")


with engine.ws.read() as conn:
    registers = read_registers(conn)
if register:  # one subject of a register
    if register not in registers:
        st.title("Records")
        st.error(f"There is no register {md_repr(register)}. Registers: {', '.join(sorted(registers))}.")
        _back()
        st.stop()
    with engine.ws.read() as conn:
        row = read_subject(conn, register, record_id or "")
        touched = read_items_for_subject(conn, register, record_id or "")
    st.title(f"{register} {md_value(record_id or '')}")
    if row is None:
        st.error(f"There is no {register} record {md_repr(record_id)} in this workspace. It may have been removed from "
                 "the register; the run items below still show it as it was when they ran.")
    else:
        st.caption("As the register holds it now; each run item keeps its own snapshot from execution time.")
        _fields(row)
    st.subheader("Run items that touched it")
    _items_table(touched) if touched else st.caption("No run item has touched it.")
    _back()
    st.stop()

if module and record_id:  # one record of an owning module
    if module not in RECORD_MODULES:
        st.title("Records")
        st.error(f"There is no module {md_repr(module)}. Modules: {', '.join(RECORD_MODULES)}.")
        _back()
        st.stop()
    with engine.ws.read() as conn:
        rec = read_record(conn, module, record_id)
    st.title(f"{LABELS[module][:-1] if LABELS[module].endswith('s') else LABELS[module]} {md_value(record_id)}")
    if rec is None:
        st.error(f"There is no {module} record {md_repr(record_id)} in this workspace. Check the link; record ids come "
                 "from the run item that created them.")
        _back()
        st.stop()
    details = rec.pop("details", None)
    _fields(rec)
    if details:
        with st.expander("Details"):
            st.code(pretty_json(details), language="json", wrap_lines=True)
    st.subheader("Produced by")
    il = item_link(rec["source_item_id"])
    st.page_link(il.page, query_params=il.params, label=f"Run item {rec['source_item_id']}",
                 icon=":material/description:")
    st.caption(f"Idempotency key {rec['idempotency_key']}: the one key every attempt of that item carried.")
    _back()
    st.stop()

st.title("Records")
st.caption("What the automations created in the owning modules. Each record links to the run item that made it.")
if module and module not in RECORD_MODULES:
    st.warning(f"Unknown module {md_repr(module)}; showing findings.")
    module = None
tab = st.segmented_control("Module", list(RECORD_MODULES), default=module or "findings",
                           format_func=lambda m: LABELS.get(m, m))
tab = tab or "findings"
if tab != (module or "findings"):
    st.query_params.from_dict({"module": tab})
    st.rerun()
with engine.ws.read() as conn:
    recs = read_records(conn, tab)
if not recs:
    st.info(f"No {LABELS[tab].lower()} yet: they appear when an automation's action creates one.")
    st.stop()
key = {"findings": "finding_id", "evidence_requests": "request_id", "assessments": "assessment_id",
       "lifecycle_instances": "instance_id"}[tab]
frame = pd.DataFrame([{"Record": record_link(f"{tab}:{r[key]}").href,  # type: ignore[union-attr]  # module:id always links
                       "Title": r["title"], "Subject": subject_link(r["subject_kind"], r["subject_id"]).href,
                       "Created": fmt_time(r["created_at"]), "Item": item_link(r["source_item_id"]).href}
                      for r in recs])
show_table(frame, column_config={
    "Record": st.column_config.LinkColumn(display_text=r"id=(.*)$"),
    "Subject": st.column_config.LinkColumn(display_text=r"id=(.*)$"),
    "Item": st.column_config.LinkColumn("Produced by item", display_text=r"id=(.*)$")})
st.caption(f"The newest {len(recs):,} {LABELS[tab].lower()}.")
