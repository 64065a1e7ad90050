"""Members' sessions kept in the workspace (issue 17): a member signed in through one app replica stays signed
in on the others and after a replica restarts; signing out ends the session everywhere; it expires idle and
at its maximum age, and ends when the member's session epoch moves on — each ending audited once.

Every test runs on DuckDB and on a real PostgreSQL server through the shared fixtures of tests/backends.py
(one server per module, a fresh database per test; the PostgreSQL half is marked slow).
Two "replicas" are two ``Workspace`` objects on the same database; a "restart" closes one and opens another.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from core.roles import Actor
from core.sso import Identity, SsoPolicy
from engine.authz import SignInRefused
from engine.commands import members as cmd
from engine.sessions import (
    NoSuchSession,
    SessionExpired,
    SessionSignedOut,
    begin_password_session,
    begin_sso_session,
    end_session_token,
    resume_session_token,
)
from engine.sessions import SessionEnded as Ended
from store.errors import WriteFailed
from store.workspace import Workspace
from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import pg_server_fixture, workspace_db_fixture  # noqa: F401
from tests.support import quick_password_hash

START = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)
PASSWORDS = {"admin": "Admin-pass-48213", "ola": "Ola-pass-59302", "kari": "Kari-pass-11874"}
ADMIN = Actor("admin", frozenset({"admin"}))


class Clock:
    """The workspaces' clock, shared by every replica of a test (one database, one time)."""

    def __init__(self) -> None:
        self.at = START

    def now(self) -> dt.datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += dt.timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def replica(workspace_db: str, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], Workspace]]:
    """Opens another replica's workspace on the test's database (the first one seeds its members)."""
    monkeypatch.setattr("engine.commands.members.hash_password", quick_password_hash)
    for name in ("RUNLEDGER_SESSION_IDLE_MINUTES", "RUNLEDGER_SESSION_MAX_HOURS"):
        monkeypatch.delenv(name, raising=False)
    opened: list[Workspace] = []

    def open_replica() -> Workspace:
        ws = Workspace(workspace_db, now=clock.now)
        if not opened:
            cmd.init_workspace(ws, "admin", PASSWORDS["admin"], {"user": "test"})
            cmd.add_member(ws, ADMIN, "ola", "viewer", PASSWORDS["ola"])
            cmd.add_member(ws, ADMIN, "kari", "operator", PASSWORDS["kari"], email="kari@bank.example")
        opened.append(ws)
        return ws
    yield open_replica
    for ws in opened:
        ws.close()


def sign_in(ws: Workspace, member: str = "ola") -> str:
    return begin_password_session(ws, member, PASSWORDS[member])[1]


def signed_out(ws: Workspace, member: str = "ola") -> list[dict[str, str]]:
    with ws.read() as conn:
        rows = conn.execute(sa.text("SELECT actor, payload FROM audit_log WHERE event = 'member.signed_out' "
                                    "AND entity_id = :m ORDER BY seq"), {"m": member}).all()
    return [{"actor": actor, **json.loads(payload)} for actor, payload in rows]


def session_rows(ws: Workspace) -> list[dict[str, object]]:
    with ws.read() as conn:
        return [dict(r) for r in conn.execute(sa.text("SELECT * FROM sessions ORDER BY signed_in_at")).mappings()]


def test_a_session_begun_on_one_replica_resumes_on_another(replica: Callable[[], Workspace], clock: Clock) -> None:
    a, b = replica(), replica()
    token = sign_in(a)
    clock.advance(minutes=5)
    live = resume_session_token(b, token)
    assert live.actor == Actor("ola", frozenset({"viewer"})) and live.channel == "password"
    assert live.signed_in_at == START and live.seen_at == START + dt.timedelta(minutes=5)
    assert live.expires_at == START + dt.timedelta(minutes=35)
    assert resume_session_token(a, token).actor.member_id == "ola"  # and still on the first


def test_a_session_survives_a_replica_restart(replica: Callable[[], Workspace], clock: Clock) -> None:
    first = replica()
    token = sign_in(first)
    first.close()
    clock.advance(minutes=10)
    restarted = replica()
    assert resume_session_token(restarted, token).actor.member_id == "ola"


