"""The signed-in member of this browser session, and when that session ends.

A session ends after ``RUNLEDGER_SESSION_IDLE_MINUTES`` (default 30) without a page view, or
``RUNLEDGER_SESSION_MAX_HOURS`` (default 12) after sign-in, whichever comes first; the member's roles are
re-read on every page view, so a role taken away applies at once.
"""

from __future__ import annotations

import datetime as dt
import os
import time

import streamlit as st

from engine.authz import Actor, UnknownMember, load_actor, sign_in, sign_out
from engine.runtime import Engine

_KEY = "runledger_session"


def _idle_limit() -> float:
    return float(os.environ.get("RUNLEDGER_SESSION_IDLE_MINUTES", "30")) * 60


def _max_age() -> float:
    return float(os.environ.get("RUNLEDGER_SESSION_MAX_HOURS", "12")) * 3600


def start_session(engine: Engine, member_id: str, password: str) -> Actor:
    """Raises ``SignInRefused`` (already audited) when the pair does not match."""
    actor = sign_in(engine.ws, member_id, password)
    now = time.time()
    st.session_state[_KEY] = {"member_id": actor.member_id, "signed_in": now, "seen": now}
    return actor


def end_session(engine: Engine, reason: str = "signed out") -> None:
    state = st.session_state.pop(_KEY, None)
    if state:
        try:
            sign_out(engine.ws, load_actor(engine.ws, state["member_id"]), reason)
        except UnknownMember:
            pass


def current_actor(engine: Engine) -> Actor | None:
    """The member of this session, or None (never signed in, expired, or deactivated since)."""
    state = st.session_state.get(_KEY)
    if not state:
        return None
    now = time.time()
    if now - state["seen"] > _idle_limit() or now - state["signed_in"] > _max_age():
        end_session(engine, "session expired")
        st.session_state["runledger_notice"] = "Your session expired; sign in again to go on."
        return None
    try:
        actor = load_actor(engine.ws, state["member_id"])
    except UnknownMember:
        st.session_state.pop(_KEY, None)
        st.session_state["runledger_notice"] = "Your membership is no longer active."
        return None
    state["seen"] = now
    return actor


def session_expires_at() -> dt.datetime | None:
    state = st.session_state.get(_KEY)
    if not state:
        return None
    at = min(state["seen"] + _idle_limit(), state["signed_in"] + _max_age())
    return dt.datetime.fromtimestamp(at, dt.timezone.utc)


def actor_or_stop() -> Actor:
    """For pages: the signed-in member (app.py signs in before any page runs)."""
    from ui.runtime import current_engine
    actor = current_actor(current_engine())
    if actor is None:
        st.warning("Sign in to see this page.")
        st.stop()
    return actor
