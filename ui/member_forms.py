"""The Members page's forms: an admin adds a member, changes roles, deactivates or reactivates, resets a
password, sets the e-mail single sign-on matches; any member with a password changes their own. Each form
calls the engine's member command, which checks the actor again and audits the change; a refusal is shown
as the engine words it. Non-admins are not shown the admin forms at all."""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.markup import md_escape
from core.members import MIN_PASSWORD_LENGTH
from core.roles import ROLES, Actor
from engine.authz import UnknownMember
from engine.commands import COMMAND_REFUSALS
from engine.commands import members as cmd
from engine.runtime import Engine
from ui.session import session_token

RESULT = "members_result"
_REFUSALS: tuple[type[Exception], ...] = (*COMMAND_REFUSALS, UnknownMember)


def _done(kind: str, text: str) -> None:
    st.session_state[RESULT] = (kind, text)
    st.rerun()


def _perform(action: Any, success: str) -> None:
    try:
        action()
    except _REFUSALS as exc:
        _done("error", md_escape(exc))
    else:
        _done("ok", md_escape(success))


def _differ(new: str, again: str) -> bool:
    if new != again:
        st.error("The two new passwords differ; nothing changed. Type them again.")
        return True
    return False


def render_own_password(engine: Engine, actor: Actor, has_password: bool) -> None:
    st.subheader("Your password")
    if not has_password:
        st.caption("You sign in through single sign-on; change your password at your identity provider.")
        return
    with st.form("own-password", clear_on_submit=True):
        current = st.text_input("Current password", type="password", autocomplete="current-password")
        new = st.text_input(f"New password (at least {MIN_PASSWORD_LENGTH} characters)", type="password",
                            autocomplete="new-password")
        again = st.text_input("New password again", type="password", autocomplete="new-password")
        submitted = st.form_submit_button("Change my password")
    if submitted and not _differ(new, again):
        try:
            # this session goes on (its row moves to the new epoch in the change's transaction); the
            # member's other sessions end
            cmd.change_own_password(engine.ws, actor.member_id, current, new, channel="web",
                                    session_token=session_token())
        except _REFUSALS as exc:
            _done("error", md_escape(exc))
        else:
            _done("ok", "Your password is changed; your sessions in other browsers have ended.")


def render_add_member(engine: Engine, actor: Actor) -> None:
    with st.expander("Add a member", icon=":material/person_add:"):
        with st.form("add-member", clear_on_submit=True):
            name = st.text_input("Member name (how they sign in, e.g. j.smith)")
            display = st.text_input("Display name (optional)")
            roles = st.multiselect("Roles", ROLES, key="add-roles")
            email = st.text_input("E-mail (single sign-on finds them by it; optional)")
            sso_only = st.checkbox("Single sign-on only (no password)")
            password = st.text_input(f"Password (at least {MIN_PASSWORD_LENGTH} characters)", type="password",
                                     autocomplete="new-password")
            again = st.text_input("Password again", type="password", autocomplete="new-password")
            submitted = st.form_submit_button("Add member", type="primary")
        if submitted and (sso_only or not _differ(password, again)):
            _perform(lambda: cmd.add_member(engine.ws, actor, name, roles, None if sso_only else password,
                                            email=email.strip() or None, display_name=display),
                     f"{name.strip()} added with roles {', '.join(sorted(roles))}.")


def render_change_member(engine: Engine, actor: Actor, members: list[dict[str, Any]]) -> None:
    st.subheader("Change a member")
    by_id = {m["member_id"]: m for m in members}
    chosen = st.selectbox("Member", list(by_id), key="change-member")
    if chosen is None:
        return
    m = by_id[chosen]
    current = [r for r in m["roles"].split(",") if r]
    with st.form(f"roles-{chosen}"):
        roles = st.multiselect("Roles", ROLES, default=current, key=f"member-roles-{chosen}")
        if st.form_submit_button("Save roles"):
            _perform(lambda: cmd.set_roles(engine.ws, actor, chosen, roles),
                     f"{chosen} now holds {', '.join(sorted(roles))}.")
    if m["active"]:
        with st.form(f"deactivate-{chosen}"):
            reason = st.text_input("Reason (goes into the audit trail)")
            confirm = st.checkbox(f"Yes, deactivate {chosen}: they can no longer sign in, and their sessions end")
            if st.form_submit_button("Deactivate"):
                if not confirm:
                    st.warning("Tick the confirmation to deactivate the member.")
                else:
                    _perform(lambda: cmd.deactivate_member(engine.ws, actor, chosen, reason),
                             f"{chosen} deactivated; their sessions have ended.")
    elif st.button(f"Reactivate {chosen}", key=f"reactivate-{chosen}"):
        _perform(lambda: cmd.reactivate_member(engine.ws, actor, chosen), f"{chosen} reactivated.")
    if chosen != actor.member_id:
        with st.form(f"reset-{chosen}", clear_on_submit=True):
            new = st.text_input(f"New password for {chosen} (at least {MIN_PASSWORD_LENGTH} characters)",
                                type="password", autocomplete="new-password")
            again = st.text_input("New password again", type="password", autocomplete="new-password")
            if st.form_submit_button("Reset password") and not _differ(new, again):
                _perform(lambda: cmd.reset_password(engine.ws, actor, chosen, new),
                         f"Password of {chosen} reset; their sessions have ended. Give them the new password by "
                         "another channel.")
    with st.form(f"email-{chosen}"):
        email = st.text_input("E-mail for single sign-on (empty: none)", value=m["email"] or "")
        if st.form_submit_button("Save e-mail"):
            _perform(lambda: cmd.set_email(engine.ws, actor, chosen, email.strip() or None),
                     f"{chosen}'s e-mail is now {email.strip()}." if email.strip() else f"{chosen}'s e-mail cleared.")