def test_the_token_is_never_stored_only_its_hash(replica: Callable[[], Workspace]) -> None:
    ws = replica()
    token = sign_in(ws)
    rows = session_rows(ws)
    assert [r["session_id"] for r in rows] == [hashlib.sha256(token.encode()).hexdigest()]
    assert not any(token in str(v) for r in rows for v in r.values())
    assert rows[0]["member_id"] == "ola" and rows[0]["epoch"] == 0 and rows[0]["ended_at"] is None


def test_a_refused_sign_in_begins_no_session(replica: Callable[[], Workspace]) -> None:
    ws = replica()
    with pytest.raises(SignInRefused):
        begin_password_session(ws, "ola", "not the password")
    assert session_rows(ws) == []


def test_a_made_up_token_opens_nothing(replica: Callable[[], Workspace]) -> None:
    ws = replica()
    sign_in(ws)
    with pytest.raises(NoSuchSession):
        resume_session_token(ws, "made-up-token")


def test_signing_out_ends_the_session_everywhere_audited_once(replica: Callable[[], Workspace]) -> None:
    a, b = replica(), replica()
    token = sign_in(a)
    assert resume_session_token(b, token)
    assert end_session_token(a, token) is True
    for ws in (a, b):
        with pytest.raises(SessionSignedOut, match="You signed out"):
            resume_session_token(ws, token)
    assert end_session_token(b, token) is False  # signing out again (another tab) writes nothing
    assert signed_out(a) == [{"actor": "member:ola", "reason": "signed out", "channel": "web"}]
    assert session_rows(b)[0]["ended_reason"] == "signed out" and session_rows(b)[0]["ended_at"] == START


def test_a_session_ends_after_its_idle_limit(replica: Callable[[], Workspace], clock: Clock) -> None:
    a, b = replica(), replica()
    token = sign_in(a)
    clock.advance(minutes=29)
    resume_session_token(b, token)  # a page view on another replica: the idle time starts again
    clock.advance(minutes=29)
    resume_session_token(a, token)
    clock.advance(minutes=30, seconds=1)
    with pytest.raises(SessionExpired, match="Your session expired"):
        resume_session_token(b, token)
    with pytest.raises(SessionExpired):  # the other replica says the same, and writes nothing more
        resume_session_token(a, token)
    assert signed_out(a) == [{"actor": "member:ola", "reason": "session expired", "channel": "web"}]


