"""Approvals: an item that needs approval waits as ``awaiting-approval``; approve → the action executes;
dismiss → ``skipped`` with the approver's reason; a decision is made once; the author of a definition
version may not approve its actions."""

from __future__ import annotations

import pytest

from engine import commands
from store import items as item_store
from store.members import create_member
from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import make_engine_fixture, pg_server_fixture, pg_template_fixture  # noqa: F401
from tests.support import (
    actor,
    attempts_of,
    audit_of,
    finding_definition,
    fire_one,
    items_of,
    quick_password_hash,
    run_of,
    scalar,
)

APPROVAL = {"d": finding_definition("d", approval=True)}


def _approval(engine, item_id: str) -> dict:
    with engine.ws.read() as conn:
        approval = item_store.read_approval(conn, item_id)
    assert approval is not None
    return approval


def test_items_wait_for_approval_without_acting(make_engine) -> None:
    engine = make_engine(APPROVAL, accounts=2)
    run_id = fire_one(engine)
    items = items_of(engine, run_id)
    assert {i["outcome"] for i in items.values()} == {"awaiting-approval"}
    assert run_of(engine, run_id)["status"] == "running"
    assert scalar(engine, "SELECT count(*) FROM findings") == 0
    for item in items.values():
        approval = _approval(engine, item["item_id"])
        assert (approval["decision"], approval["definition_version"]) == (None, 1)
        assert attempts_of(engine, item["item_id"]) == []  # nothing attempted yet
    assert len(audit_of(engine, "item.held_for_approval")) == 2


def test_approve_executes_the_action(make_engine) -> None:
    engine = make_engine(APPROVAL, accounts=1)
    run_id = fire_one(engine)
    item_id = items_of(engine, run_id)["ACC-001"]["item_id"]
    engine.clock.sleep(3600)
    assert commands.approve_item(engine, actor(engine, "sigrid"), item_id) == "succeeded"

    item = items_of(engine, run_id)["ACC-001"]
    assert item["outcome"] == "succeeded"
    finding_id = item["record_ref"].removeprefix("findings:")
    assert scalar(engine, "SELECT source_item_id FROM findings WHERE finding_id = :f", f=finding_id) == item_id
    approval = _approval(engine, item_id)
    assert (approval["decision"], approval["decided_by"], approval["decided_at"]) == (
        "approved", "member:sigrid", engine.clock.now())
    [attempt] = attempts_of(engine, item_id)
    assert (attempt["outcome"], attempt["actor"], attempt["record_ref"]) == ("succeeded", "member:sigrid",
                                                                             item["record_ref"])
    [approved] = audit_of(engine, "item.approved", item_id)
    assert approved["actor"] == "member:sigrid"
    assert run_of(engine, run_id)["status"] == "completed"


def test_dismiss_skips_with_the_approvers_reason(make_engine) -> None:
    engine = make_engine(APPROVAL, accounts=1)
    run_id = fire_one(engine)
    item_id = items_of(engine, run_id)["ACC-001"]["item_id"]
    sigrid = actor(engine, "sigrid")
    with pytest.raises(commands.CommandRefused, match="A dismissal needs a reason"):
        commands.dismiss_item(engine, sigrid, item_id, "  ")
    assert commands.dismiss_item(engine, sigrid, item_id, " not applicable ") == "skipped"

    item = items_of(engine, run_id)["ACC-001"]
    assert (item["outcome"], item["skip_reason"], item["record_ref"]) == (
        "skipped", "dismissed by sigrid: not applicable", None)
    approval = _approval(engine, item_id)
    assert (approval["decision"], approval["decided_by"], approval["reason"]) == (
        "dismissed", "member:sigrid", "not applicable")
    [dismissed] = audit_of(engine, "item.dismissed", item_id)
    assert dismissed["actor"] == "member:sigrid" and dismissed["payload"]["reason"] == "not applicable"
    assert scalar(engine, "SELECT count(*) FROM findings") == 0
    assert run_of(engine, run_id)["status"] == "completed"


