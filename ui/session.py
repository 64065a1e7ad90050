"""The signed-in member of this browser, and when that session ends.

A session ends after ``RUNLEDGER_SESSION_IDLE_MINUTES`` (default 30) without a page view, or
``RUNLEDGER_SESSION_MAX_HOURS`` (default 12) after sign-in, whichever comes first; the member's roles are
re-read on every page view, so a role taken away applies at once. A session also ends when the member is
deactivated or their password is reset or changed: it records the member's session epoch at sign-in, and
every page view (a new tab's cookie included) compares it with the member's epoch now
(``engine.authz.resume_session``).

Streamlit keeps state per browser tab, yet a run link opened in a new tab must not ask for the password
again. So a sign-in also creates a random session token, kept server-side (in this process only: a
restart signs everyone out) and given to the browser as a ``SameSite=Strict`` cookie; a new tab presents
it and resumes the same session, with the same expiry.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from typing import Any

import streamlit as st

from core.roles import Actor
from engine.authz import SessionEnded, UnknownMember, load_actor, resume_session, session_epoch, sign_in, sign_out
from engine.runtime import Engine
from engine.settings import number_from_env

_KEY = "runledger_session"
COOKIE = "runledger_session"
_COOKIE_OP = "runledger_cookie_op"


class _SessionStore:
    """token → {member_id, signed_in, seen}; shared by every tab of this server process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sessions: dict[str, dict[str, Any]] = {}


@st.cache_resource
def _store() -> _SessionStore:
    return _SessionStore()


def _idle_limit() -> float:
    return number_from_env("RUNLEDGER_SESSION_IDLE_MINUTES", 30, "minutes") * 60


def _max_age() -> float:
    return number_from_env("RUNLEDGER_SESSION_MAX_HOURS", 12, "hours") * 3600


def start_session(engine: Engine, member_id: str, password: str) -> Actor:
    """Raises ``SignInRefused`` (already audited) when the pair does not match."""
    actor = sign_in(engine.ws, member_id, password)
    _begin(engine, actor, "password")
    return actor


def _begin(engine: Engine, actor: Actor, channel: str) -> None:
    now = time.time()
    token = secrets.token_urlsafe(32)
    state = {"member_id": actor.member_id, "signed_in": now, "seen": now, "token": token,
             "epoch": session_epoch(engine.ws, actor.member_id), "channel": channel}
    with _store().lock:
        _store().sessions[token] = state
    st.session_state[_KEY] = state
    st.session_state[_COOKIE_OP] = token


def start_sso_session(engine: Engine, actor: Actor) -> None:
    """A member the identity provider vouched for and ``engine.sso`` admitted (audited there)."""
    _begin(engine, actor, "sso")


def session_channel() -> str | None:
    """How this session signed in: ``password`` or ``sso`` (None when nobody is signed in)."""
    state = st.session_state.get(_KEY)
    return state.get("channel", "password") if state else None


def carry_on_under(epoch: int) -> None:
    """This session changed its own password: it goes on under the new epoch; the member's others end."""
    state = st.session_state.get(_KEY)
    if state:
        state["epoch"] = epoch


def end_session(engine: Engine, reason: str = "signed out") -> None:
    state = st.session_state.pop(_KEY, None)
    st.session_state[_COOKIE_OP] = ""
    if state:
        with _store().lock:
            _store().sessions.pop(state.get("token", ""), None)
        try:
            sign_out(engine.ws, load_actor(engine.ws, state["member_id"]), reason, channel=_audit_channel(state))
        except UnknownMember:
            pass


def current_actor(engine: Engine) -> Actor | None:
    """The member of this session, or None (never signed in, expired, or deactivated since)."""
    state = st.session_state.get(_KEY) or _resume_from_cookie()
    if not state:
        return None
    now = time.time()
    if now - state["seen"] > _idle_limit() or now - state["signed_in"] > _max_age():
        end_session(engine, "session expired")
        st.session_state["runledger_notice"] = "Your session expired; sign in again to go on."
        return None
    try:
        actor = resume_session(engine.ws, state["member_id"], int(state.get("epoch", 0)))
    except SessionEnded as ended:
        _forget(state)
        sign_out(engine.ws, Actor(state["member_id"], frozenset()), f"session ended: {ended.reason}",
                 channel=_audit_channel(state))
        st.session_state["runledger_notice"] = str(ended)
        return None
    state["seen"] = now
    return actor


def _audit_channel(state: dict[str, Any]) -> str:
    return "sso" if state.get("channel") == "sso" else "web"


def _forget(state: dict[str, Any]) -> None:
    """End a session that may not go on, in every tab of this browser (its token no longer resumes)."""
    st.session_state.pop(_KEY, None)
    st.session_state[_COOKIE_OP] = ""
    with _store().lock:
        _store().sessions.pop(state.get("token", ""), None)


def _resume_from_cookie() -> dict[str, Any] | None:
    """A new tab of a signed-in browser: the same server-side session (the same dict, so one expiry)."""
    try:
        token = st.context.cookies.get(COOKIE)
    except Exception:  # noqa: BLE001 - no request context (tests, bare mode): nothing to resume
        return None
    if not token:
        return None
    with _store().lock:
        state = _store().sessions.get(token)
    if state is not None:
        st.session_state[_KEY] = state
    return state


def render_cookie_update() -> None:
    """Give the browser its session cookie after sign-in, or take it away after sign-out (our own script;
    the token is URL-safe base64, so it cannot break out of the string)."""
    token = st.session_state.pop(_COOKIE_OP, None)
    if token is None:
        return
    max_age = int(_max_age()) if token else 0
    st.html(f"<script>document.cookie = '{COOKIE}={token}; path=/; max-age={max_age}; SameSite=Strict';"
            "</script>", unsafe_allow_javascript=True, width=1)


def session_expires_at() -> dt.datetime | None:
    state = st.session_state.get(_KEY)
    if not state:
        return None
    at = min(state["seen"] + _idle_limit(), state["signed_in"] + _max_age())
    return dt.datetime.fromtimestamp(at, dt.UTC)


def actor_or_stop() -> Actor:
    """For pages: the signed-in member (app.py signs in before any page runs)."""
    from ui.runtime import current_engine
    actor = current_actor(current_engine())
    if actor is None:
        st.warning("Sign in to see this page.")
        st.stop()
    return actor