def test_the_idle_limit_is_read_from_the_environment(replica: Callable[[], Workspace], clock: Clock,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ws = replica()
    token = sign_in(ws)
    monkeypatch.setenv("RUNLEDGER_SESSION_IDLE_MINUTES", "5")
    clock.advance(minutes=4)
    assert resume_session_token(ws, token).expires_at == clock.now() + dt.timedelta(minutes=5)
    clock.advance(minutes=6)
    with pytest.raises(SessionExpired):
        resume_session_token(ws, token)


def test_a_session_ends_at_its_maximum_age_however_busy(replica: Callable[[], Workspace], clock: Clock,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNLEDGER_SESSION_MAX_HOURS", "2")
    a, b = replica(), replica()
    token = sign_in(a)
    for _ in range(6):  # a page view every 20 minutes, for two hours
        clock.advance(minutes=20)
        resume_session_token(b, token)
    assert resume_session_token(a, token).expires_at == START + dt.timedelta(hours=2)
    clock.advance(seconds=1)
    with pytest.raises(SessionExpired):
        resume_session_token(a, token)
    assert [e["reason"] for e in signed_out(a)] == ["session expired"]


def test_a_reset_password_ends_the_members_sessions_on_every_replica(replica: Callable[[], Workspace]) -> None:
    a, b = replica(), replica()
    ola, kari = sign_in(a, "ola"), sign_in(a, "kari")
    cmd.reset_password(b, ADMIN, "ola", "Ola-new-pass-77421")
    for ws in (b, a):
        with pytest.raises(Ended, match="Your password was changed or reset, so your session ended"):
            resume_session_token(ws, ola)
    assert resume_session_token(b, kari).actor.member_id == "kari"  # another member's session goes on
    assert signed_out(a) == [{"actor": "member:ola", "reason": "session ended: password changed or reset",
                              "channel": "web"}]
    new = begin_password_session(a, "ola", "Ola-new-pass-77421")[1]  # a new sign-in begins under the new epoch
    assert resume_session_token(b, new).actor.member_id == "ola"


def test_deactivation_ends_the_members_sessions(replica: Callable[[], Workspace]) -> None:
    a, b = replica(), replica()
    token = sign_in(a)
    cmd.deactivate_member(b, ADMIN, "ola")
    cmd.reactivate_member(b, ADMIN, "ola")  # reactivated: the session begun before stays ended
    with pytest.raises(Ended, match="Your password was changed or reset") as ended:
        resume_session_token(a, token)
    assert ended.value.reason == "password changed or reset"
    other = sign_in(a)
    cmd.deactivate_member(b, ADMIN, "ola")
    with pytest.raises(Ended, match="deactivated, so your session ended"):
        resume_session_token(a, other)
    with pytest.raises(Ended, match="deactivated, so your session ended"):  # the same words on another replica
        resume_session_token(b, other)
    assert [e["reason"] for e in signed_out(a)] == ["session ended: password changed or reset",
                                                    "session ended: member deactivated"]


def test_the_session_that_changes_its_password_carries_on_and_the_others_end(
        replica: Callable[[], Workspace]) -> None:
    a, b = replica(), replica()
    here, elsewhere = sign_in(a), sign_in(b)
    cmd.change_own_password(a, "ola", PASSWORDS["ola"], "Ola-changed-pass-3391", channel="web", session_token=here)
    assert resume_session_token(b, here).actor.member_id == "ola"
    with pytest.raises(Ended, match="Your password was changed or reset"):
        resume_session_token(a, elsewhere)


def test_roles_are_read_again_at_every_page_view(replica: Callable[[], Workspace]) -> None:
    a, b = replica(), replica()
    token = sign_in(a)
    cmd.set_roles(b, ADMIN, "ola", "operator")
    assert resume_session_token(a, token).actor.roles == frozenset({"operator"})


def test_a_single_sign_on_session_is_shared_too(replica: Callable[[], Workspace]) -> None:
    a, b = replica(), replica()
    identity = Identity.from_claims({"sub": "idp-7", "iss": "http://localhost:1", "iat": 1_800_000_000,
                                     "email": "kari@bank.example", "email_verified": True})
    assert identity is not None
    actor, token = begin_sso_session(a, identity, SsoPolicy())
    live = resume_session_token(b, token)
    assert actor.member_id == live.actor.member_id == "kari" and live.channel == "sso"
    end_session_token(b, token)
    assert signed_out(a, "kari") == [{"actor": "member:kari", "reason": "signed out", "channel": "sso"}]


def test_a_page_view_is_one_read_and_one_write(replica: Callable[[], Workspace]) -> None:
    """What every page view costs, on every replica: the session read by key (with its member), and its
    latest view noted. No more, or the session would cost the app its speed."""
    ws = replica()
    token = sign_in(ws)
    statements: list[str] = []

    def note(conn: sa.Connection, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement.split()[0].upper())
    sa.event.listen(ws.engine, "before_cursor_execute", note)
    resume_session_token(ws, token)
    sa.event.remove(ws.engine, "before_cursor_execute", note)
    assert statements == ["SELECT", "UPDATE"]


def test_a_page_view_leaves_the_change_marker_alone(replica: Callable[[], Workspace]) -> None:
    """Noting a page view changes nothing a screen shows: caches keyed on the marker (the analytics page's)
    must not be emptied by every page view. A sign-out is a change (its audit entry)."""
    ws = replica()
    token = sign_in(ws)
    marker = ws.change_marker()
    resume_session_token(ws, token)
    assert ws.change_marker() == marker
    end_session_token(ws, token)
    assert ws.change_marker() != marker or marker is None  # None on PostgreSQL: nothing is cached there


def test_a_page_view_that_cannot_be_noted_is_still_served(replica: Callable[[], Workspace], clock: Clock,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A workspace that cannot be written (a full disk) can still be read: the member goes on reading their
    evidence; only this view's time is lost, so the session's idle time runs from the view before."""
    ws = replica()
    token = sign_in(ws)
    clock.advance(minutes=10)

    def full_disk(*_args: object) -> bool:
        raise WriteFailed("The workspace could not be written (disk full); nothing of it was saved.")
    monkeypatch.setattr("store.sessions.touch_session", full_disk)
    live = resume_session_token(ws, token)
    assert live.actor.member_id == "ola" and live.expires_at == START + dt.timedelta(minutes=30)
    assert session_rows(ws)[0]["seen_at"] == START
