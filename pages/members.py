"""Members and their roles. Admins see everyone; others see their own entry."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.roles import ROLE_PERMISSIONS
from store.members import read_members
from ui.runtime import current_engine
from ui.session import actor_or_stop
from ui.tables import show_table
from ui.text import fmt_time

engine = current_engine()
actor = actor_or_stop()
st.title("Members")
with engine.ws.read() as conn:
    members = read_members(conn)
if not actor.may("manage_members"):
    st.info("Only admins see every member; this is your own entry.")
    members = [m for m in members if m["member_id"] == actor.member_id]
show_table(pd.DataFrame([{"Member": m["member_id"], "Name": m["display_name"],
                            "Roles": m["roles"].replace(",", ", "), "Active": m["active"],
                            "Since": fmt_time(m["created_at"])} for m in members]))
st.subheader("What each role may do")
show_table(pd.DataFrame([{"Role": r, "May": ", ".join(sorted(p.replace("_", " ") for p in ps))}
                           for r, ps in ROLE_PERMISSIONS.items()]))
