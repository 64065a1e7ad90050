"""Who may do what. Every engine command checks its actor here itself; hiding a button is not enough.

A refusal raises ``NotAuthorized`` with a sentence naming the member, the act and the role it needs,
and is written to the audit log (in its own transaction: nothing else happened).
"""

from __future__ import annotations

import datetime as dt
import math

import argon2

from core.roles import PERMISSION_ROLES, Actor
from engine.settings import number_from_env
from store import sessions as session_store
from store.members import count_recent_sign_in_failures, read_member
from store.workspace import Workspace

_hasher = argon2.PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except argon2.exceptions.VerificationError:
        return False
    except argon2.exceptions.InvalidHashError:
        return False


class NotAuthorized(PermissionError):
    pass


class UnknownMember(LookupError):
    pass


def load_actor(ws: Workspace, member_id: str) -> Actor:
    with ws.read() as conn:
        m = read_member(conn, member_id)
    if m is None or not m["active"]:
        raise UnknownMember(f"no active member {member_id!r} in this workspace; "
                            "pass --as with a member id (for the demo: sigrid, auditor, admin, viewer)")
    return Actor(m["member_id"], frozenset(r for r in m["roles"].split(",") if r))


def check_permission(ws: Workspace, actor: Actor, permission: str, entity_kind: str, entity_id: str) -> None:
    if actor.may(permission):
        return
    needed = " or ".join(PERMISSION_ROLES.get(permission, ["(no role)"]))
    message = (f"{actor.member_id} may not {permission.replace('_', ' ')} {entity_kind} {entity_id}: "
               f"that needs the {needed} role (has: {', '.join(sorted(actor.roles)) or 'none'}).")
    audit_refusal(ws, actor, permission, entity_kind, entity_id, message)
    raise NotAuthorized(message)


def audit_refusal(ws: Workspace, actor: Actor, permission: str, entity_kind: str, entity_id: str, reason: str,
                  **detail: str) -> None:
    """Record a refused command as ``command.refused`` with the sentence the member was shown.

    In its own transaction: the refusal is the only thing that happened, and it must stay in the trail
    although the command raises (by role here; by a four-eyes rule in ``engine.commands``)."""
    with ws.transaction() as tx:
        tx.audit(actor.audit_name, "command.refused", entity_kind, entity_id,
                 {"permission": permission, "reason": reason, **detail})


class SignInRefused(PermissionError):
    """Wrong member or password. The message never says which, so it cannot be used to probe for ids."""


class SignInThrottled(SignInRefused):
    """Too many failed sign-ins for one member name: refused unchecked until the window passes."""


def _sign_in_limits() -> tuple[int, dt.timedelta]:
    """``RUNLEDGER_SIGNIN_MAX_FAILURES`` (default 5) failures within ``RUNLEDGER_SIGNIN_LOCK_MINUTES``
    (default 15) lock that member name until the oldest of them is that old."""
    return (int(number_from_env("RUNLEDGER_SIGNIN_MAX_FAILURES", 5, "failures", whole=True)),
            dt.timedelta(minutes=number_from_env("RUNLEDGER_SIGNIN_LOCK_MINUTES", 15, "minutes")))


def check_sign_in_throttle(ws: Workspace, member_id: str, channel: str) -> None:
    """Refuse, unchecked and audited, a member name with too many recent failed sign-ins (any name alike,
    existing or not): ``SignInThrottled`` saying how long to wait."""
    name = member_id[:64] or "(blank)"
    max_failures, window = _sign_in_limits()
    now = ws.now()
    with ws.read() as conn:
        failures, oldest = count_recent_sign_in_failures(conn, name, now - window)
    if failures < max_failures or oldest is None:
        return
    wait = max(1, math.ceil(((oldest + window) - now).total_seconds() / 60))
    with ws.transaction() as tx:
        tx.audit(f"anonymous:{channel}", "member.sign_in_throttled", "member", name,
                 {"channel": channel, "failures": failures, "window_minutes": window.total_seconds() / 60})
    raise SignInThrottled(f"Too many failed sign-ins for this member name ({failures} in "
                          f"{window.total_seconds() / 60:.0f} minutes). Try again in about {wait} minutes, "
                          "or ask an administrator to reset the password.")


