"""Driving the Streamlit app with ``streamlit.testing.v1.AppTest`` on a copy of the demo quarter.

Two facts about AppTest shape this:
- ``st.cache_resource`` is process-wide, so the cached engine of one test would serve the next test's
  workspace; the ``app_workspace`` fixture (tests/conftest.py) clears it before and after (its
  ``on_release`` shuts the engine down).
- AppTest re-detects the ``pages/`` folder on every run and then runs the selected page script directly
  (the old multipage mode), skipping ``app.py`` and its sign-in. A real server decides once, when
  ``st.navigation`` is first called; ``_navigation_only`` makes AppTest do the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")

_original_init = PagesManager.__init__


def _navigation_only(self: PagesManager, *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    PagesManager.uses_pages_directory = False


def navigation_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make AppTest decide the navigation mode once, as a real server does (see the module's note)."""
    monkeypatch.setattr(PagesManager, "__init__", _navigation_only)


def open_app(member: str | None = "sigrid", page: str | None = None, params: dict[str, Any] | None = None,
             password: str | None = None, timeout: float = 30) -> AppTest:
    """The app signed in as ``member`` (demo password = name), on ``page`` (a script path such as
    ``core.links.PAGES['run'][0]``) with ``params`` as its query params."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    for k, v in (params or {}).items():
        at.query_params[k] = v
    if page:
        at.switch_page(page)
    at.run()
    if member is not None:
        sign_in(at, member, password if password is not None else member)
    return at


def sign_in(at: AppTest, member: str, password: str) -> AppTest:
    at.text_input[0].input(member)
    at.text_input[1].input(password)
    at.button[0].click()
    at.run()
    assert not at.exception, at.exception
    return at


def app_engine() -> Any:
    """The engine the app opened (the same object its pages use)."""
    from ui.runtime import open_engine
    return open_engine()
