"""Single sign-on in the browser: Streamlit's own ``st.login`` (OpenID Connect through Authlib, configured by
the ``[auth]`` section of ``.streamlit/secrets.toml``), and admitting the identity it brings back.

Streamlit keeps the identity provider's answer in a signed cookie for 30 days; Runledger does not take that
cookie as a sign-in of its own. A Runledger session begins only from an identity the provider vouched for
in the last ``RUNLEDGER_SSO_FRESH_SECONDS`` (default 300): after sign-out, an expired session or a
deactivation, the member goes through the provider again. Who is admitted, with which roles, and the
audit entries are ``engine.sso``'s.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import streamlit as st
from streamlit.runtime.secrets import secrets_singleton

from core.sso import Identity, SsoConfigError
from engine.runtime import Engine
from engine.settings import number_from_env
from engine.sso import IdentityRefused, load_sso_policy
from ui.session import start_sso_session

_REFUSED = "runledger_sso_refused"
_PROVIDER_KEYS = ("client_id", "server_metadata_url")


def providers() -> list[str | None]:
    """The identity providers ``[auth]`` configures: ``[None]`` for one given in ``[auth]`` itself, the
    names of ``[auth.NAME]`` sections otherwise; empty when single sign-on is not configured."""
    if not secrets_singleton.load_if_toml_exists():
        return []
    auth = secrets_singleton.get("auth")
    if not isinstance(auth, Mapping):
        return []
    if all(k in auth for k in _PROVIDER_KEYS):
        return [None]
    return [name for name, section in auth.items() if isinstance(section, Mapping)
            and all(k in section for k in _PROVIDER_KEYS)]


def _fresh_seconds() -> float:
    return number_from_env("RUNLEDGER_SSO_FRESH_SECONDS", 300, "seconds")


def _provider_signed_in() -> bool:
    try:
        return bool(st.user.is_logged_in)
    except Exception:  # noqa: BLE001 - no [auth] section or no request context: nobody signed in there
        return False


def admit_identity(engine: Engine) -> bool:
    """Start a Runledger session for the member the identity provider just signed in; False (with the
    reason on the page) when there is none to start."""
    if not _provider_signed_in():
        return False
    try:
        policy = load_sso_policy()
    except SsoConfigError as exc:
        st.error(f"Single sign-on is misconfigured: {exc}")
        return False
    claims: dict[str, Any] = dict(st.user.to_dict())
    identity = Identity.from_claims(claims, policy.groups_claim)
    if identity is None:
        st.error("Your identity provider signed you in without a subject (`sub` claim), so nobody can be "
                 "matched; ask your identity administrator.")
        _provider_sign_out_button()
        return False
    key = (identity.subject, identity.issued_at)
    refused = st.session_state.get(_REFUSED)
    if refused and refused[0] == key:  # shown again, not audited again, on this tab's reruns
        st.error(refused[1])
        _provider_sign_out_button()
        return False
    if not identity.is_fresh(time.time(), _fresh_seconds()):  # the button below goes through the provider again
        st.caption(f"Your identity provider signed you in as {identity.describe()} earlier; sign in again to "
                   "go on.")
        return False
    try:
        start_sso_session(engine, identity, policy)
    except IdentityRefused as exc:
        st.session_state[_REFUSED] = (key, str(exc))
        st.error(str(exc))
        _provider_sign_out_button()
        return False
    st.session_state.pop(_REFUSED, None)
    return True


def render_sso_buttons() -> None:
    for name in providers():
        label = "Sign in with single sign-on" if name is None else f"Sign in with {name}"
        if st.button(label, key=f"sso-{name or 'default'}", type="primary", icon=":material/key:"):
            if name is None:
                st.login()
            else:
                st.login(name)


def _provider_sign_out_button() -> None:
    if st.button("Sign out of the identity provider", key="sso-sign-out", icon=":material/logout:"):
        st.session_state.pop(_REFUSED, None)
        st.logout()


def provider_sign_out() -> None:
    """After a single sign-on session's sign-out: the provider's cookie goes too (and its end-session page)."""
    if _provider_signed_in():
        st.logout()
