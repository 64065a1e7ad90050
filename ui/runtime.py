"""The one workspace and live engine per server process (DuckDB admits one writer), shared by all pages."""

from __future__ import annotations

import atexit
import os
import threading
import weakref

import streamlit as st

from engine.runtime import Engine
from engine.serve import start_live
from store.workspace import Workspace, resolve_workspace_path

_open: weakref.WeakSet[Engine] = weakref.WeakSet()  # engines opened here and not yet released
_open_lock = threading.Lock()


def _release(engine: Engine) -> None:
    """Stop the engine and close its workspace, once (the cache's release and the server's end may both ask)."""
    with _open_lock:
        if engine not in _open:
            return
        _open.discard(engine)
    engine.shutdown()
    engine.ws.close()


def _release_all() -> None:
    for engine in list(_open):
        _release(engine)


# Streamlit does not release cached resources when its server stops (SIGTERM, Ctrl+C): the engine was never
# shut down — its discovery file outlived it, its scheduler went on polling into thread pools Python was
# already stopping (an error in the log on stops), its workspace was left unclosed. Functions registered with
# ``threading._register_atexit`` run before Python joins its threads, before ``concurrent.futures`` stops its
# pools: when the engine's own stop must come. The standard library uses it so (CPython ≥ 3.9); elsewhere,
# plain ``atexit``.
getattr(threading, "_register_atexit", atexit.register)(_release_all)


@st.cache_resource(on_release=_release, show_spinner="Opening the workspace…")
def open_engine() -> Engine:
    """Opened once; ``on_release`` shuts the scheduler down so an edited app never runs two engines, and
    the server's end shuts it down too."""
    engine = Engine(Workspace(resolve_workspace_path()),
                    definitions_dir=os.environ.get("RUNLEDGER_DEFINITIONS", "definitions"))
    if os.environ.get("RUNLEDGER_ENGINE_LIVE", "1") != "0":  # tests may drive the engine themselves
        start_live(engine)
    else:
        engine.load_definitions()
    with _open_lock:
        _open.add(engine)
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
