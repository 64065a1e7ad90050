"""Single sign-on: admitting the member an identity provider vouched for, or refusing and auditing.

Matching, in this order: the member whose recorded ``sso_subject`` is the token's ``sub``; else the member
whose e-mail is the token's e-mail, when the provider says it is verified (``require_verified_email``), and
who is not already linked to another subject — the subject is then recorded on the member (audited as
``member.sso_linked``), and from then on it alone finds them. An e-mail already linked to another subject is
refused: a reassigned address must not inherit someone's membership.

Roles: with a group mapping, the roles the groups claim maps to, recomputed at every sign-in and written
to the member (``member.roles_changed``, source ``sso``) when they differ; an identity whose groups map to
no role is refused. Without a mapping, the roles an admin assigned. The last active admin keeps the admin
role even if the groups no longer give it (the audit entry says so), as with an admin's own changes.

An identity that matches no member, a deactivated member, or no role is refused with a sentence and
audited as ``member.sign_in_refused`` with the provider's subject and e-mail — never let in as a viewer.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from core.roles import Actor
from core.sso import Identity, SsoConfigError, SsoPolicy, parse_sso_policy
from engine.authz import SignInRefused
from store import members as member_store
from store import sessions as session_store
from store.tx import Tx
from store.workspace import Workspace

DEFAULT_POLICY_FILE = ".streamlit/sso.toml"
SSO_CHANNEL = "sso"


class IdentityRefused(SignInRefused):
    """The identity provider signed someone in whom this workspace does not admit; the message says why."""


def load_sso_policy(path: str | None = None) -> SsoPolicy:
    """The role mapping from ``path``, else ``$RUNLEDGER_SSO_CONFIG``, else ``.streamlit/sso.toml`` if it
    exists; with none, roles are the ones admins assign. ``SsoConfigError`` names a file that cannot be used."""
    chosen = path or os.environ.get("RUNLEDGER_SSO_CONFIG") or None
    file = Path(chosen or DEFAULT_POLICY_FILE)
    if not file.exists():
        if chosen:
            raise SsoConfigError(f"{file}: no such file (RUNLEDGER_SSO_CONFIG names it); create it or unset the "
                                 "variable.")
        return SsoPolicy()
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SsoConfigError(f"{file}: cannot be read as TOML ({exc}).") from None
    return parse_sso_policy(data, str(file))


class _Refusal(Exception):
    def __init__(self, reason: str, message: str, member_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.message, self.member_id = reason, message, member_id


def _no_member(identity: Identity) -> _Refusal:
    return _Refusal("no member has this identity",
                    f"Your identity provider signed you in as {identity.describe()}, but no member of this Runledger "
                    "workspace has that identity, so you are not let in. Ask a Runledger administrator to add you "
                    "as a member with this e-mail address.")


def _match(tx: Tx, identity: Identity, policy: SsoPolicy) -> tuple[dict[str, Any], str]:
    m = member_store.read_member_by_subject(tx.conn, identity.subject)
    if m is not None:
        return m, "subject"
    if identity.email is None:
        raise _no_member(identity)
    if policy.require_verified_email and not identity.email_verified:
        raise _Refusal("e-mail not verified by the identity provider",
                       f"Your identity provider signed you in as {identity.email} but does not say that address "
                       "is verified, so it cannot be used to find your membership. Ask your identity administrator "
                       "to verify it, or a Runledger administrator to link your account.")
    found = member_store.read_members_by_email(tx.conn, identity.email)
    if not found:
        raise _no_member(identity)
    m = found[0]
    if m["sso_subject"] and m["sso_subject"] != identity.subject:
        raise _Refusal("e-mail belongs to a member linked to another identity",
                       f"The member with the e-mail {identity.email} is linked to another account at the identity "
                       "provider, so this one is not let in as them. Ask a Runledger administrator.", m["member_id"])
    return m, "email"


def _roles(tx: Tx, m: dict[str, Any], identity: Identity, policy: SsoPolicy, actor: str) -> list[str]:
    stored = [r for r in m["roles"].split(",") if r]
    if not policy.maps_roles:
        return stored
    mapped = policy.roles_for(identity.groups)
    if not mapped:
        raise _Refusal("groups map to no role",
                       f"Your identity provider signed you in as {identity.describe()}, but none of your groups "
                       f"({', '.join(identity.groups) or 'none'}) gives a Runledger role, so you are not let in. Ask "
                       "your identity administrator for the right group.", m["member_id"])
    kept: list[str] = []
    if "admin" in stored and "admin" not in mapped and member_store.read_active_admins(tx.conn) == [m["member_id"]]:
        kept = ["admin"]  # the workspace keeps an admin: see the module's note
    roles = sorted({*mapped, *kept})
    if roles != stored:
        member_store.set_member_roles(tx, m["member_id"], roles)
        tx.audit(actor, "member.roles_changed", "member", m["member_id"],
                 {"from": stored, "to": roles, "source": "sso", "groups": list(identity.groups),
                  **({"kept": kept, "why_kept": "last active admin"} if kept else {})})
    return roles


def sign_in_with_identity(ws: Workspace, identity: Identity, policy: SsoPolicy,
                          session_id: str | None = None) -> Actor:
    """Admit the member this identity is (audited ``member.signed_in``, channel ``sso``), or raise
    ``IdentityRefused`` (audited ``member.sign_in_refused``). ``session_id``: a session (``engine.sessions``)
    that the admission begins, in its transaction."""
    try:
        with ws.transaction() as tx:  # matched, linked and given roles in one transaction
            m, matched_by = _match(tx, identity, policy)
            if not m["active"]:
                raise _Refusal("member is deactivated",
                               f"The membership of {m['member_id']} in this workspace is deactivated, so you are not "
                               "let in. Ask a Runledger administrator if this is a mistake.", m["member_id"])
            actor = f"member:{m['member_id']}"
            roles = _roles(tx, m, identity, policy, actor)
            if matched_by == "email":
                member_store.set_sso_subject(tx, m["member_id"], identity.subject)
                tx.audit(actor, "member.sso_linked", "member", m["member_id"],
                         {"subject": identity.subject, "issuer": identity.issuer, "email": identity.email})
            if session_id is not None:
                session_store.create_session(tx, session_id, m["member_id"], SSO_CHANNEL, int(m["session_epoch"]),
                                             tx.now())
            tx.audit(actor, "member.signed_in", "member", m["member_id"],
                     {"channel": SSO_CHANNEL, "roles": roles, "matched_by": matched_by, "subject": identity.subject,
                      "issuer": identity.issuer})
    except _Refusal as refusal:
        with ws.transaction() as tx:
            tx.audit(f"anonymous:{SSO_CHANNEL}", "member.sign_in_refused", "member",
                     refusal.member_id or f"sso:{identity.subject[:64]}",
                     {"channel": SSO_CHANNEL, "reason": refusal.reason, "subject": identity.subject,
                      "email": identity.email, "issuer": identity.issuer, "groups": list(identity.groups)})
        raise IdentityRefused(refusal.message) from None
    return Actor(m["member_id"], frozenset(roles))
