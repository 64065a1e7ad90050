"""Registers: the organization's subjects as declared in its registers folder — each register's fields, row
count, last import and the automations over it; one register's versions, imports and subjects (each linked
to the run items that acted on it); and, for operators, importing a file into it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from core.links import Link, definition_link, query_params_dict, subject_link
from core.markup import md_escape, md_repr, md_value
from core.periods import last_param
from engine.commands import CommandRefused, import_register
from engine.registers import definitions_using
from store.registers import read_register_rejections
from store.views.registers import (
    SUBJECT_PAGE,
    read_imports_of,
    read_register_summaries,
    read_register_versions_of,
    read_subjects_page,
)
from ui.runtime import current_engine
from ui.session import actor_or_stop
from ui.tables import show_table
from ui.text import fmt_time, show_command_result

engine = current_engine()
actor = actor_or_stop()
params = query_params_dict(st.query_params)
register_id = last_param(params, "id")
with engine.ws.read() as conn:
    summaries = {s["id"]: s for s in read_register_summaries(conn)}
    rejections = read_register_rejections(conn)


def _last(row: dict | None) -> str:
    return "never" if row is None else f"{fmt_time(row['imported_at'])} · {row['source']} · {row['actor']}"


if not register_id:
    st.title("Registers")
    st.caption(f"The subjects automations act on, declared as YAML files in {md_value(str(engine.registers_dir))}; "
               "each load is kept as evidence: who loaded what, when, from which file, with its SHA-256.")
    if rejections:
        with st.expander(f"Rejected register files ({len(rejections)})", icon=":material/error:"):
            for r in rejections:
                st.markdown(f"**{md_value(r['source_path'])}** · {fmt_time(r['rejected_at'])}")
                st.text(r["errors"])
    if not summaries:
        st.info("No register is declared yet. Put a YAML file per register in the registers folder (README, "
                "'Start a real workspace'); the engine takes it when it next loads.")
        st.stop()
    show_table(pd.DataFrame([{
        "Register": Link("registers", {"id": s["id"]}).href, "Title": s["title"], "Version": s["version"],
        "Fields": s["fields"], "Subjects": s["subjects"], "Withdrawn": s["withdrawn"],
        "Last import": _last(s["last_import"]), "Used by": ", ".join(definitions_using(engine.catalog, s["id"]))
        or "—"} for s in summaries.values()]),
        column_config={"Register": st.column_config.LinkColumn(display_text=r"id=(.*)$")})
    st.stop()

if register_id not in summaries:
    st.title("Registers")
    st.error(f"There is no register {md_repr(register_id)}. Registers: {', '.join(summaries) or 'none declared'}.")
    st.page_link(Link("registers").page, label="All registers", icon=":material/table_view:")
    st.stop()

summary = summaries[register_id]
reg = summary["register"]
spec = reg.spec
st.title(spec.title)
st.caption(f"Register {md_value(spec.id)}, version {reg.version}; key {md_value(spec.key)}, shown by "
           f"{md_value(spec.label)}." + (f" {md_value(spec.description.strip())}" if spec.description else ""))
show_command_result("registers_result")
m = st.columns(3)
m[0].metric("Subjects", f"{summary['subjects']:,}")
m[1].metric("Withdrawn", f"{summary['withdrawn']:,}", help="Keys a replacing import no longer carried: kept for "
            "history, never matched again.")
last = summary["last_import"]
m[2].metric("Last import", f"{last['imported_at']:%Y-%m-%d %H:%M}" if last else "never",
            help=f"{last['import_id']} from {last['source']} by {last['actor']}" if last else None)

using = definitions_using(engine.catalog, spec.id)
st.subheader("Automations over it")
if using:
    for def_id in using:
        dl = definition_link(def_id)
        st.page_link(dl.page, query_params=dl.params, label=def_id, icon=":material/schedule:")
else:
    st.caption("No automation's condition is over this register yet.")

left, right = st.columns(2)
with left:
    st.subheader("Fields")
    show_table(pd.DataFrame([{"Field": name, "Type": ftype,
                              "Role": "key" if name == spec.key else "required" if name in spec.required else "",
                              "Raises": ", ".join(n for n, e in spec.events.items() if e.field == name)}
                             for name, ftype in spec.fields.items()]))
with right:
    st.subheader("Watched changes")
    if spec.events:
        for name, e in spec.events.items():
            st.markdown(f"- {md_value(name)}: {md_value(e.describe())}")
    else:
        st.caption("None declared: imports change subjects without raising events.")
    st.subheader("Source")
    st.markdown(md_value(spec.source.described) if spec.source else "Imported by members (no scheduled source).")

if actor.may("import_subjects"):
    with st.expander("Import a file", icon=":material/upload_file:"):
        upload = st.file_uploader("CSV, Parquet, XLSX or JSON lines", type=["csv", "parquet", "xlsx", "jsonl"],
                                  key="register_upload")
        mode = st.radio("Mode", ["upsert", "replace"], horizontal=True,
                        captions=["add new keys and update changed rows",
                                  "also withdraw keys missing from the file"])
        skip = st.checkbox("Load the good rows and list the refused ones (default: refuse the whole file)")
        extra = st.checkbox("Ignore columns the register does not declare")
        if st.button("Import", type="primary", disabled=upload is None) and upload is not None:
            with tempfile.TemporaryDirectory() as folder:  # the audit names the file as uploaded
                path = Path(folder) / Path(upload.name).name
                path.write_bytes(upload.getvalue())
                try:
                    report = import_register(engine, actor, spec.id, path, mode=mode, skip_bad_rows=skip,
                                             ignore_extra_columns=extra)
                    st.session_state["registers_result"] = ("ok", "  \n".join(md_escape(x) for x in report.lines()))
                except CommandRefused as exc:
                    st.session_state["registers_result"] = ("error", f"Not imported: {md_escape(str(exc))}")
            st.rerun()

with engine.ws.read() as conn:
    imports = read_imports_of(conn, spec.id)
    versions = read_register_versions_of(conn, spec.id)
    wanted = last_param(params, "page") or "0"
    page = min(int(wanted), 10**9) if wanted.isdigit() else 0  # a huge number is a page past the end
    subjects = read_subjects_page(conn, reg, offset=page * SUBJECT_PAGE)

st.subheader("Imports")
if imports:
    show_table(pd.DataFrame([{"Import": i["import_id"], "When": fmt_time(i["imported_at"]), "By": i["actor"],
                              "From": f"{i['origin']}: {i['source']}", "Mode": i["mode"], "Added": i["added"],
                              "Changed": i["changed"], "Unchanged": i["unchanged"], "Withdrawn": i["withdrawn"],
                              "Refused": i["refused"], "Events": i["events"], "SHA-256": i["sha256"] or "—"}
                             for i in imports]))
else:
    st.caption("Nothing loaded yet.")

st.subheader("Subjects")
if subjects:
    frame = pd.DataFrame([{spec.key: subject_link(spec.id, str(r[spec.key])).href,
                           **{f: r[f] for f in spec.fields if f != spec.key},
                           "Loaded": fmt_time(r["loaded_at"]),
                           "Withdrawn": fmt_time(r["withdrawn_at"]) if r["withdrawn_at"] else ""} for r in subjects])
    show_table(frame, column_config={spec.key: st.column_config.LinkColumn(display_text=r"id=(.*)$")})
    first = page * SUBJECT_PAGE + 1
    st.caption(f"Subjects {first:,}–{first + len(subjects) - 1:,} of {summary['subjects'] + summary['withdrawn']:,} "
               "by key; each opens the run items that acted on it.")
    nav = st.columns(2)
    if page > 0:
        nav[0].page_link(Link("registers").page, query_params={"id": spec.id, "page": str(page - 1)},
                         label="Previous", icon=":material/chevron_left:")
    if len(subjects) == SUBJECT_PAGE:
        nav[1].page_link(Link("registers").page, query_params={"id": spec.id, "page": str(page + 1)},
                         label="Next", icon=":material/chevron_right:")
else:
    st.info("No subjects on this page." if page else "No subjects yet: import a file.")

st.subheader("Versions")
show_table(pd.DataFrame([{"Version": v["version"], "Taken": fmt_time(v["created_at"]), "By": v["authored_by"],
                          "SHA-256": v["content_hash"]} for v in versions]))
st.page_link(Link("registers").page, label="All registers", icon=":material/table_view:")
