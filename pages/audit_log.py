"""The audit log: every change and member action, hash-chained. Filter it, read one entry, verify the
chain (intact, or the first broken entry)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import streamlit as st

from core.links import audit_link, query_params_dict
from core.markup import md_value
from core.periods import last_param
from store.views.oversight import AuditFilter, read_audit_entry, read_audit_page, read_audit_vocabulary
from ui.runtime import current_engine
from ui.session import actor_or_stop
from ui.tables import show_table
from ui.text import fmt_time, pretty_json

engine = current_engine()
actor_or_stop()
params = query_params_dict(st.query_params)
st.title("Audit log")
st.caption("Append-only and hash-chained: each entry carries the hash of the one before it, so an edit "
           "anywhere breaks the chain from that entry on.")

if st.button("Verify the chain", icon=":material/verified:"):
    verdict = engine.ws.verify_audit()
    if verdict.intact:
        st.success(f"Intact: {verdict.entries:,} entries verified; head hash {verdict.head_hash}.")
    else:
        st.error(f"Broken at entry {verdict.first_broken_seq}: {verdict.problem} "
                 f"({verdict.entries:,} entries verified before it).")
        bl = audit_link(seq=verdict.first_broken_seq)
        st.page_link(bl.page, query_params=bl.params, label=f"Open entry {verdict.first_broken_seq}")

# Sentences about unusable params; kept across the rerun that rewrites the URL without them.
problems: list[str] = st.session_state.pop("audit_log_problems", [])


def warn(sentence: str) -> None:
    problems.append(sentence)


seq_text = last_param(params, "seq")
seq: int | None = None
if seq_text:
    try:
        seq = int(seq_text)
    except ValueError:
        seq = None
        warn(f"'seq={md_value(seq_text)}' is not an entry number; showing the list.")
    if seq is not None:
        with engine.ws.read() as conn:
            entry = read_audit_entry(conn, seq)
        if entry is None:
            st.error(f"There is no audit entry {seq}. Entry numbers run from 1 upwards; pick one from the list.")
        else:
            st.subheader(f"Entry {seq}: {entry['event']}")
            show_table(pd.DataFrame({"Field": ["occurred at", "actor", "entity", "previous hash", "hash"],
                                       "Value": [fmt_time(entry["occurred_at"]), entry["actor"],
                                                 f"{entry['entity_kind']} {entry['entity_id']}",
                                                 entry["prev_hash"], entry["hash"]]}))
            st.code(pretty_json(entry["payload"]), language="json", wrap_lines=True)
        back = audit_link()
        st.page_link(back.page, query_params=back.params, label="Back to the list")
        st.stop()

with engine.ws.read() as conn:
    vocab = read_audit_vocabulary(conn)


def _pick(label: str, key: str, options: list[str], col: Any) -> str | None:
    current = last_param(params, key)
    choices = [None, *options] + ([current] if current and current not in options else [])
    return col.selectbox(label, choices, index=choices.index(current),
                         format_func=lambda v: v or "Any")


c = st.columns(4)
actor_f = _pick("Actor", "actor", vocab["actor"], c[0])
event_f = _pick("Event", "event", vocab["event"], c[1])
kind_f = _pick("Entity kind", "entity_kind", vocab["entity_kind"], c[2])
entity_f = c[3].text_input("Entity id", value=last_param(params, "entity_id") or "").strip() or None
d1, d2, _ = st.columns([1, 1, 2])


def _date(key: str) -> dt.date | None:
    text = last_param(params, key)
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        warn(f"'{key}={md_value(text)}' is not a date like 2026-07-01; it was ignored.")
        return None


start, end = _date("from"), _date("to")
start_f = d1.date_input("From", value=start)
end_f = d2.date_input("To (included)", value=end)
wanted = {"actor": actor_f, "event": event_f, "entity_kind": kind_f, "entity_id": entity_f,
          "from": start_f.isoformat() if start_f else None, "to": end_f.isoformat() if end_f else None}
current = {k: last_param(params, k) for k in wanted}
if wanted != current:
    st.session_state["audit_log_problems"] = problems
    st.query_params.from_dict({k: v for k, v in wanted.items() if v})
    st.rerun()
for sentence in dict.fromkeys(problems):
    st.warning(sentence)

utc = dt.UTC
f = AuditFilter(actor=actor_f, event=event_f, entity_kind=kind_f, entity_id=entity_f,
                start=dt.datetime.combine(start_f, dt.time(), utc) if start_f else None,
                end=dt.datetime.combine(end_f + dt.timedelta(days=1), dt.time(), utc) if end_f else None)
before_text = last_param(params, "before")
before = int(before_text) if before_text and before_text.isdigit() else None
with engine.ws.read() as conn:
    rows, next_before = read_audit_page(conn, f, before_seq=before)
if not rows:
    st.info("No audit entries match these filters. Clear a filter to see more.")
    st.stop()
show_table(pd.DataFrame([{"Seq": audit_link(seq=r["seq"]).href, "When": fmt_time(r["occurred_at"]),
                            "Actor": r["actor"], "Event": r["event"], "Entity kind": r["entity_kind"],
                            "Entity id": r["entity_id"]} for r in rows]),
             column_config={"Seq": st.column_config.LinkColumn("Entry", display_text=r"seq=(\d+)")})
nav = st.columns([1, 1, 6])
if before and nav[0].button("Newest", icon=":material/first_page:"):
    st.query_params.from_dict({k: v for k, v in wanted.items() if v})
    st.rerun()
if next_before and nav[1].button("Older", icon=":material/navigate_next:"):
    st.query_params.from_dict({**{k: v for k, v in wanted.items() if v}, "before": str(next_before)})
    st.rerun()
