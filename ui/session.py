"""The signed-in member of this browser, and when that session ends.

The session itself is kept in the workspace (``engine.sessions``), so any app replica serves it, a restarted
one included, and signing out ends it on all of them. It ends after ``RUNLEDGER_SESSION_IDLE_MINUTES``
(default 30) without a page view, or ``RUNLEDGER_SESSION_MAX_HOURS`` (default 12) after sign-in, whichever
comes first; the member's roles are re-read on every page view, so a role taken away applies at once; and
it ends when the member is deactivated or their password is reset or changed.

Streamlit keeps state per browser tab, yet a run link opened in a new tab (or served by another replica)
must not ask for the password again. So a sign-in gives the browser a random session token as a
``SameSite=Strict`` cookie; a new tab presents it and resumes the same session, with the same expiry. This
tab holds the token in ``st.session_state``, and every page view resumes the session from the workspace
(one read, one write): nothing about it is trusted from this process's memory.
"""

from __future__ import annotations

import datetime as dt

import streamlit as st

from core.roles import Actor
from core.sso import Identity, SsoPolicy
from engine.runtime import Engine
from engine.sessions import (
    LiveSession,
    NoSuchSession,
    SessionEnded,
    SessionSignedOut,
    begin_password_session,
    begin_sso_session,
    end_session_token,
    max_age,
    resume_session_token,
)

_KEY = "runledger_session"  # this tab's token
_LIVE = "runledger_session_live"  # the session as this page view resumed it
# Tokens this tab signed out or found ended. The cookies Streamlit shows (``st.context.cookies``) are those of
# the tab's first request and never change, so the cookie of a session signed out here would be presented
# again on every rerun of this tab.
_GONE = "runledger_session_gone"
COOKIE = "runledger_session"
_COOKIE_OP = "runledger_cookie_op"


def start_session(engine: Engine, member_id: str, password: str) -> Actor:
    """Raises ``SignInRefused`` (already audited) when the pair does not match."""
    actor, token = begin_password_session(engine.ws, member_id, password)
    _hold(token)
    return actor


def start_sso_session(engine: Engine, identity: Identity, policy: SsoPolicy) -> Actor:
    """A member the identity provider vouched for, if ``engine.sso`` admits them (audited there); raises
    ``IdentityRefused`` otherwise."""
    actor, token = begin_sso_session(engine.ws, identity, policy)
    _hold(token)
    return actor


def _hold(token: str) -> None:
    st.session_state[_KEY] = token
    st.session_state.pop(_LIVE, None)
    st.session_state[_COOKIE_OP] = token


def session_token() -> str | None:
    """This tab's session token (for a command that carries the session on: a change of one's password)."""
    return st.session_state.get(_KEY)


def _live() -> LiveSession | None:
    live = st.session_state.get(_LIVE)
    return live if isinstance(live, LiveSession) else None


def session_channel() -> str | None:
    """How this session signed in: ``password`` or ``sso`` (None when nobody is signed in)."""
    live = _live()
    return live.channel if live else None


def session_expires_at() -> dt.datetime | None:
    """When this session ends if left idle from this page view on (or at its maximum age, if sooner)."""
    live = _live()
    return live.expires_at if live else None


def end_session(engine: Engine) -> None:
    """Sign out: the session ends on every replica and in every tab (audited ``member.signed_out``)."""
    token = st.session_state.get(_KEY)
    _forget(token)
    if token:
        end_session_token(engine.ws, token)


def current_actor(engine: Engine) -> Actor | None:
    """The member of this session, or None (never signed in, expired, signed out elsewhere, or deactivated
    since): resumed from the workspace on every page view."""
    held = st.session_state.get(_KEY)
    token = held or _cookie_token()
    if not token:
        return None
    try:
        live = resume_session_token(engine.ws, token)
    except NoSuchSession:
        _forget(token)
        return None
    except SessionSignedOut as ended:
        _forget(token)
        if held:  # this tab was signed in: say why it no longer is (a fresh tab's stale cookie needs no word)
            st.session_state["runledger_notice"] = str(ended)
        return None
    except SessionEnded as ended:  # expired, deactivated, password changed: the notice says which
        _forget(token)
        st.session_state["runledger_notice"] = str(ended)
        return None
    st.session_state[_KEY] = token
    st.session_state[_LIVE] = live
    return live.actor


def _forget(token: str | None) -> None:
    """This tab holds the session no more, and the browser's cookie goes (in every tab of it)."""
    st.session_state.pop(_KEY, None)
    st.session_state.pop(_LIVE, None)
    st.session_state[_COOKIE_OP] = ""
    if token:
        st.session_state.setdefault(_GONE, set()).add(token)


def _cookie_token() -> str | None:
    """A new tab of a signed-in browser (or a page served by another replica): the cookie's token."""
    try:
        token = st.context.cookies.get(COOKIE)
    except Exception:  # noqa: BLE001 - no request context (tests, bare mode): nothing to resume
        return None
    if not token or token in st.session_state.get(_GONE, ()):
        return None
    return str(token)


def render_cookie_update() -> None:
    """Give the browser its session cookie after sign-in, or take it away after sign-out (our own script;
    the token is URL-safe base64, so it cannot break out of the string)."""
    token = st.session_state.pop(_COOKIE_OP, None)
    if token is None:
        return
    max_age_seconds = int(max_age().total_seconds()) if token else 0
    st.html(f"<script>document.cookie = '{COOKIE}={token}; path=/; max-age={max_age_seconds}; SameSite=Strict';"
            "</script>", unsafe_allow_javascript=True, width=1)


def actor_or_stop() -> Actor:
    """For pages: the signed-in member. ``app.py`` resumed the session a moment ago, in this script run, before
    it ran the page (and stops before any page when nobody is signed in): the page takes that member rather
    than reading and writing the session a second time per view."""
    from ui.runtime import current_engine
    engine = current_engine()
    live = _live()
    actor = live.actor if live else current_actor(engine)
    if actor is None:
        st.warning("Sign in to see this page.")
        st.stop()
    return actor
