"""Who may do what: the roles a member holds and the permissions each grants.

Pure data. Every engine command checks its actor against this itself (``engine.authz.check_permission``);
a page that hides a button only says in advance what the command would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"view"}),
    "auditor": frozenset({"view", "export"}),
    # The compliance officer who operates the automations also reports on them (the spec's Sigrid produces
    # the audit committee brief), so operators export as auditors do; viewers only look.
    "operator": frozenset({"view", "retry", "cancel", "run_now", "export", "import_subjects"}),
    # Approvers also disposition failures that will not be retried (waive, resolved outside, superseded):
    # a decision about risk, as an approval is.
    "approver": frozenset({"view", "approve", "dismiss", "disposition"}),
    # Loading the organization's subjects is the operators' routine and an admin's set-up work. Retention
    # (archiving closed runs past the horizon) and legal holds (which keep them) are an admin's.
    "admin": frozenset({"view", "manage_definitions", "manage_members", "import_subjects", "manage_retention"}),
}
ROLES = tuple(ROLE_PERMISSIONS)
PERMISSION_ROLES = {p: sorted(r for r, ps in ROLE_PERMISSIONS.items() if p in ps)
                    for p in set().union(*ROLE_PERMISSIONS.values())}


@dataclass(frozen=True)
class Actor:
    """A signed-in member acting: who, and the roles they hold."""

    member_id: str
    roles: frozenset[str]

    @property
    def audit_name(self) -> str:
        return f"member:{self.member_id}"

    def may(self, permission: str) -> bool:
        return any(permission in ROLE_PERMISSIONS.get(r, frozenset()) for r in self.roles)
