"""The Automations page's preview: what an automation would match and do now, or at a chosen time, without
running it — for an admin editing a definition and an approver deciding whether to enable one.

The preview is audited by the command (``definition.previewed``) once per click, never on a mere rerun: its
result is held in the session until the automation, the time or the workspace changes.
"""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import streamlit as st

from core.markup import md_escape
from core.roles import Actor
from engine.commands import AUTOMATION_REFUSALS, DefinitionPreview, preview_definition
from engine.runtime import Engine
from ui.tables import show_table


def render_preview(engine: Engine, actor: Actor, definition_id: str) -> None:
    with st.expander("Preview: what it would match and do, without running it", icon=":material/visibility:"):
        now = engine.clock.now()
        c1, c2, c3 = st.columns([2, 2, 2])
        day = c1.date_input("At date (UTC)", now.date(), key=f"preview-day-{definition_id}")
        time = c2.time_input("Time (UTC)", now.time().replace(second=0, microsecond=0),
                             key=f"preview-time-{definition_id}")
        if c3.button("Preview", icon=":material/visibility:", key=f"preview-{definition_id}"):
            at = dt.datetime.combine(day, time, dt.UTC)
            try:
                st.session_state["automations_preview"] = (definition_id, preview_definition(engine, actor,
                                                                                             definition_id, at))
            except AUTOMATION_REFUSALS as exc:
                st.error(md_escape(exc))
    held = st.session_state.get("automations_preview")  # shown below the form: it stays in view across reruns
    if held and held[0] == definition_id:
        with st.container(border=True):
            _show(held[1])


def _show(p: DefinitionPreview) -> None:
    st.markdown(f"At **{p.at:%Y-%m-%d %H:%M} UTC**, version {p.version} "
                f"({'enabled' if p.enabled else 'disabled'}) would match **{p.matched:,}** "
                f"{md_escape(p.subject_kind)} and exclude **{p.excluded:,}**; for each match: "
                f"{md_escape(', '.join(p.actions))}. Nothing was run; this preview is in the audit log.")
    if p.matched_subjects:
        st.markdown("**Would match**, with each action's parameters as the run would render them")
        show_table(pd.DataFrame([{"Subject": s.subject_id, "Name": s.label,
                                  **{a: json.dumps(params, default=str, ensure_ascii=False)
                                     for a, params in zip(p.actions, s.parameters, strict=True)}}
                                 for s in p.matched_subjects]))
    if p.excluded_by_clause:
        st.markdown("**Excluded**, by the clause that does not hold (a subject may fail several)")
        show_table(pd.DataFrame([{"Clause (reason)": c, "Subjects": n} for c, n in p.excluded_by_clause.items()]))
        show_table(pd.DataFrame([{"Subject": s.subject_id, "Name": s.label,
                                  "Excluded because": "; ".join(s.excluded_by)} for s in p.excluded_subjects]))
    listed = len(p.matched_subjects) + len(p.excluded_subjects)
    if listed < p.matched + p.excluded:
        st.caption(f"Listed: {listed:,} of {p.matched + p.excluded:,} subjects; the counts are whole. "
                   "`python -m engine preview` prints the same.")
