"""The Members page: an admin adds a member, changes roles, deactivates, resets a password; any member with
a password changes their own; others see no management control, and the command refuses them anyway.
Sessions end when their member is deactivated or their password reset."""

from __future__ import annotations

from typing import Any

import pytest

from core.links import PAGES
from engine.authz import NotAuthorized, sign_in
from engine.commands import members as cmd
from store.members import read_member
from tests.apptest_support import app_engine, open_app
from tests.support import actor, audit_of, quick_password_hash

PAGE = PAGES["members"][0]
NEW_PW = "granite meadow quietly 42"


@pytest.fixture(autouse=True)
def _quick_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.commands.members.hash_password", quick_password_hash)


def labelled(elements: Any, label: str) -> Any:
    found = [e for e in elements if e.label == label]
    assert found, f"no {label!r} among {[e.label for e in elements]}"
    return found[0]


def member(member_id: str) -> dict[str, Any]:
    with app_engine().ws.read() as conn:
        m = read_member(conn, member_id)
    assert m is not None
    return m


def shown(at: Any) -> str:
    """What the page says, as the member reads it (the markdown escapes undone)."""
    return " ".join(e.value for e in [*at.success, *at.error, *at.info, *at.warning]).replace("\\", "")


def test_an_admin_adds_a_member_on_the_page(app_workspace: str) -> None:
    at = open_app("admin", page=PAGE)
    labelled(at.text_input, "Member name (how they sign in, e.g. j.smith)").input("ola")
    at.multiselect(key="add-roles").select("operator").select("approver")
    labelled(at.text_input, "Password (at least 12 characters)").input(NEW_PW)
    labelled(at.text_input, "Password again").input(NEW_PW)
    labelled(at.button, "Add member").click().run()
    assert "ola added with roles approver, operator." in shown(at)
    assert member("ola")["roles"] == "approver,operator"
    assert [(a["actor"], a["entity_id"]) for a in audit_of(app_engine(), "member.added")] == [("member:admin", "ola")]
    assert sign_in(app_engine().ws, "ola", NEW_PW).member_id == "ola"


def test_a_short_password_on_the_page_is_refused_with_the_minimum(app_workspace: str) -> None:
    at = open_app("admin", page=PAGE)
    labelled(at.text_input, "Member name (how they sign in, e.g. j.smith)").input("ola")
    at.multiselect(key="add-roles").select("viewer")
    labelled(at.text_input, "Password (at least 12 characters)").input("short")
    labelled(at.text_input, "Password again").input("short")
    labelled(at.button, "Add member").click().run()
    assert "a password needs at least 12" in shown(at)
    assert not audit_of(app_engine(), "member.added")


def test_an_admin_changes_roles_resets_a_password_and_deactivates(app_workspace: str) -> None:
    at = open_app("admin", page=PAGE)
    at.selectbox(key="change-member").select("viewer").run()
    at.multiselect(key="member-roles-viewer").select("auditor")
    labelled(at.button, "Save roles").click().run()
    assert "viewer now holds auditor, viewer." in shown(at)
    assert member("viewer")["roles"] == "auditor,viewer"

    labelled(at.text_input, "New password for viewer (at least 12 characters)").input(NEW_PW)
    labelled(at.text_input, "New password again").input(NEW_PW)
    labelled(at.button, "Reset password").click().run()
    assert "Password of viewer reset" in shown(at)
    assert sign_in(app_engine().ws, "viewer", NEW_PW).member_id == "viewer"

    labelled(at.checkbox, "Yes, deactivate viewer: they can no longer sign in, and their sessions end").check()
    labelled(at.button, "Deactivate").click().run()
    assert "viewer deactivated" in shown(at) and not member("viewer")["active"]
    events = [a["event"] for a in audit_of(app_engine(), entity_id="viewer") if a["actor"] == "member:admin"]
    assert events == ["member.roles_changed", "member.password_reset", "member.deactivated"]


def test_the_last_admin_is_refused_on_the_page_too(app_workspace: str) -> None:
    at = open_app("admin", page=PAGE)
    at.selectbox(key="change-member").select("admin").run()
    labelled(at.checkbox, "Yes, deactivate admin: they can no longer sign in, and their sessions end").check()
    labelled(at.button, "Deactivate").click().run()
    assert "admin is the last active admin of this workspace" in shown(at)
    assert member("admin")["active"]


def test_a_non_admin_sees_no_management_controls_and_is_refused_anyway(app_workspace: str) -> None:
    at = open_app("sigrid", page=PAGE)
    labels = {b.label for b in at.button}
    assert not labels & {"Add member", "Save roles", "Deactivate", "Reset password", "Save e-mail"}
    assert not [s for s in at.selectbox if s.key == "change-member"] and not at.expander
    assert "Change my password" in labels
    assert at.dataframe[0].value["Member"].tolist() == ["sigrid"]  # their own entry only
    with pytest.raises(NotAuthorized, match="needs the admin role"):
        cmd.add_member(app_engine().ws, actor(app_engine(), "sigrid"), "ola", "viewer", NEW_PW)
    with pytest.raises(NotAuthorized):
        cmd.set_roles(app_engine().ws, actor(app_engine(), "sigrid"), "sigrid", "admin")
    assert member("sigrid")["roles"] == "approver,operator"


def test_a_member_changes_their_own_password_and_their_other_sessions_end(app_workspace: str) -> None:
    other = open_app("auditor")  # the same member in another browser
    at = open_app("auditor", page=PAGE)
    labelled(at.text_input, "Current password").input("auditor")
    labelled(at.text_input, "New password (at least 12 characters)").input(NEW_PW)
    labelled(at.text_input, "New password again").input(NEW_PW)
    labelled(at.button, "Change my password").click().run()
    assert "Your password is changed" in shown(at)
    at.run()
    assert at.sidebar.button  # this session carries on
    other.run()
    assert "Your password was changed or reset, so your session ended." in shown(other)
    assert not other.sidebar.button
    assert [a["actor"] for a in audit_of(app_engine(), "member.password_changed")] == ["member:auditor"]


def test_a_deactivated_members_session_ends_at_the_next_page_view(app_workspace: str) -> None:
    at = open_app("viewer")
    cmd.deactivate_member(app_engine().ws, actor(app_engine(), "admin"), "viewer")
    at.run()
    assert "deactivated, so your session ended" in at.info[0].value
    assert len(at.text_input) == 2  # the sign-in form
    ended = audit_of(app_engine(), "member.signed_out", "viewer")[-1]
    assert ended["payload"]["reason"] == "session ended: member deactivated"
    at.text_input[0].input("viewer")
    at.text_input[1].input("viewer")
    at.button[0].click().run()
    assert "do not match an active member" in shown(at)
