"""The app's shell: sign-in (audited, failures included), the sidebar's member block, sign-out, session
expiry, and a shared link that survives the sign-in."""

from __future__ import annotations

import pytest

from core.links import run_link
from tests.apptest_support import app_engine, open_app


def _audit(event: str) -> list[dict]:
    import sqlalchemy as sa
    with app_engine().ws.read() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            "SELECT actor, entity_id, payload FROM audit_log WHERE event = :e ORDER BY seq"), {"e": event}).mappings()]


def test_sign_in_shows_who_and_roles_and_is_audited(app_workspace: str) -> None:
    at = open_app("sigrid")
    sidebar = " ".join(m.value for m in at.sidebar.markdown) + " ".join(c.value for c in at.sidebar.caption)
    assert "sigrid" in sidebar and "approver, operator" in sidebar
    assert [a["entity_id"] for a in _audit("member.signed_in")] == ["sigrid"]


@pytest.mark.parametrize("member,password", [("sigrid", "nope"), ("nobody", "nobody"), ("", "")])
def test_a_failed_sign_in_is_refused_plainly_and_audited(app_workspace: str, member: str, password: str) -> None:
    at = open_app(member, password=password)
    assert "do not match an active member" in at.error[0].value
    assert not at.sidebar.button  # still signed out: no sign-out button
    failed = _audit("member.sign_in_failed")
    assert len(failed) == 1 and failed[0]["actor"] == "anonymous:web"


def test_sign_out_ends_the_session_and_is_audited(app_workspace: str) -> None:
    at = open_app("viewer")
    at.sidebar.button(key="sign-out").click().run()
    assert at.title[0].value == "Runledger" and len(at.text_input) == 2  # the sign-in form again
    assert [a["entity_id"] for a in _audit("member.signed_out")] == ["viewer"]


def test_an_idle_session_expires(app_workspace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app("auditor")
    monkeypatch.setenv("RUNLEDGER_SESSION_IDLE_MINUTES", "0.0001")
    at.run()
    assert "session expired" in at.info[0].value
    assert _audit("member.signed_out")[-1]["payload"] == '{"channel":"web","reason":"session expired"}'


def test_a_shared_link_opens_its_view_after_sign_in(app_workspace: str) -> None:
    link = run_link("RUN-000001")
    at = open_app(None, page=link.page, params=link.params)
    assert len(at.text_input) == 2  # asked to sign in first
    from tests.apptest_support import sign_in
    sign_in(at, "sigrid", "sigrid")
    assert at.query_params["id"] == ["RUN-000001"] or at.query_params["id"] == "RUN-000001"
    assert not any(b.label == "Sign in" for b in at.button)  # the run page itself, not the form


def test_the_server_does_not_force_a_garbage_collection_after_every_script_run() -> None:
    """Measured under load (bench/bench_load.py): the forced full collection after every script run held
    the GIL for most of the server's time, stalling the engine and every session."""
    import tomllib
    from pathlib import Path

    config = tomllib.loads((Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False
