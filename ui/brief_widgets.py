"""The audit committee brief on the analytics page: generate (with a progress bar), then download.

The brief takes seconds (charts render through a browser), so it is generated on request, not on every
page view; the generated file stays in this browser session until the period changes.
"""

from __future__ import annotations

import streamlit as st

from core.periods import AnalyticsPeriod
from core.roles import Actor
from engine.authz import NotAuthorized
from store.workspace import Workspace
from ui.export_widgets import export_refusal

_KEY = "runledger_brief"


def render_brief(ws: Workspace, actor: Actor, period: AnalyticsPeriod) -> None:
    st.subheader("Audit committee brief")
    st.caption("A PDF for this period: headline figures, one section per automation, the integrity statement "
               "(what “0 unintended consequences” means, checked against the data), the charts, and every "
               "run with its link. The brief states its provenance and its generation is audited.")
    refusal = export_refusal(actor)
    if st.button("Generate the brief (PDF)", type="primary", disabled=refusal is not None, help=refusal,
                 icon=":material/picture_as_pdf:"):
        from core.base_url import base_url_from_page
        from reporting.brief import generate_brief

        bar = st.progress(0.0, text="Starting…")
        # The brief's run links open this app, at the address this browser reached it by.
        here = base_url_from_page(st.context.url, st.get_option("server.baseUrlPath"))
        try:
            brief = generate_brief(ws, actor, period, progress=lambda f, msg: bar.progress(min(max(f, 0.0), 1.0),
                                                                                          text=msg), base_url=here)
        except NotAuthorized as exc:
            bar.empty()
            st.error(str(exc))
            return
        bar.progress(1.0, text="Done.")
        st.session_state[_KEY] = (period, brief)
    held = st.session_state.get(_KEY)
    if held and held[0] == period:
        brief = held[1]
        st.success(f"Generated {brief.file_name} ({len(brief.content) / 1024:,.0f} KiB, SHA-256 "
                   f"{brief.sha256[:16]}…); recorded in the audit log.")
        st.download_button("Download the brief", data=brief.content, file_name=brief.file_name,
                           mime=brief.mime, on_click="ignore", icon=":material/download:")