def sign_in(ws: Workspace, member_id: str, password: str, channel: str = "web", session_id: str | None = None) -> Actor:
    """Check a member's password. Both a success and a failure land in the audit log, with the reason.

    Repeated failures for one member name lock it for a while (guessing passwords gets slow), counted from
    the audit log; the lock applies to any name, existing or not, so it tells nothing about which exist.
    ``session_id``: a session (``engine.sessions``) that a success begins, in the transaction of its entry."""
    member_id = member_id.strip()
    check_sign_in_throttle(ws, member_id, channel)
    with ws.read() as conn:
        m = read_member(conn, member_id) if member_id else None
    if m is None:
        reason = "no such member"
    elif not m["active"]:
        reason = "member is deactivated"
    elif not m["password_hash"]:
        reason = "member has no password (single sign-on only)"
    elif not verify_password(m["password_hash"], password):
        reason = "wrong password"
    else:
        actor = Actor(m["member_id"], frozenset(r for r in m["roles"].split(",") if r))
        with ws.transaction() as tx:
            if session_id is not None:
                session_store.create_session(tx, session_id, actor.member_id, "password", int(m["session_epoch"]),
                                             tx.now())
            tx.audit(actor.audit_name, "member.signed_in", "member", actor.member_id,
                     {"channel": channel, "roles": sorted(actor.roles)})
        return actor
    with ws.transaction() as tx:
        tx.audit(f"anonymous:{channel}", "member.sign_in_failed", "member", member_id[:64] or "(blank)",
                 {"channel": channel, "reason": reason})
    raise SignInRefused("That member name and password do not match an active member. Check both and try "
                        "again; an administrator can reset a password.")


def sign_out(ws: Workspace, actor: Actor, reason: str = "signed out", channel: str = "web",
             session_id: str | None = None) -> bool:
    """Audited ``member.signed_out`` with the reason. ``session_id``: the session that ends, its row ended in
    the same transaction — only a live one, so that of the replicas and tabs that see it end, the first
    writes the one entry; False (and nothing written) when it had ended already."""
    with ws.transaction() as tx:
        if session_id is not None and not session_store.end_session(tx, session_id, tx.now(), reason):
            return False
        tx.audit(actor.audit_name, "member.signed_out", "member", actor.member_id,
                 {"reason": reason, "channel": channel})
    return True


class SessionEnded(PermissionError):
    """The member's session may not go on: deactivated, or their password was reset or changed since it
    began. The message is the notice the member sees; ``reason`` the few words the audit entry keeps."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def session_epoch(ws: Workspace, member_id: str) -> int:
    """The member's session epoch now: a session records it at sign-in (``resume_session`` compares)."""
    with ws.read() as conn:
        m = read_member(conn, member_id)
    return int(m["session_epoch"]) if m else 0


# Why a member's session may not go on (the audit entry's words) → the notice the member sees.
SESSION_ENDINGS = {
    "member deactivated": "Your membership of this workspace was deactivated, so your session ended. Ask an "
                          "administrator if this is a mistake.",
    "password changed or reset": "Your password was changed or reset, so your session ended. Sign in again with "
                                 "the new password.",
}


def session_ended(reason: str) -> SessionEnded:
    return SessionEnded(SESSION_ENDINGS[reason], reason)


def resume_session(ws: Workspace, member_id: str, epoch: int) -> Actor:
    """The member of a session begun under ``epoch``, re-read now (roles taken away apply at once), or
    ``SessionEnded``: deactivated, removed, or the password reset or changed since (the epoch moved on)."""
    with ws.read() as conn:
        m = read_member(conn, member_id)
    return check_session_member(member_id, m is not None and bool(m["active"]), m["roles"] if m else None,
                                int(m["session_epoch"]) if m else None, epoch)


def check_session_member(member_id: str, active: bool, roles: str | None, member_epoch: int | None,
                         epoch: int) -> Actor:
    """The member as they are now (``active``, ``roles``, ``member_epoch``: their row, read by the caller)
    if a session begun under ``epoch`` may go on; else ``SessionEnded``."""
    if not active or roles is None or member_epoch is None:
        raise session_ended("member deactivated")
    if member_epoch != epoch:
        raise session_ended("password changed or reset")
    return Actor(member_id, frozenset(r for r in roles.split(",") if r))
