"""The app's side of sessions kept in the workspace (issue 17): every page view resumes the session from the
workspace — one read and one write, however many times the page asks who is signed in — and a sign-out in
one tab ends the session in the other tabs holding it (on any replica: tests/browser/test_replica_sessions.py).

A second tab is a second ``AppTest`` given the first one's token, as its cookie would give it (AppTest cannot
send cookies)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from core.links import PAGES
from tests.apptest_support import app_engine, open_app

TOKEN = "runledger_session"  # ui.session keeps a tab's token under this key


def _second_tab(first: Any) -> Any:
    tab = open_app(None)
    tab.session_state[TOKEN] = first.session_state[TOKEN]
    tab.run()
    return tab


def test_a_sign_out_in_one_tab_ends_the_session_in_the_others(app_workspace: str) -> None:
    first = open_app("sigrid")
    second = _second_tab(first)
    assert "sigrid" in " ".join(m.value for m in second.sidebar.markdown)  # the same session, no password
    first.sidebar.button(key="sign-out").click().run()
    second.run()
    assert "You signed out (in another tab or window)" in second.info[0].value
    assert len(second.text_input) == 2  # the sign-in form
    with app_engine().ws.read() as conn:
        ended = conn.execute(sa.text("SELECT count(*) FROM audit_log WHERE event = 'member.signed_out'")).scalar()
    assert ended == 1  # one sign-out, one entry, however many tabs see it


def test_a_page_view_reads_and_writes_the_session_once(app_workspace: str) -> None:
    """``app.py`` resumes the session before the page runs; the page's own ``actor_or_stop`` takes that member
    rather than resuming a second time."""
    at = open_app("sigrid", page=PAGES["runs"][0])
    statements: list[str] = []

    def note(conn: sa.Connection, cursor: object, statement: str, *args: object) -> None:
        if "sessions" in statement:
            statements.append(statement.split()[0].upper())
    engine = app_engine().ws.engine
    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        at.run()
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)
    assert not at.exception, at.exception
    assert statements == ["SELECT", "UPDATE"]
