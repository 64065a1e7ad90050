"""The member commands by the names the CLI and the intake endpoint use (``members-add``, …), so that a
bank adds a member while the app runs: the CLI forwards them to the engine that holds the workspace, and
the engine performs exactly what it would have performed on a file it opened itself.

Passwords travel in the signed body (loopback, HMAC-signed with the engine's CLI token) and go straight to
the commands, which hash them; no answer, audit entry or log line carries one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.authz import load_actor
from engine.commands import members as cmd
from engine.commands.operation import Answer, BadRequest, Operation, optional_text_param, text_param

if TYPE_CHECKING:
    from engine.runtime import Engine


def _password(p: dict[str, Any], name: str) -> str:
    """A password as given (spaces are the rules' business, not stripped here); never echoed."""
    value = p.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"'{name}' must be a non-empty string")
    return value


def _roles(p: dict[str, Any]) -> str | list[str]:
    value = p.get("roles")
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(r, str) for r in value)):
        return value
    raise BadRequest("'roles' must be a comma-separated string or a list of role names")


def _add(engine: Engine, p: dict[str, Any]) -> Answer:
    actor = load_actor(engine.ws, text_param(p, "member"))
    name = text_param(p, "name").strip()
    password = _password(p, "password") if p.get("password") is not None else None
    email = optional_text_param(p, "email")
    roles = cmd.add_member(engine.ws, actor, name, _roles(p), password, email=email,
                           display_name=optional_text_param(p, "display_name"))
    how = "with the password given" if password is not None else f"through single sign-on as {email}"
    return Answer([f"member {name} added with roles {', '.join(roles)}; they sign in {how}."],
                  {"member": name, "roles": roles})


def _list(engine: Engine, p: dict[str, Any]) -> Answer:
    views = cmd.list_members(engine.ws)
    lines = [f"{'member':20} {'roles':32} {'status':12} {'sign-in':26} since"]
    for v in views:
        sign_in = ", ".join(filter(None, ["password" if v.has_password else "",
                                          (f"sso {'linked' if v.sso_linked else 'by e-mail'}" if v.email or v.sso_linked
                                           else "")])) or "none"
        lines.append(f"{v.member_id:20} {', '.join(v.roles):32} {'active' if v.active else 'deactivated':12} "
                     f"{sign_in:26} {v.created_at:%Y-%m-%d}" + (f"  {v.email}" if v.email else ""))
    return Answer(lines, {"members": [{"member": v.member_id, "display_name": v.display_name, "roles": list(v.roles),
                                       "active": v.active, "email": v.email, "sso_linked": v.sso_linked,
                                       "has_password": v.has_password} for v in views]})


def _roles_cmd(engine: Engine, p: dict[str, Any]) -> Answer:
    actor = load_actor(engine.ws, text_param(p, "member"))
    name = text_param(p, "name").strip()
    roles = cmd.set_roles(engine.ws, actor, name, _roles(p))
    return Answer([f"{name} now holds {', '.join(roles)}; it applies at their next page view or command."],
                  {"member": name, "roles": roles})


def _deactivate(engine: Engine, p: dict[str, Any]) -> Answer:
    actor = load_actor(engine.ws, text_param(p, "member"))
    name = text_param(p, "name").strip()
    cmd.deactivate_member(engine.ws, actor, name, optional_text_param(p, "reason"))
    return Answer([f"{name} deactivated: they can no longer sign in or act, and their open sessions end at their "
                   "next page view."], {"member": name, "active": False})


def _reactivate(engine: Engine, p: dict[str, Any]) -> Answer:
    actor = load_actor(engine.ws, text_param(p, "member"))
    name = text_param(p, "name").strip()
    cmd.reactivate_member(engine.ws, actor, name)
    return Answer([f"{name} reactivated: they can sign in again with the roles they held."],
                  {"member": name, "active": True})


def _reset(engine: Engine, p: dict[str, Any]) -> Answer:
    actor = load_actor(engine.ws, text_param(p, "member"))
    name = text_param(p, "name").strip()
    cmd.reset_password(engine.ws, actor, name, _password(p, "password"))
    return Answer([f"password of {name} reset; their open sessions end. Give them the new password by another "
                   "channel than the one you use for their member name."], {"member": name})


def _password_cmd(engine: Engine, p: dict[str, Any]) -> Answer:
    member = text_param(p, "member").strip()
    cmd.change_own_password(engine.ws, member, _password(p, "current_password"), _password(p, "new_password"),
                            channel="cli")
    return Answer([f"password of {member} changed; their other sessions end."], {"member": member})


def _email(engine: Engine, p: dict[str, Any]) -> Answer:
    actor = load_actor(engine.ws, text_param(p, "member"))
    name = text_param(p, "name").strip()
    email = cmd.set_email(engine.ws, actor, name, optional_text_param(p, "email"))
    return Answer([f"{name}'s e-mail is now {email}." if email else f"{name}'s e-mail cleared."],
                  {"member": name, "email": email})


MEMBER_OPERATIONS: dict[str, Operation] = {
    "members-add": Operation(_add, ("member", "name", "roles"), ("password", "email", "display_name")),
    "members-list": Operation(_list, ()),
    "members-roles": Operation(_roles_cmd, ("member", "name", "roles")),
    "members-deactivate": Operation(_deactivate, ("member", "name"), ("reason",)),
    "members-reactivate": Operation(_reactivate, ("member", "name")),
    "members-reset-password": Operation(_reset, ("member", "name", "password")),
    "members-password": Operation(_password_cmd, ("member", "current_password", "new_password")),
    "members-email": Operation(_email, ("member", "name"), ("email",)),
}
