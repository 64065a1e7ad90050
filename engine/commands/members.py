"""Member commands: start a workspace with its first admin, add a member, change roles, deactivate and
reactivate, reset a password (admins), change one's own password (any member, knowing the current one),
set the e-mail single sign-on matches.

Each checks the actor's permission itself (``manage_members``: admins) and writes its audit entry in the
transaction of its change. The workspace is never left without an active admin: a change that would
remove or demote the last one is refused, and the refusal audited. Passwords are checked against
``core.members`` (at least ``MIN_PASSWORD_LENGTH`` characters), hashed with argon2 before the write
lock is taken, and never written anywhere else: no audit entry, message or log line carries one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.members import (
                                       MemberRuleBroken,
                                       check_member_id,
                                       check_password,
                                       normalize_email,
                                       parse_roles,
)
from core.roles import Actor
from engine.authz import (
                                       SignInRefused,
                                       audit_refusal,
                                       check_permission,
                                       check_sign_in_throttle,
                                       hash_password,
                                       load_actor,
                                       verify_password,
)
from engine.commands.refusals import AlreadyDone, CommandRefused, NotFound
from store import members as member_store
from store import sessions as session_store
from store.tx import Tx
from store.workspace import Workspace


class MemberRefused(CommandRefused):
    """The change breaks a rule about members (a name taken, a password too short, …); nothing changed."""


class LastAdminRefused(CommandRefused):
    """The change would leave the workspace without an active admin."""


class WorkspaceNotEmpty(CommandRefused):
    """``init`` on a workspace that already has members."""


@dataclass(frozen=True)
class MemberView:
    """A member as the list shows them: never the password hash."""

    member_id: str
    display_name: str
    roles: tuple[str, ...]
    active: bool
    email: str | None
    sso_linked: bool
    has_password: bool
    created_at: Any


def _rule(check: Any, *args: Any) -> Any:
    try:
        return check(*args)
    except MemberRuleBroken as exc:
        raise MemberRefused(str(exc)) from None


def _require(tx: Tx, member_id: str) -> dict[str, Any]:
    m = member_store.read_member(tx.conn, member_id)
    if m is None:
        raise NotFound(f"There is no member {member_id!r}. `python -m engine members list` shows who there is.")
    return m


def _roles_of(m: dict[str, Any]) -> list[str]:
    return [r for r in m["roles"].split(",") if r]


def _last_admin_problem(tx: Tx, member_id: str, losing_admin: bool) -> str | None:
    if losing_admin and member_store.read_active_admins(tx.conn) == [member_id]:
        return (f"{member_id} is the last active admin of this workspace; it would have none left to manage "
                "members. Give another member the admin role first.")
    return None


def _refuse_last_admin(ws: Workspace, actor: Actor, act: str, member_id: str, message: str) -> None:
    audit_refusal(ws, actor, act, "member", member_id, message, rule="last active admin")
    raise LastAdminRefused(message)


def _check_email_free(tx: Tx, email: str, member_id: str) -> None:
    taken = [m["member_id"] for m in member_store.read_members_by_email(tx.conn, email) if m["member_id"] != member_id]
    if taken:
        raise MemberRefused(f"The e-mail {email} is already {taken[0]}'s; single sign-on finds a member by it, so "
                            "two members cannot share one.")


# --- a new workspace -------------------------------------------------------------------------------
def init_workspace(ws: Workspace, admin_id: str, password: str, started_by: dict[str, str]) -> None:
    """The first admin of a workspace that has no members yet (``started_by``: who ran it, e.g. the OS user
    and host, for the audit entry)."""
    admin_id = _rule(check_member_id, admin_id.strip())
    password_hash = hash_password(_rule(check_password, password, admin_id))
    with ws.transaction() as tx:
        existing = member_store.count_members(tx.conn)
        if existing:
            raise WorkspaceNotEmpty(
                f"This workspace already has {existing} member{'s' if existing != 1 else ''}; init starts a new, "
                "empty workspace only. Add a member with `members add NAME --roles ROLE --as ADMIN`, or choose "
                "another file with --db.")
        member_store.insert_member(tx, admin_id, admin_id, password_hash, ["admin"], None)
        tx.audit("engine:init", "workspace.initialized", "workspace", "workspace", {"admin": admin_id, **started_by})
        tx.audit("engine:init", "member.added", "member", admin_id,
                 {"roles": ["admin"], "password": "set", "email": None, "display_name": admin_id})


# --- admins' commands ------------------------------------------------------------------------------
def add_member(ws: Workspace, actor: Actor, member_id: str, roles: str | list[str], password: str | None, *,
               email: str | None = None, display_name: str | None = None) -> list[str]:
    """Add an active member; ``password`` None makes one who signs in only through single sign-on (found by
    ``email``). Returns the roles given."""
    member_id = member_id.strip()
    check_permission(ws, actor, "manage_members", "member", member_id)
    member_id = _rule(check_member_id, member_id)
    chosen = _rule(parse_roles, roles)
    email = _rule(normalize_email, email) if email else None
    if password is None and email is None:
        raise MemberRefused(f"{member_id} would have neither a password nor an e-mail, and so no way to sign in: "
                            "give a password, or an e-mail for single sign-on (--email).")
    password_hash = hash_password(_rule(check_password, password, member_id)) if password is not None else ""
    name = (display_name or "").strip() or member_id
    with ws.transaction() as tx:
        if member_store.read_member(tx.conn, member_id) is not None:
            raise MemberRefused(f"There is already a member {member_id!r}; choose another name, or change their "
                                "roles with `members roles`.")
        if email:
            _check_email_free(tx, email, member_id)
        member_store.insert_member(tx, member_id, name, password_hash, chosen, email)
        tx.audit(actor.audit_name, "member.added", "member", member_id,
                 {"roles": chosen, "email": email, "display_name": name,
                  "password": "set" if password is not None else "none (single sign-on only)"})
    return chosen


def set_roles(ws: Workspace, actor: Actor, member_id: str, roles: str | list[str]) -> list[str]:
    """Replace a member's roles; returns them. Applies at the member's next page view or command."""
    check_permission(ws, actor, "manage_members", "member", member_id)
    chosen = _rule(parse_roles, roles)
    refusal: str | None = None
    with ws.transaction() as tx:
        m = _require(tx, member_id)
        before = _roles_of(m)
        if before == chosen:
            raise AlreadyDone(f"{member_id} already holds exactly {', '.join(chosen)}; nothing changed.")
        refusal = _last_admin_problem(tx, member_id, "admin" in before and "admin" not in chosen)
        if refusal is None:
            member_store.set_member_roles(tx, member_id, chosen)
            tx.audit(actor.audit_name, "member.roles_changed", "member", member_id,
                     {"from": before, "to": chosen, "source": "admin"})
    if refusal:
        _refuse_last_admin(ws, actor, "manage_members", member_id, refusal)
    return chosen


def deactivate_member(ws: Workspace, actor: Actor, member_id: str, reason: str | None = None) -> None:
    """The member can no longer sign in or act, and their sessions end at their next page view."""
    check_permission(ws, actor, "manage_members", "member", member_id)
    refusal: str | None = None
    with ws.transaction() as tx:
        m = _require(tx, member_id)
        if not m["active"]:
            raise AlreadyDone(f"{member_id} is already deactivated.")
        refusal = _last_admin_problem(tx, member_id, "admin" in _roles_of(m))
        if refusal is None:
            member_store.set_member_active(tx, member_id, False)
            tx.audit(actor.audit_name, "member.deactivated", "member", member_id,
                     {"reason": (reason or "").strip() or None, "roles": _roles_of(m)})
    if refusal:
        _refuse_last_admin(ws, actor, "manage_members", member_id, refusal)


def reactivate_member(ws: Workspace, actor: Actor, member_id: str) -> None:
    check_permission(ws, actor, "manage_members", "member", member_id)
    with ws.transaction() as tx:
        m = _require(tx, member_id)
        if m["active"]:
            raise AlreadyDone(f"{member_id} is already active.")
        member_store.set_member_active(tx, member_id, True)
        tx.audit(actor.audit_name, "member.reactivated", "member", member_id, {"roles": _roles_of(m)})


def reset_password(ws: Workspace, actor: Actor, member_id: str, password: str) -> None:
    """An admin sets a member's password without knowing the old one; the member's sessions end."""
    check_permission(ws, actor, "manage_members", "member", member_id)
    if member_id == actor.member_id:
        raise MemberRefused("To change your own password, use `members password` (or the Members page), which asks "
                            "for your current one; a reset is for another member's.")
    password_hash = hash_password(_rule(check_password, password, member_id))
    with ws.transaction() as tx:
        _require(tx, member_id)
        member_store.set_password_hash(tx, member_id, password_hash)
        tx.audit(actor.audit_name, "member.password_reset", "member", member_id, {"sessions": "ended"})


def set_email(ws: Workspace, actor: Actor, member_id: str, email: str | None) -> str | None:
    """Set (or, with None, clear) the e-mail by which single sign-on first finds the member."""
    check_permission(ws, actor, "manage_members", "member", member_id)
    email = _rule(normalize_email, email) if email else None
    with ws.transaction() as tx:
        m = _require(tx, member_id)
        if (m["email"] or None) == email:
            raise AlreadyDone(f"{member_id}'s e-mail is already {email or 'unset'}; nothing changed.")
        if email:
            _check_email_free(tx, email, member_id)
        member_store.set_member_email(tx, member_id, email)
        tx.audit(actor.audit_name, "member.email_changed", "member", member_id, {"from": m["email"], "to": email})
    return email


def list_members(ws: Workspace) -> list[MemberView]:
    with ws.read() as conn:
        rows = member_store.read_members(conn)
    return [MemberView(m["member_id"], m["display_name"], tuple(_roles_of(m)), bool(m["active"]), m["email"],
                       bool(m["sso_subject"]), bool(m["password_hash"]), m["created_at"]) for m in rows]


# --- a member's own password -----------------------------------------------------------------------
def change_own_password(ws: Workspace, member_id: str, current: str, new: str, channel: str = "cli",
                        session_token: str | None = None) -> int:
    """A member changes their own password, proving the current one: a wrong one counts as a failed
    sign-in (so guessing it is throttled the same way). The member's other sessions end; returns the new
    session epoch, under which the session that made the change (``session_token``: its row is moved to the
    new epoch in the change's transaction, so no replica sees it end meanwhile) carries on."""
    actor = load_actor(ws, member_id)
    try:
        check_sign_in_throttle(ws, member_id, channel)
    except SignInRefused as exc:  # answered as every member command's refusal is
        raise MemberRefused(str(exc)) from None
    with ws.read() as conn:
        m = member_store.read_member(conn, member_id)
    if m is None:  # signed in a moment ago: only a concurrent removal gets here
        raise MemberRefused(f"there is no member {member_id!r} any more")
    if not m["password_hash"]:
        raise MemberRefused(f"{member_id} signs in through single sign-on and has no password here; change it at "
                            "your identity provider.")
    if not verify_password(m["password_hash"], current):
        with ws.transaction() as tx:
            tx.audit(f"anonymous:{channel}", "member.sign_in_failed", "member", member_id,
                     {"channel": channel, "reason": "wrong current password (password change)"})
        raise MemberRefused("The current password is not right; nothing changed. (Forgotten it? An administrator "
                            "can reset it.)")
    if new == current:
        raise MemberRefused("The new password is the current one; choose a different one.")
    password_hash = hash_password(_rule(check_password, new, member_id))
    with ws.transaction() as tx:
        epoch = member_store.set_password_hash(tx, member_id, password_hash)
        if session_token is not None:
            session_store.set_session_epoch(tx, session_store.session_id_for(session_token), member_id, epoch)
        tx.audit(actor.audit_name, "member.password_changed", "member", member_id,
                 {"channel": channel, "other_sessions": "ended"})
    return epoch
