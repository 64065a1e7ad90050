"""Who may do what. Every engine command checks its actor here itself; hiding a button is not enough.

A refusal raises ``NotAuthorized`` with a sentence naming the member, the act and the role it needs,
and is written to the audit log (in its own transaction: nothing else happened).
"""

from __future__ import annotations

from dataclasses import dataclass

import argon2

from store.members import read_member
from store.workspace import Workspace

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"view"}),
    "auditor": frozenset({"view", "export"}),
    "operator": frozenset({"view", "retry", "cancel", "run_now"}),
    "approver": frozenset({"view", "approve", "dismiss"}),
    "admin": frozenset({"view", "manage_definitions", "manage_members"}),
}
PERMISSION_ROLES = {p: sorted(r for r, ps in ROLE_PERMISSIONS.items() if p in ps)
                    for p in set().union(*ROLE_PERMISSIONS.values())}

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


@dataclass(frozen=True)
class Actor:
    member_id: str
    roles: frozenset[str]

    @property
    def audit_name(self) -> str:
        return f"member:{self.member_id}"

    def may(self, permission: str) -> bool:
        return any(permission in ROLE_PERMISSIONS.get(r, frozenset()) for r in self.roles)


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
    with ws.transaction() as tx:
        tx.audit(actor.audit_name, "command.refused", entity_kind, entity_id,
                 {"permission": permission, "reason": message})
    raise NotAuthorized(message)
