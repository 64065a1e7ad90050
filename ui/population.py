"""The Run page's comparison with the previous run of the same automation (reporting.population)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core.links import run_link
from core.markup import md_escape
from engine.catalog import UnknownDefinition
from engine.runtime import Engine
from reporting.population import compare_with_previous
from store.views.population import count_population_moves
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


def render_population_flags(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """On the Runs page: the page's scheduled runs whose matched population moved by more than their
    automation's ``policies.population.alert_percent``, each linked to its comparison."""
    thresholds: dict[str, float | None] = {}
    for d in {r["definition_id"] for r in rows}:
        try:
            thresholds[d] = engine.catalog.latest(d)[0].population_alert_percent
        except UnknownDefinition:
            thresholds[d] = None
    flagged = []
    with engine.ws.read() as conn:
        for r in rows:
            limit = thresholds.get(r["definition_id"])
            if limit is None or r["trigger_kind"] != "schedule":
                continue
            moves = count_population_moves(conn, r)
            if moves is None:
                continue
            _, before, entered, left = moves
            moved = 100.0 * (entered + left) / max(before, 1)
            if moved > limit:
                flagged.append(f"[{r['run_id']}]({run_link(r['run_id']).href}) {md_escape(r['definition_id'])}: "
                               f"+{entered:,} / −{left:,} against {before:,} ({moved:.0f}% > {limit:g}%)")
    if flagged:
        st.warning("Matched population moved more than its automation allows: " + "; ".join(flagged),
                   icon=":material/compare_arrows:")
