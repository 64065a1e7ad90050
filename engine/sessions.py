"""Members' signed-in sessions, kept in the workspace: any app replica resumes any member's session, a
restarted one included, and a sign-out ends it on all of them.

A sign-in gives the browser a random token and stores only its sha256 (``store.sessions``), in the
transaction of the sign-in's audit entry. Every page view presents the token and ``resume_session_token``
reads the session with its member's row (one read by primary key), checks it, and notes the view (one
update): a session ends after ``RUNLEDGER_SESSION_IDLE_MINUTES`` (default 30) without a page view or
``RUNLEDGER_SESSION_MAX_HOURS`` (default 12) after sign-in, whichever comes first, and when its member is
deactivated or their password reset or changed (the member's session epoch moved on since it began).
Expiry is reckoned on the workspace's clock (``Workspace.now``), the one that stamps the rows, so every
replica reckons alike (given hosts whose clocks agree, as the audit log's timestamps already need).

Each ending is written once, with its ``member.signed_out`` entry in the same transaction: the replica or
tab that ends a live session writes both; any other that meets the ended session afterwards only tells
its member why (the same notice), reading the reason from the row.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from core.roles import Actor
from core.sso import Identity, SsoPolicy
from engine.authz import SessionEnded, check_session_member, session_ended, sign_in, sign_out
from engine.settings import number_from_env
from engine.sso import sign_in_with_identity
from store import sessions as session_store
from store.errors import WriteConflict, WriteFailed
from store.workspace import Workspace

EXPIRED = "session expired"
SIGNED_OUT = "signed out"
_ENDED_BECAUSE = "session ended: "  # + the member's reason (``engine.authz.SESSION_ENDINGS``)


class SessionExpired(SessionEnded):
    """Idle too long, or signed in too long ago."""

    def __init__(self) -> None:
        super().__init__("Your session expired; sign in again to go on.", EXPIRED)


class SessionSignedOut(SessionEnded):
    """The member signed out, in another tab, browser window or through another replica."""

    def __init__(self) -> None:
        super().__init__("You signed out (in another tab or window), so this one is signed out too; sign in "
                         "again to go on.", SIGNED_OUT)


class NoSuchSession(LookupError):
    """No session has this token (made up, or of another workspace)."""


def idle_limit() -> dt.timedelta:
    return dt.timedelta(minutes=number_from_env("RUNLEDGER_SESSION_IDLE_MINUTES", 30, "minutes"))


def max_age() -> dt.timedelta:
    return dt.timedelta(hours=number_from_env("RUNLEDGER_SESSION_MAX_HOURS", 12, "hours"))


@dataclass(frozen=True)
class LiveSession:
    """A session that a page view resumed: its member as they are now, and when it ends if left idle."""

    actor: Actor
    channel: str  # password | sso
    signed_in_at: dt.datetime
    seen_at: dt.datetime

    @property
    def audit_channel(self) -> str:
        return audit_channel(self.channel)

    @property
    def expires_at(self) -> dt.datetime:
        return min(self.seen_at + idle_limit(), self.signed_in_at + max_age())


def audit_channel(channel: str) -> str:
    """The channel a session's audit entries name: ``sso``, or ``web`` for a password session."""
    return "sso" if channel == "sso" else "web"


def new_token() -> str:
    """A browser's session token: 256 random bits, URL-safe (it goes into a cookie as it is)."""
    return secrets.token_urlsafe(32)


def begin_password_session(ws: Workspace, member_id: str, password: str) -> tuple[Actor, str]:
    """Sign in with a password and begin a session: the member and the token for the browser. Raises
    ``SignInRefused`` (audited) when the pair does not match."""
    token = new_token()
    actor = sign_in(ws, member_id, password, session_id=session_store.session_id_for(token))
    return actor, token


def begin_sso_session(ws: Workspace, identity: Identity, policy: SsoPolicy) -> tuple[Actor, str]:
    """Admit the member an identity provider vouched for and begin a session: the member and the token.
    Raises ``IdentityRefused`` (audited) when this workspace does not admit them."""
    token = new_token()
    actor = sign_in_with_identity(ws, identity, policy, session_id=session_store.session_id_for(token))
    return actor, token


def resume_session_token(ws: Workspace, token: str) -> LiveSession:
    """The live session this token opens, its page view noted; else ``NoSuchSession``, or ``SessionEnded``
    (``SessionExpired``, ``SessionSignedOut``, or the member's reason) with the notice for the member —
    ended now, and audited, if it was live until this view."""
    session_id = session_store.session_id_for(token)
    with ws.read() as conn:
        row = session_store.read_session(conn, session_id)
    if row is None:
        raise NoSuchSession("no session has this token")
    if row["ended_at"] is not None:
        raise _ending_of(row["ended_reason"])
    now = ws.now()
    if now - row["seen_at"] > idle_limit() or now - row["signed_in_at"] > max_age():
        raise SessionExpired() if _end(ws, row, EXPIRED) else _ended_meanwhile(ws, session_id)
    try:
        actor = check_session_member(row["member_id"], bool(row["member_active"]), row["member_roles"],
                                     row["member_epoch"], int(row["epoch"]))
    except SessionEnded as ended:
        if not _end(ws, row, _ENDED_BECAUSE + ended.reason):
            raise _ended_meanwhile(ws, session_id) from None
        raise
    seen_at, live = now, True
    try:
        with ws.transaction(bookkeeping=True) as tx:
            live = session_store.touch_session(tx, session_id, now)
    except (WriteConflict, WriteFailed):
        # The session was live a moment ago; a workspace that cannot be written (a full disk) can still be
        # read, and its evidence is what a member may need most then. Noting this view is all that is lost.
        seen_at = row["seen_at"]
    if not live:
        raise _ended_meanwhile(ws, session_id)
    return LiveSession(actor, row["channel"], row["signed_in_at"], seen_at)


def end_session_token(ws: Workspace, token: str, reason: str = SIGNED_OUT) -> bool:
    """Sign out: the session ends on every replica and in every tab (audited ``member.signed_out``). False
    when it had ended already or never was (nothing written)."""
    session_id = session_store.session_id_for(token)
    with ws.read() as conn:
        row = session_store.read_session(conn, session_id)
    return row is not None and _end(ws, row, reason)


def _end(ws: Workspace, row: dict[str, Any], reason: str) -> bool:
    return sign_out(ws, Actor(row["member_id"], frozenset()), reason, channel=audit_channel(row["channel"]),
                    session_id=row["session_id"])


def _ended_meanwhile(ws: Workspace, session_id: str) -> SessionEnded:
    """Another replica or tab ended the session between this view's read and its write: its reason."""
    with ws.read() as conn:
        row = session_store.read_session(conn, session_id)
    return _ending_of(row["ended_reason"] if row else None)


def _ending_of(reason: str | None) -> SessionEnded:
    """What the member is told of a session found ended: as the page view that ended it told them."""
    if reason == EXPIRED:
        return SessionExpired()
    if reason is not None and reason.startswith(_ENDED_BECAUSE):
        try:
            return session_ended(reason.removeprefix(_ENDED_BECAUSE))
        except KeyError:
            pass
    return SessionSignedOut()
