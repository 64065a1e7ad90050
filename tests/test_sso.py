"""Single sign-on, the engine's part: which member an identity provider's ID token is (by subject, else by a
verified e-mail), which roles its groups give through the configured mapping, and the refusals — an
unknown identity, an unverified e-mail, a deactivated member, groups that map to no role — each audited
``member.sign_in_refused`` and never let in as a viewer. The browser round trip is tests/browser/test_sso.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.sso import Identity, SsoConfigError, SsoPolicy, parse_sso_policy
from engine.commands import members as cmd
from engine.sso import IdentityRefused, load_sso_policy, sign_in_with_identity
from store.members import read_member
from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import make_engine_fixture, pg_server_fixture, pg_template_fixture  # noqa: F401
from tests.support import actor, audit_of, quick_password_hash

NOW = 1_800_000_000
MAPPING = SsoPolicy(group_roles={"rl-ops": ("operator",), "rl-approvers": ("approver",), "rl-admins": ("admin",)})


@pytest.fixture(autouse=True)
def _quick_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.commands.members.hash_password", quick_password_hash)


def claims(sub: str, email: str | None = None, groups: list[str] | None = None, verified: bool = True,
           **more: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"sub": sub, "iss": "http://localhost:1", "iat": NOW, "email_verified": verified, **more}
    if email:
        out["email"] = email
    if groups is not None:
        out["groups"] = groups
    return out


def identity(*args: Any, **kw: Any) -> Identity:
    found = Identity.from_claims(claims(*args, **kw))
    assert found is not None
    return found


@pytest.fixture
def engine(make_engine: Any) -> Any:
    e = make_engine()
    cmd.add_member(e.ws, actor(e, "admin"), "ola", "viewer", None, email="Ola.Nordmann@Bank.example")
    return e


def refusals(engine: Any) -> list[dict[str, Any]]:
    return audit_of(engine, "member.sign_in_refused")


def test_a_member_is_found_by_verified_email_then_by_subject(engine: Any) -> None:
    who = sign_in_with_identity(engine.ws, identity("idp-123", "ola.nordmann@bank.example"), SsoPolicy())
    assert (who.member_id, who.roles) == ("ola", frozenset({"viewer"}))  # no mapping: the roles an admin gave
    with engine.ws.read() as conn:
        assert read_member(conn, "ola")["sso_subject"] == "idp-123"  # type: ignore[index]
    assert [a["event"] for a in audit_of(engine) if a["entity_id"] == "ola"][-2:] == \
        ["member.sso_linked", "member.signed_in"]
    # from then on the subject alone finds them, whatever e-mail the provider sends
    again = sign_in_with_identity(engine.ws, identity("idp-123", "renamed@bank.example"), SsoPolicy())
    assert again.member_id == "ola"
    # and the address no longer opens the membership for another subject
    with pytest.raises(IdentityRefused, match="linked to another account"):
        sign_in_with_identity(engine.ws, identity("idp-999", "ola.nordmann@bank.example"), SsoPolicy())


def test_roles_come_from_the_groups_claim_through_the_mapping(engine: Any) -> None:
    who = sign_in_with_identity(engine.ws, identity("idp-123", "ola.nordmann@bank.example",
                                                    ["rl-ops", "rl-approvers", "unrelated"]), MAPPING)
    assert who.roles == frozenset({"operator", "approver"})
    payload = audit_of(engine, "member.roles_changed", "ola")[-1]["payload"]
    assert payload["from"] == ["viewer"] and payload["to"] == ["approver", "operator"] and payload["source"] == "sso"
    # a group taken away at the provider takes the role away at the next sign-in
    assert sign_in_with_identity(engine.ws, identity("idp-123", None, ["rl-ops"]), MAPPING).roles == \
        frozenset({"operator"})


def test_an_unknown_identity_is_refused_and_audited_never_let_in_as_a_viewer(engine: Any) -> None:
    with pytest.raises(IdentityRefused, match="no member of this Runledger workspace has that identity"):
        sign_in_with_identity(engine.ws, identity("idp-777", "stranger@bank.example", ["rl-ops"]), MAPPING)
    refused = refusals(engine)[-1]
    assert refused["actor"] == "anonymous:sso" and refused["entity_id"] == "sso:idp-777"
    assert refused["payload"]["reason"] == "no member has this identity"
    assert refused["payload"]["email"] == "stranger@bank.example" and refused["payload"]["groups"] == ["rl-ops"]
    assert not audit_of(engine, "member.signed_in")


def test_groups_that_map_to_no_role_are_refused(engine: Any) -> None:
    with pytest.raises(IdentityRefused, match="none of your groups"):
        sign_in_with_identity(engine.ws, identity("idp-123", "ola.nordmann@bank.example", ["marketing"]), MAPPING)
    assert refusals(engine)[-1]["payload"]["reason"] == "groups map to no role"
    with engine.ws.read() as conn:  # nothing linked, no role changed
        m = read_member(conn, "ola")
    assert m is not None and m["sso_subject"] is None and m["roles"] == "viewer"


def test_an_unverified_email_or_a_deactivated_member_is_refused(engine: Any) -> None:
    with pytest.raises(IdentityRefused, match="does not say that address is verified"):
        sign_in_with_identity(engine.ws, identity("idp-123", "ola.nordmann@bank.example", verified=False),
                              SsoPolicy())
    cmd.deactivate_member(engine.ws, actor(engine, "admin"), "ola")
    with pytest.raises(IdentityRefused, match="is deactivated"):
        sign_in_with_identity(engine.ws, identity("idp-123", "ola.nordmann@bank.example"), SsoPolicy())
    assert [r["payload"]["reason"] for r in refusals(engine)] == ["e-mail not verified by the identity provider",
                                                                  "member is deactivated"]


def test_the_last_active_admin_keeps_admin_when_the_groups_no_longer_give_it(make_engine: Any) -> None:
    engine = make_engine()
    cmd.set_email(engine.ws, actor(engine, "admin"), "admin", "admin@bank.example")
    who = sign_in_with_identity(engine.ws, identity("idp-adm", "admin@bank.example", ["rl-ops"]), MAPPING)
    assert who.roles == frozenset({"admin", "operator"})


def test_an_sso_only_member_has_no_password_to_sign_in_with(engine: Any) -> None:
    from engine.authz import SignInRefused, sign_in
    with pytest.raises(SignInRefused):
        sign_in(engine.ws, "ola", "")
    assert audit_of(engine, "member.sign_in_failed")[-1]["payload"]["reason"] == \
        "member has no password (single sign-on only)"


def test_the_mapping_file_is_checked_saying_what_is_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = tmp_path / "sso.toml"
    good.write_text('groups_claim = "roles"\n[group_roles]\n"rl-ops" = ["operator"]\n"rl-admins" = "admin"\n')
    policy = load_sso_policy(str(good))
    assert policy.groups_claim == "roles" and policy.roles_for(("rl-ops", "rl-admins")) == ["admin", "operator"]
    with pytest.raises(SsoConfigError, match=r"group_roles.rl-x names no such role root; the roles are viewer"):
        parse_sso_policy({"group_roles": {"rl-x": ["root"]}}, "sso.toml")
    with pytest.raises(SsoConfigError, match="unknown setting group_role;"):
        parse_sso_policy({"group_role": {}}, "sso.toml")
    monkeypatch.setenv("RUNLEDGER_SSO_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(SsoConfigError, match="no such file"):
        load_sso_policy()


def test_an_identity_is_read_from_the_claims() -> None:
    found = Identity.from_claims({"sub": " s1 ", "email": " A@B.example ", "email_verified": True, "iat": NOW,
                                  "realm_access": {"roles": ["rl-ops"]}}, "realm_access.roles")
    assert found is not None and (found.subject, found.email, found.groups) == ("s1", "a@b.example", ("rl-ops",))
    assert found.is_fresh(NOW + 200, 300) and not found.is_fresh(NOW + 400, 300)
    assert Identity.from_claims({"email": "a@b.example"}) is None
