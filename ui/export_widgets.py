"""Download controls for the analytics exports and the audit committee brief.

Chart and table files are generated when the member clicks (Streamlit calls the ``data`` callable then),
so the audit entry says when a file was really taken, not when a page was drawn. Members without the
``export`` permission see the controls disabled with the reason; the engine refuses them anyway.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from core.roles import PERMISSION_ROLES, Actor
from reporting.analytics import Analytics
from reporting.exports import CHART_FORMATS, MIME, TABLE_FORMATS, export_chart, export_file_name, export_table
from store.workspace import Workspace

FORMAT_LABELS = {"png": "PNG", "svg": "SVG", "pdf": "PDF", "csv": "CSV", "xlsx": "Excel (XLSX)",
                 "parquet": "Parquet"}


def export_refusal(actor: Actor) -> str | None:
    """Why this member may not export, or None."""
    if actor.may("export"):
        return None
    return (f"Exports need the {' or '.join(PERMISSION_ROLES['export'])} role; "
            f"you have {', '.join(sorted(actor.roles))}.")


def _downloads(key: str, label: str, formats: tuple[str, ...], name: Callable[[str], str],
               make: Callable[[str], Callable[[], bytes]], actor: Actor) -> None:
    refusal = export_refusal(actor)
    with st.popover(label, icon=":material/download:", disabled=refusal is not None, help=refusal):
        st.caption("Each file states its provenance (workspace, period, filters, when, by whom, audit chain "
                   "head); the export is recorded in the audit log.")
        for fmt in formats:
            st.download_button(FORMAT_LABELS[fmt], data=make(fmt), file_name=name(fmt), mime=MIME[fmt],
                               on_click="ignore", key=f"{key}-{fmt}", disabled=refusal is not None)


def chart_downloads(ws: Workspace, actor: Actor, analytics: Analytics, chart: str) -> None:
    _downloads(f"chart-{chart}", "Export chart", CHART_FORMATS,
               lambda fmt: export_file_name(chart, analytics, fmt),
               lambda fmt: lambda: export_chart(ws, actor, analytics, chart, fmt).content, actor)


def table_downloads(ws: Workspace, actor: Actor, analytics: Analytics, table: str) -> None:
    _downloads(f"table-{table}", "Export table", TABLE_FORMATS,
               lambda fmt: export_file_name(table, analytics, fmt),
               lambda fmt: lambda: export_table(ws, actor, analytics, table, fmt).content, actor)


def subject_story_downloads(ws: Workspace, actor: Actor, kind: str, subject_id: str) -> None:
    from reporting.subject_story import STORY_FORMATS, export_subject_story, story_file_name

    _downloads(f"subject-{kind}-{subject_id}", "Export this story", STORY_FORMATS,
               lambda fmt: story_file_name(kind, subject_id, fmt),
               lambda fmt: lambda: export_subject_story(ws, actor, kind, subject_id, fmt).content, actor)
