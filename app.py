"""Runledger's Streamlit app: page config, sign-in, navigation and the shared sidebar. Nothing else.

The workspace and the live engine are opened once per server process (``ui.runtime``); every page is a
URL, listed in ``core.links.PAGES``.
"""

from __future__ import annotations

import streamlit as st

from store.errors import StoreError
from core.links import DEFAULT_PAGE, PAGES
from ui.runtime import open_engine
from ui.session import current_actor, render_cookie_update
from ui.signin import render_sidebar_member, render_sign_in

st.set_page_config(page_title="Runledger", page_icon="📒", layout="wide")


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
    "Records": [_page("records")],
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
