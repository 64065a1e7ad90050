"""Signing in and out in a real browser, and a shared link surviving the sign-in."""

from __future__ import annotations

from tests.browser.support import AppServer, screenshot, sign_in


def test_sigrid_signs_in_and_sees_who_she_is(app_server: AppServer, page: object) -> None:
    sign_in(page, app_server, "sigrid")
    sidebar = page.locator('[data-testid="stSidebar"]')  # type: ignore[attr-defined]
    assert "approver, operator" in sidebar.inner_text()
    for section in ("Governance → Automation", "Records", "Admin"):
        assert section in sidebar.inner_text()
    screenshot(page, "sign-in-sigrid")


def test_a_wrong_password_is_refused_and_the_form_stays(app_server: AppServer, page: object) -> None:
    page.goto(app_server.url)  # type: ignore[attr-defined]
    page.get_by_label("Member", exact=True).fill("viewer")  # type: ignore[attr-defined]
    page.get_by_label("Password", exact=True).fill("not-the-password")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Sign in").click()  # type: ignore[attr-defined]
    page.get_by_text("do not match an active member").first.wait_for()  # type: ignore[attr-defined]
    screenshot(page, "sign-in-refused")
    assert page.get_by_role("button", name="Sign in").is_visible()  # type: ignore[attr-defined]


def test_a_shared_link_keeps_its_page_and_params_through_sign_in(app_server: AppServer, page: object) -> None:
    sign_in(page, app_server, "viewer", path="audit_log?actor=member%3Asigrid")
    assert "/audit_log" in page.url and "actor=member%3Asigrid" in page.url  # type: ignore[attr-defined]
    page.get_by_role("button", name="Sign out").click()  # type: ignore[attr-defined]
    page.get_by_role("button", name="Sign in").wait_for()  # type: ignore[attr-defined]
    screenshot(page, "signed-out")
