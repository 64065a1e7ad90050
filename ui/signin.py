"""The sign-in form and the sidebar's who-am-I block. The URL the member opened is kept, so a shared link
lands on its view right after sign-in."""

from __future__ import annotations

import streamlit as st

from core.markup import md_escape
from core.roles import ROLE_PERMISSIONS, Actor
from engine.authz import SignInRefused
from engine.runtime import Engine
from ui.session import end_session, session_channel, session_expires_at, start_session
from ui.sso import admit_identity, provider_sign_out, providers, render_sso_buttons


def render_sign_in(engine: Engine) -> None:
    st.title("Runledger")
    st.caption("The evidence of your governed automations. Sign in with your workspace member name.")
    notice = st.session_state.pop("runledger_notice", None)
    if notice:
        st.info(notice)
    if providers():
        if admit_identity(engine):
            st.rerun()
        render_sso_buttons()
        st.caption("Or with a member name and password:")
    with st.form("sign-in", enter_to_submit=True):
        member = st.text_input("Member", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            start_session(engine, member, password)
        except SignInRefused as exc:
            st.error(str(exc))
            return
        st.rerun()


def render_sidebar_member(engine: Engine, actor: Actor) -> None:
    with st.sidebar:
        st.markdown(f"Signed in as **{md_escape(actor.member_id)}**")
        roles = sorted(actor.roles)
        st.caption("Roles: " + (", ".join(roles) or "none"))
        may = sorted({p for r in roles for p in ROLE_PERMISSIONS.get(r, ())} - {"view"})
        st.caption("May: " + (", ".join(p.replace("_", " ") for p in may) or "view only"))
        expires = session_expires_at()
        if expires:
            st.caption(f"Session ends {expires:%H:%M} UTC if idle")
        if st.button("Sign out", key="sign-out", icon=":material/logout:"):
            through_provider = session_channel() == "sso"
            end_session(engine)
            if through_provider:
                provider_sign_out()  # the browser goes to the provider's end-session page
                st.stop()
            st.rerun()
