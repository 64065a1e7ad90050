"""Single sign-on, the pure part: who the identity provider says signed in, and which roles its groups give.

Streamlit's ``st.login`` does the OpenID Connect exchange (its ``[auth]`` section in
``.streamlit/secrets.toml`` holds the client secret); what reaches Runledger is the ID token's claims.
``Identity`` reads them; ``SsoPolicy`` is the role mapping, which is not a secret but a control that is
reviewed like code, so it lives in a file of its own (``engine.sso.load_sso_policy``)::

    groups_claim = "groups"            # the claim listing the member's groups (a dotted path reaches in)
    require_verified_email = true      # match by e-mail only when the provider vouches for it
    [group_roles]                      # group → roles; leave it out to keep the roles admins assign
    "runledger-operators" = ["operator"]
    "runledger-admins" = ["admin"]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.roles import ROLES

POLICY_KEYS = ("groups_claim", "require_verified_email", "group_roles")


class SsoConfigError(ValueError):
    """The role mapping cannot be used; the message names the file, the key and what it must be."""


@dataclass(frozen=True)
class SsoPolicy:
    groups_claim: str = "groups"
    group_roles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    require_verified_email: bool = True

    @property
    def maps_roles(self) -> bool:
        """Roles come from the groups claim (recomputed at every sign-in), not from what admins assigned."""
        return bool(self.group_roles)

    def roles_for(self, groups: tuple[str, ...]) -> list[str]:
        return sorted({r for g in groups for r in self.group_roles.get(g, ())})


def parse_sso_policy(data: Mapping[str, Any], where: str) -> SsoPolicy:
    """The policy from a parsed TOML table; ``where`` (the file) is named in every refusal."""
    unknown = sorted(set(data) - set(POLICY_KEYS))
    if unknown:
        raise SsoConfigError(f"{where}: unknown setting {', '.join(unknown)}; the settings are "
                             f"{', '.join(POLICY_KEYS)}.")
    claim = data.get("groups_claim", "groups")
    if not isinstance(claim, str) or not claim.strip():
        raise SsoConfigError(f"{where}: groups_claim must be the name of a claim, like \"groups\".")
    verified = data.get("require_verified_email", True)
    if not isinstance(verified, bool):
        raise SsoConfigError(f"{where}: require_verified_email must be true or false.")
    table = data.get("group_roles", {})
    if not isinstance(table, Mapping):
        raise SsoConfigError(f"{where}: group_roles must be a table of group = [roles].")
    mapping: dict[str, tuple[str, ...]] = {}
    for group, roles in table.items():
        names = [roles] if isinstance(roles, str) else roles
        if not isinstance(names, list) or not names or not all(isinstance(r, str) for r in names):
            raise SsoConfigError(f"{where}: group_roles.{group} must be a list of roles, like [\"operator\"].")
        bad = sorted(set(names) - set(ROLES))
        if bad:
            raise SsoConfigError(f"{where}: group_roles.{group} names no such role {', '.join(bad)}; the roles "
                                 f"are {', '.join(ROLES)}.")
        mapping[str(group)] = tuple(sorted(set(names)))
    return SsoPolicy(claim.strip(), mapping, verified)


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by name, or by a dotted path into nested claims (``realm_access.roles``)."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


@dataclass(frozen=True)
class Identity:
    """Who the identity provider says signed in, from the ID token's claims."""

    subject: str
    issuer: str | None
    email: str | None
    email_verified: bool
    groups: tuple[str, ...]
    issued_at: float | None  # the token's ``iat``: when the provider vouched for this sign-in
    name: str | None = None

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any], groups_claim: str = "groups") -> Identity | None:
        """None when the claims carry no subject (then nobody can be matched)."""
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip():
            return None
        email = claims.get("email")
        raw_groups = _claim(claims, groups_claim)
        groups = (raw_groups,) if isinstance(raw_groups, str) else tuple(
            str(g) for g in raw_groups) if isinstance(raw_groups, (list, tuple)) else ()
        iat = claims.get("iat")
        verified = claims.get("email_verified")
        return cls(subject=subject.strip(), issuer=claims.get("iss") if isinstance(claims.get("iss"), str) else None,
                   email=email.strip().lower() if isinstance(email, str) and email.strip() else None,
                   email_verified=verified is True or verified == "true",
                   groups=groups, issued_at=float(iat) if isinstance(iat, (int, float)) else None,
                   name=claims.get("name") if isinstance(claims.get("name"), str) else None)

    def is_fresh(self, now: float, max_age_seconds: float) -> bool:
        """The provider vouched for this sign-in within ``max_age_seconds`` (a minute's clock skew allowed):
        an older identity cookie does not open a new session without a new round trip to the provider."""
        if self.issued_at is None:
            return False
        return -60 <= now - self.issued_at <= max_age_seconds

    def describe(self) -> str:
        """How the member is named to themselves in a refusal: the e-mail, else the subject."""
        return self.email or f"subject {self.subject}"
