"""The Run page's comparison with the previous run of the same automation (reporting.population)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core.links import run_link
from core.markup import md_escape
from reporting.population import compare_with_previous
from store.workspace import Workspace
from ui.tables import show_table


def render_population(ws: Workspace, run: dict[str, Any]) -> None:
    compared = compare_with_previous(ws, run)
    if compared is None:
        return
    change, version = compared
    prev = run_link(change.previous_run_id or "")
    title = (f"Compared with the previous run: {change.entered_total:,} entered, {change.left_total:,} left, "
             f"{change.stayed:,} stayed")
    with st.expander(title, icon=":material/compare_arrows:", expanded=bool(change.moved)):
        st.markdown(f"This run matched **{change.matched:,}**; the previous run, [{change.previous_run_id}]"
                    f"({prev.href}) (version {change.previous_version}), matched **{change.previous_matched:,}**.")
        if version:
            diff = version.matches - version.previous_matches
            st.info(f"The definition changed between the two runs: on the same data (the workspace now, at this "
                    f"run's trigger time) version {version.version} matches {version.matches:,} and version "
                    f"{version.previous_version} would have matched {version.previous_matches:,} "
                    f"({'+' if diff >= 0 else ''}{diff:,}).")
        for name, moved, total in (("Entered", change.entered, change.entered_total),
                                   ("Left", change.left, change.left_total)):
            if not total:
                continue
            st.markdown(f"**{name}** ({total:,}" + (f"; the first {len(moved):,} explained)" if len(moved) < total
                                                    else ")"))
            show_table(pd.DataFrame([{"Subject": m.subject_id, "Name": m.label, "What changed": "; ".join(m.why)}
                                     for m in moved]))
        if not change.moved:
            st.caption(md_escape("The same subjects as the previous run."))
