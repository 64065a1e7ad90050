"""The one workspace and live engine per server process (DuckDB admits one writer), shared by all pages."""

from __future__ import annotations

import os

import streamlit as st

from engine.runtime import Engine
from engine.settings import number_from_env
from store.workspace import Workspace, resolve_workspace_path


def _release(engine: Engine) -> None:
    engine.shutdown()
    engine.ws.close()


@st.cache_resource(on_release=_release, show_spinner="Opening the workspace…")
def open_engine() -> Engine:
    """Opened once; ``on_release`` shuts the scheduler down so an edited app never runs two engines."""
    engine = Engine(Workspace(resolve_workspace_path()),
                    definitions_dir=os.environ.get("RUNLEDGER_DEFINITIONS", "definitions"),
                    # A slow messaging system, as some members' integrations are (seconds per delivery).
                    messaging_latency=number_from_env("RUNLEDGER_MESSAGING_LATENCY_SECONDS", 0, "seconds",
                                                      allow_zero=True))
    if os.environ.get("RUNLEDGER_ENGINE_LIVE", "1") != "0":  # tests may drive the engine themselves
        engine.start()
    else:
        engine.load_definitions()
    return engine


def _serve_through_navigation() -> None:
    """A page script must run inside ``app.py``'s ``st.navigation`` (sign-in, sidebar, the one engine).

    Streamlit starts in its legacy mode whenever a ``pages/`` folder sits beside the entry script, and
    leaves it only once ``st.navigation`` has run in some session. So the first request of a fresh server
    for a deep link (``/run?id=…`` shared by a colleague, say) would run the page script bare, with the
    folder's automatic sidebar and no sign-in. Leave that mode and rerun: ``app.py`` then serves the URL.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def current_engine() -> Engine:
    _serve_through_navigation()
    return open_engine()
