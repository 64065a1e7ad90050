"""A run's or an item's page that cannot show what its link asked for: it says why, offers the way back to
Runs, and stops (the same words and link on every such page)."""

from __future__ import annotations

from typing import NoReturn

import streamlit as st

from core.links import runs_link


def stop_at_runs(title: str, said: str, *, error: bool = False) -> NoReturn:
    st.title(title)
    (st.error if error else st.info)(said)
    st.page_link(runs_link().page, label="Go to Runs", icon=":material/list_alt:")
    st.stop()
