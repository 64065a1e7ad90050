"""Runledger's Streamlit app: page config, sign-in, navigation and the shared sidebar. Nothing else.

The workspace and the live engine are opened once per server process (``ui.runtime``); every page is a
URL, listed in ``core.links.PAGES``.
"""

from __future__ import annotations

import base64

import streamlit as st

from core.links import DEFAULT_PAGE, PAGES
from store.errors import StoreError
from ui.runtime import open_engine
from ui.server_sockets import serve_without_nagle
from ui.session import current_actor, render_cookie_update
from ui.signin import render_sidebar_member, render_sign_in
from ui.table_widths import PAGE_SIDE_REM

# The 📒 favicon as Streamlit's frontend draws an emoji favicon (an SVG of the glyph), handed over as an ASCII
# data URL: given the emoji itself, Streamlit imports its emoji catalogue to check it, which compiles a
# 5,244-way regex — 0.3–0.8 s of a fresh server's first page (measured 0.84 s on a busy 2-core machine).
FAVICON = "data:image/svg+xml;base64," + base64.b64encode(
    "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 100 100'><text y='.9em' font-size='90'>📒</text></svg>"
    .encode()).decode("ascii")
st.set_page_config(page_title="Runledger", page_icon=FAVICON, layout="wide")
serve_without_nagle()  # 44 ms → ~1 ms per request on a kept-alive connection (ui.server_sockets)
# Streamlit's wide layout keeps 5rem of white on each side of the page: at a 1440 px window with the sidebar
# open the page had 978 px, and the Runs table's nine columns need about 1,020. 2rem gives it 1,076.
st.html(f"<style>[data-testid='stMainBlockContainer'] {{ padding-left: {PAGE_SIDE_REM}rem; "
        f"padding-right: {PAGE_SIDE_REM}rem; }}</style>")


def _page(name: str, default: bool = False, hidden: bool = False) -> st.Page:
    script, url_path, title, icon = PAGES[name]
    return st.Page(script, title=title, icon=icon, url_path=url_path, default=default,
                   visibility="hidden" if hidden else "visible")


try:
    engine = open_engine()
except StoreError as exc:
    st.error(str(exc))
    st.stop()

sections = {
    "Governance → Automation": [_page(DEFAULT_PAGE, default=True), _page("failed"), _page("approvals"),
                                _page("automations"), _page("analytics"),
                                _page("run", hidden=True), _page("item", hidden=True)],
    "Records": [_page("registers"), _page("records"), _page("subject", hidden=True)],
    "Admin": [_page("audit"), _page("members")],
}
actor = current_actor(engine)
if actor is None:  # the URL (page and params) is kept: a shared link opens its view after sign-in
    st.navigation(sections, position="hidden")
    render_cookie_update()
    render_sign_in(engine)
    st.stop()
render_cookie_update()

page = st.navigation(sections)
render_sidebar_member(engine, actor)
page.run()