@pytest.mark.parametrize(("first", "second"), [("approve", "approve"), ("approve", "dismiss"),
                                               ("dismiss", "approve"), ("dismiss", "dismiss")])
def test_deciding_twice_is_refused(make_engine, first: str, second: str) -> None:
    engine = make_engine(APPROVAL, accounts=1)
    run_id = fire_one(engine)
    item_id = items_of(engine, run_id)["ACC-001"]["item_id"]
    sigrid = actor(engine, "sigrid")

    def decide(how: str) -> str:
        if how == "approve":
            return commands.approve_item(engine, sigrid, item_id)
        return commands.dismiss_item(engine, sigrid, item_id, "not applicable")

    outcome = decide(first)
    with pytest.raises(commands.NotEligible, match=f"Item {item_id} is {outcome}, not awaiting approval"):
        decide(second)
    assert items_of(engine, run_id)["ACC-001"]["outcome"] == outcome
    assert _approval(engine, item_id)["decision"] == {"approve": "approved", "dismiss": "dismissed"}[first]
    assert scalar(engine, "SELECT count(*) FROM findings") == (1 if first == "approve" else 0)
    assert len(audit_of(engine, "item.approved")) + len(audit_of(engine, "item.dismissed")) == 1


def test_a_lost_race_between_two_decisions_is_refused(make_engine) -> None:
    """Both approvers saw the item awaiting; the second to commit finds the approval already decided."""
    engine = make_engine(APPROVAL, accounts=1)
    item_id = items_of(engine, fire_one(engine))["ACC-001"]["item_id"]
    with engine.ws.transaction() as tx:  # the other approver's decision lands first
        assert item_store.decide_approval(tx, item_id, "dismissed", "member:someone", "duplicate")
    with pytest.raises(commands.AlreadyDone, match="already decided"):
        commands.approve_item(engine, actor(engine, "sigrid"), item_id)
    assert scalar(engine, "SELECT count(*) FROM findings") == 0


def test_the_author_of_a_version_cannot_approve_its_actions(make_engine) -> None:
    engine = make_engine(APPROVAL, accounts=1, author="member:sigrid")
    with engine.ws.transaction() as tx:
        create_member(tx, "olav", "Olav Berg", quick_password_hash("olav"), ["approver"], "member:admin")
    run_id = fire_one(engine)
    item_id = items_of(engine, run_id)["ACC-001"]["item_id"]

    with pytest.raises(commands.CommandRefused) as refused:
        commands.approve_item(engine, actor(engine, "sigrid"), item_id)
    assert str(refused.value) == ("sigrid authored version 1 of d and so may not approve its actions "
                                  "(segregation of duties); ask another approver.")
    assert items_of(engine, run_id)["ACC-001"]["outcome"] == "awaiting-approval"
    assert _approval(engine, item_id)["decision"] is None

    assert commands.approve_item(engine, actor(engine, "olav"), item_id) == "succeeded"  # another approver may
    assert _approval(engine, item_id)["decided_by"] == "member:olav"


def test_segregation_follows_the_version_the_run_pinned(make_engine) -> None:
    engine = make_engine(APPROVAL, accounts=1)  # v1 by admin
    run_v1 = fire_one(engine)
    (engine.definitions_dir / "d.yaml").write_text(finding_definition("d", approval=True, severity="high"))
    engine.load_definitions(actor="member:sigrid")  # v2 by sigrid
    run_v2 = engine.fire("d", kind="manual", actor_name="member:admin")[0]
    assert run_of(engine, run_v2)["definition_version"] == 2
    sigrid = actor(engine, "sigrid")
    with pytest.raises(commands.CommandRefused, match="authored version 2 of d"):
        commands.approve_item(engine, sigrid, items_of(engine, run_v2)["ACC-001"]["item_id"])
    # The run that pinned v1 (authored by admin) is still hers to approve.
    assert commands.approve_item(engine, sigrid, items_of(engine, run_v1)["ACC-001"]["item_id"]) == "succeeded"
