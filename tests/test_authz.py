"""Authorization: every command checks its actor itself. Viewers and auditors calling a command directly
(no UI to hide the button) are refused with a sentence naming who, what and the role it needs, and the
refusal is written to the audit log; nothing else changes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from engine import commands
from engine.authz import NotAuthorized
from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import make_engine_fixture, pg_server_fixture, pg_template_fixture  # noqa: F401
from tests.support import FailsTransiently, actor, audit_of, finding_definition, fire_one, items_of, run_of, scalar


def _workspace(make_engine):
    """A run with a transiently failed item (retry) and a run awaiting approval (cancel, approve, dismiss)."""
    engine = make_engine({"failing": finding_definition("failing"),
                          "gated": finding_definition("gated", approval=True)},
                         accounts=1, actioners={"findings.create": FailsTransiently({"ACC-001": 1})})
    failed_run = fire_one(engine, "failing")
    gated_run = fire_one(engine, "gated")
    return engine, items_of(engine, failed_run)["ACC-001"]["item_id"], gated_run, \
        items_of(engine, gated_run)["ACC-001"]["item_id"]


@pytest.mark.parametrize("member", ["viewer", "auditor"])
def test_viewer_and_auditor_commands_are_refused_and_audited(make_engine, member: str) -> None:
    engine, failed_item, gated_run, gated_item = _workspace(make_engine)
    who = actor(engine, member)
    runs_before = scalar(engine, "SELECT count(*) FROM runs")
    calls: dict[str, tuple[Callable[[], object], str, str]] = {
        "retry": (lambda: commands.retry_item(engine, who, failed_item), "operator", f"run_item {failed_item}"),
        "cancel": (lambda: commands.cancel_run(engine, who, gated_run, "x"), "operator", f"run {gated_run}"),
        "approve": (lambda: commands.approve_item(engine, who, gated_item), "approver", f"run_item {gated_item}"),
        "dismiss": (lambda: commands.dismiss_item(engine, who, gated_item, "x"), "approver", f"run_item {gated_item}"),
        "run now": (lambda: commands.run_now(engine, who, "failing"), "operator", "definition failing"),
    }
    for act, (call, role, target) in calls.items():
        with pytest.raises(NotAuthorized) as refused:
            call()
        assert str(refused.value) == (f"{member} may not {act} {target}: that needs the {role} role "
                                      f"(has: {member}).")

    refusals = [e for e in audit_of(engine, "command.refused") if e["actor"] == f"member:{member}"]
    assert [e["payload"]["permission"] for e in refusals] == ["retry", "cancel", "approve", "dismiss", "run_now"]
    assert [f"{e['entity_kind']} {e['entity_id']}" for e in refusals] == [t for _, _, t in calls.values()]
    assert all(e["payload"]["reason"].startswith(f"{member} may not ") for e in refusals)

    # Nothing else happened.
    assert items_of(engine, gated_run)["ACC-001"]["outcome"] == "awaiting-approval"
    assert run_of(engine, gated_run)["cancel_requested_at"] is None
    assert scalar(engine, "SELECT outcome FROM run_items WHERE item_id = :i", i=failed_item) == "failed"
    assert scalar(engine, "SELECT count(*) FROM runs") == runs_before
    assert scalar(engine, "SELECT count(*) FROM item_attempts WHERE item_id = :i", i=failed_item) == 1
    assert scalar(engine, "SELECT count(*) FROM approvals WHERE decision IS NOT NULL") == 0
    assert engine.ws.verify_audit().intact


def test_roles_split_operating_from_approving(make_engine) -> None:
    engine, failed_item, gated_run, gated_item = _workspace(make_engine)
    admin = actor(engine, "admin")
    with pytest.raises(NotAuthorized, match="admin may not approve .* needs the approver role"):
        commands.approve_item(engine, admin, gated_item)
    with pytest.raises(NotAuthorized, match="admin may not retry .* needs the operator role"):
        commands.retry_item(engine, admin, failed_item)
    # Sigrid is operator and approver: the same calls go through for her.
    sigrid = actor(engine, "sigrid")
    assert commands.retry_item(engine, sigrid, failed_item) == "succeeded"
    assert commands.approve_item(engine, sigrid, gated_item) == "succeeded"
    assert [e["actor"] for e in audit_of(engine, "command.refused")] == ["member:admin", "member:admin"]
