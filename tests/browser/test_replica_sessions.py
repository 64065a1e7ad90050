"""A member signed in through one app replica is signed in on the others, and after a replica restarts;
signing out on one signs out on all (issue 17). Two ``streamlit run`` servers on one PostgreSQL workspace,
as behind a load balancer without sticky sessions: one browser, its one session cookie (cookies are per
host, not per port, so both servers receive it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.roles import Actor
from engine.commands import members as cmd
from store.workspace import Workspace
from tests.browser.support import AppServer, screenshot, sign_in
from tests.pg_server import postgres_server

PASSWORD = "Sigrid-pass-80412"


@pytest.fixture
def pg_workspace() -> Iterator[str]:
    with postgres_server() as url:
        ws = Workspace(url)
        try:
            cmd.init_workspace(ws, "admin", "Admin-pass-51127", {"user": "test"})
            cmd.add_member(ws, Actor("admin", frozenset({"admin"})), "sigrid", "approver,operator", PASSWORD)
        finally:
            ws.close()
        yield url


def _replica(url: str, log: Path) -> AppServer:
    return AppServer(url, log, env={"RUNLEDGER_ENGINE_LIVE": "0"})  # app replicas leave the engine to `serve`


def _signed_in_as(page: object, server: AppServer, member: str) -> bool:
    page.goto(f"{server.url}/audit_log")  # type: ignore[attr-defined]
    form = page.get_by_role("button", name="Sign in")  # type: ignore[attr-defined]
    signed = page.get_by_text(f"Signed in as {member}")  # type: ignore[attr-defined]
    form.or_(signed).first.wait_for()
    return bool(signed.count())


def test_a_session_is_served_by_every_replica_and_survives_a_restart(pg_workspace: str, tmp_path: Path,
                                                                     page: object) -> None:
    one = _replica(pg_workspace, tmp_path / "one.log")
    two: AppServer | None = None
    try:
        sign_in(page, one, "sigrid", password=PASSWORD)
        two = _replica(pg_workspace, tmp_path / "two.log")
        assert _signed_in_as(page, two, "sigrid"), "the other replica asked for the password again"
        screenshot(page, "replica-two-signed-in")
        one.stop()
        one = _replica(pg_workspace, tmp_path / "one-again.log")  # the first replica, restarted
        assert _signed_in_as(page, one, "sigrid"), "a restarted replica signed the member out"
        cookie = [c for c in page.context.cookies() if c["name"] == "runledger_session"]  # type: ignore[attr-defined]
        assert len(cookie) == 1
        page.get_by_role("button", name="Sign out").click()  # type: ignore[attr-defined]
        page.get_by_role("button", name="Sign in").wait_for()  # type: ignore[attr-defined]
        # The sign-out took the cookie away from this browser; a copy of it (another device's, say) must
        # open nothing either, on any replica: the session ended in the workspace, not only in the browser.
        page.context.add_cookies(cookie)  # type: ignore[attr-defined]
        assert not _signed_in_as(page, two, "sigrid"), "signed out on one replica, still signed in on another"
        screenshot(page, "replica-two-signed-out")
    finally:
        one.stop()
        if two is not None:
            two.stop()
    for log in tmp_path.glob("*.log"):
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
