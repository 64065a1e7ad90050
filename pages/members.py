"""Members and their roles. Admins see everyone and manage them; others see their own entry and change
their own password. The engine's member commands check the actor again (ui.member_forms)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.roles import ROLE_PERMISSIONS
from store.members import read_members
from ui.member_forms import RESULT, render_add_member, render_change_member, render_own_password
from ui.runtime import current_engine
from ui.session import actor_or_stop
from ui.tables import show_table
from ui.text import fmt_time, show_command_result

engine = current_engine()
actor = actor_or_stop()
st.title("Members")
show_command_result(RESULT)
with engine.ws.read() as conn:
    members = read_members(conn)
me = next((m for m in members if m["member_id"] == actor.member_id), None)
admin = actor.may("manage_members")
if not admin:
    st.info("Only admins see every member and manage them; this is your own entry.")
    members = [m for m in members if m["member_id"] == actor.member_id]
show_table(pd.DataFrame([{"Member": m["member_id"], "Name": m["display_name"],
                            "Roles": m["roles"].replace(",", ", "), "Active": m["active"],
                            "E-mail": m["email"] or "", "Signs in with": ", ".join(filter(None, [
                                "password" if m["password_hash"] else "",
                                "single sign-on" if m["email"] or m["sso_subject"] else ""])),
                            "Since": fmt_time(m["created_at"])} for m in members]))
if admin:
    render_add_member(engine, actor)
    render_change_member(engine, actor, members)
render_own_password(engine, actor, bool(me and me["password_hash"]))
st.subheader("What each role may do")
show_table(pd.DataFrame([{"Role": r, "May": ", ".join(sorted(p.replace("_", " ") for p in ps))}
                           for r, ps in ROLE_PERMISSIONS.items()]))
