"""A shared link opened on a freshly started server goes through sign-in and the app's navigation.

Streamlit starts in its legacy pages-folder mode and leaves it only once ``st.navigation`` has run; before
the fix, the first request of a fresh server for ``/run?id=…`` ran the page script bare (the folder's
automatic sidebar, "Sign in to see this page.", no sign-in form).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.browser.support import AppServer, screenshot


def test_the_first_request_of_a_fresh_server_is_a_deep_link(demo_quarter_path: str, tmp_path: Path,
                                                            page) -> None:  # noqa: ANN001
    ws = tmp_path / "ws.duckdb"
    shutil.copyfile(demo_quarter_path, ws)
    server = AppServer(ws, tmp_path / "streamlit.log")
    try:
        page.goto(f"{server.url}/run?id=RUN-000001")
        page.get_by_role("button", name="Sign in").wait_for()
        page.get_by_label("Member", exact=True).fill("sigrid")
        page.get_by_label("Password", exact=True).fill("sigrid")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Run RUN-000001").wait_for()
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_text("Governance → Automation").first.wait_for()
        assert sidebar.get_by_text("Signed in as sigrid").count() == 1
        screenshot(page, "cold-deep-link-run")
    finally:
        server.stop()
