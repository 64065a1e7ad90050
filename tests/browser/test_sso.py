"""Single sign-on in a real browser against a real OpenID provider: ``oidc-provider-mock`` serving on
loopback, Streamlit's ``st.login`` doing the OpenID Connect exchange (through Authlib), configured by a
``secrets.toml`` this test writes to its temp folder (never one in the repository). The workspace is a
new one (``init``, no demo) with an SSO-only member whose roles come from the provider's groups claim.

Sign-in, the role from the claim, the refusal of an identity no member has, and sign-out (through the
provider's end-session page) — then, with the server stopped, the audit trail of each.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cli.main import main as cli_main
from store.schema import audit_log
from store.workspace import Workspace
from tests.browser.support import AppServer, screenshot

ADMIN_PW = "correct horse battery staple"


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    """The identity provider on loopback, with two people it can sign in: Ola (in the approvers' group)
    and a stranger no member of the workspace is. Yields its base URL."""
    import os

    from oidc_provider_mock import User, run_server_in_thread
    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # plain http on loopback, for this test's provider only
    users = [User(sub="idp-ola", claims={"email": "ola@bank.example", "email_verified": True, "name": "Ola N.",
                                         "groups": ["rl-approvers", "staff"]}),
             User(sub="idp-stranger", claims={"email": "stranger@elsewhere.example", "email_verified": True,
                                              "groups": ["rl-approvers"]})]
    with run_server_in_thread(port=0, user_claims=users) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture(scope="module")
def sso_server(provider: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    tmp = tmp_path_factory.mktemp("sso")
    db = tmp / "bank.duckdb"
    pw = tmp / "pw.txt"
    pw.write_text(ADMIN_PW + "\n")
    out: list[str] = []
    assert cli_main(["--db", str(db), "init", "--admin", "boss", "--password-file", str(pw)], out.append) == 0, out
    assert cli_main(["--db", str(db), "members", "add", "ola", "--roles", "viewer", "--no-password",
                     "--email", "Ola@Bank.example", "--as", "boss"], out.append) == 0, out
    secrets_file = tmp / "secrets.toml"
    secrets_file.write_text(
        "[auth]\n"
        'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_hex(32)}"\n'
        'client_id = "runledger"\n'
        f'client_secret = "{secrets.token_hex(16)}"\n'
        f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n')
    policy = tmp / "sso.toml"
    policy.write_text('groups_claim = "groups"\n[group_roles]\n"rl-approvers" = ["approver"]\n'
                      '"rl-admins" = ["admin"]\n')
    server = AppServer(db, tmp / "streamlit.log", env={"STREAMLIT_SECRETS_FILES": str(secrets_file),
                                                       "RUNLEDGER_SSO_CONFIG": str(policy)})
    yield server
    server.stop()


def _through_provider(page: Any, server: AppServer, who: str) -> None:
    page.route("**/cdn.jsdelivr.net/**", lambda route: route.abort())  # the provider's stylesheet: offline here
    page.goto(server.url)
    page.get_by_role("button", name="Sign in with single sign-on").click()
    page.get_by_role("button", name=who).click()  # the provider's page: one click per predefined user


def _audit(db: Path) -> list[dict[str, Any]]:
    ws = Workspace(str(db))
    try:
        with ws.read() as conn:
            rows = conn.execute(sa.select(audit_log.c.actor, audit_log.c.event, audit_log.c.entity_id,
                                          audit_log.c.payload).order_by(audit_log.c.seq)).mappings()
            return [{**r, "payload": json.loads(r["payload"]) if isinstance(r["payload"], str) else r["payload"]}
                    for r in rows]
    finally:
        ws.close()


def test_single_sign_on_in_a_real_browser(sso_server: AppServer, page: Any) -> None:
    page.goto(sso_server.url)
    button = page.get_by_role("button", name="Sign in with single sign-on")
    button.wait_for()
    page.get_by_role("button", name="Sign in", exact=True).wait_for()  # local passwords stay
    screenshot(page, "sso-sign-in-page")

    # Ola signs in at the provider; the groups claim makes her an approver (an admin had given viewer)
    _through_provider(page, sso_server, "idp-ola")
    page.get_by_text("Signed in as ola").first.wait_for()
    sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
    assert "Roles: approver" in sidebar and "viewer" not in sidebar
    screenshot(page, "sso-signed-in-ola")

    # sign-out ends the Runledger session and goes through the provider's end-session page
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="End session").click()
    page.get_by_role("button", name="Sign in with single sign-on").wait_for()
    assert not page.get_by_text("Signed in as").count()
    screenshot(page, "sso-signed-out")

    # someone the provider knows but no member is: refused, never let in as a viewer
    _through_provider(page, sso_server, "idp-stranger")
    page.get_by_text("no member of this Runledger workspace has that identity").first.wait_for()
    assert not page.get_by_text("Signed in as").count()
    page.get_by_role("button", name="Sign out of the identity provider").wait_for()  # drawn after the refusal
    screenshot(page, "sso-refused-stranger")

    sso_server.stop()
    trail = _audit(sso_server.workspace)
    signed_in = [e for e in trail if e["event"] == "member.signed_in"]
    assert [(e["entity_id"], e["payload"]["channel"], e["payload"]["roles"]) for e in signed_in] == \
        [("ola", "sso", ["approver"])]
    assert [e["entity_id"] for e in trail if e["event"] == "member.sso_linked"] == ["ola"]
    changed = [e["payload"] for e in trail if e["event"] == "member.roles_changed"]
    assert changed == [{"from": ["viewer"], "to": ["approver"], "source": "sso", "groups": ["rl-approvers", "staff"]}]
    signed_out = [e for e in trail if e["event"] == "member.signed_out"]
    assert [(e["entity_id"], e["payload"]["channel"]) for e in signed_out] == [("ola", "sso")]
    refused = [e for e in trail if e["event"] == "member.sign_in_refused"]
    assert len(refused) == 1 and refused[0]["entity_id"] == "sso:idp-stranger"
    assert refused[0]["payload"]["reason"] == "no member has this identity"
    assert refused[0]["payload"]["email"] == "stranger@elsewhere.example"
