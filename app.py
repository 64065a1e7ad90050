"""Runledger's Streamlit app: page config, the one cached workspace and engine, and (for now) the runs.

The dashboard issue replaces the plain table with the real pages; this file keeps only wiring.
"""

from __future__ import annotations

import streamlit as st

from engine.runtime import Engine
from store.errors import StoreError
from store.workspace import Workspace, resolve_workspace_path
from ui.data import runs_table

st.set_page_config(page_title="Runledger", page_icon="📒", layout="wide")


def _release(engine: Engine) -> None:
    engine.shutdown()
    engine.ws.close()


@st.cache_resource(on_release=_release)
def open_engine() -> Engine:
    """One workspace and one live engine per server process (DuckDB admits one writer)."""
    engine = Engine(Workspace(resolve_workspace_path()))
    engine.start()
    return engine


try:
    engine = open_engine()
except StoreError as exc:
    st.error(str(exc))
    st.stop()

st.title("Runledger — runs")
st.caption("Governance → Automation → Runs. Every execution of a governed automation, newest first.")
st.dataframe(runs_table(engine.ws), hide_index=True, width="stretch")
