"""Four eyes: no member approves or dismisses an item of a run they started (run now) or an item they
retried. The refusal names the rule, the member and what they did, and is audited as ``command.refused``
like a role refusal; another approver decides the same item as usual."""

from __future__ import annotations

from typing import Any

import pytest

from cli.main import EXIT_OK, EXIT_REFUSED, main
from engine import commands
from store import items as item_store
from store.members import create_member
from store.workspace import Workspace
from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import make_engine_fixture, pg_server_fixture, pg_template_fixture  # noqa: F401
from tests.support import (
    actor,
    attempts_of,
    audit_of,
    finding_definition,
    fire_one,
    item_of,
    items_of,
    quick_password_hash,
    run_of,
    scalar,
)

APPROVAL = {"d": finding_definition("d", approval=True)}


def _add_olav(engine: Any) -> None:
    """A second approver (only an approver: he neither runs nor retries)."""
    with engine.ws.transaction() as tx:
        create_member(tx, "olav", "Olav Berg", quick_password_hash("olav"), ["approver"], "member:admin")


def _decide(engine: Any, member: str, act: str, item_id: str) -> str:
    who = actor(engine, member)
    if act == "approve":
        return commands.approve_item(engine, who, item_id)
    return commands.dismiss_item(engine, who, item_id, "not applicable")


def _refusals(engine: Any, item_id: str) -> list[dict[str, Any]]:
    return audit_of(engine, "command.refused", item_id)


@pytest.mark.parametrize("act", ["approve", "dismiss"])
def test_the_member_who_ran_it_now_may_not_decide_its_items(make_engine, act: str) -> None:
    engine = make_engine(APPROVAL, accounts=1)
    _add_olav(engine)
    [run_id] = commands.run_now(engine, actor(engine, "sigrid"), "d")  # sigrid: operator and approver
    item_id = items_of(engine, run_id)["ACC-001"]["item_id"]
    assert item_of(engine, item_id)["outcome"] == "awaiting-approval"

    with pytest.raises(commands.FourEyesRefused) as refused:
        _decide(engine, "sigrid", act, item_id)
    expected = (f"sigrid started run {run_id} (run now) and so may not {act} its items (four eyes); "
                "ask another approver.")
    assert str(refused.value) == expected
    [entry] = _refusals(engine, item_id)
    assert (entry["actor"], entry["entity_kind"]) == ("member:sigrid", "run_item")
    assert entry["payload"] == {"permission": act, "reason": expected, "four_eyes": "started the run",
                                "run_id": run_id}
    # Nothing else happened: the item still waits, its approval open, no record made.
    assert item_of(engine, item_id)["outcome"] == "awaiting-approval"
    with engine.ws.read() as conn:
        assert item_store.read_approval(conn, item_id)["decision"] is None
    assert scalar(engine, "SELECT count(*) FROM findings") == 0
    assert audit_of(engine, {"approve": "item.approved", "dismiss": "item.dismissed"}[act]) == []

    # Another approver may.
    assert _decide(engine, "olav", act, item_id) == ("succeeded" if act == "approve" else "skipped")
    with engine.ws.read() as conn:
        assert item_store.read_approval(conn, item_id)["decided_by"] == "member:olav"
    assert run_of(engine, run_id)["status"] == "completed"
    assert engine.ws.verify_audit().intact


def test_items_of_a_run_someone_else_started_are_hers_to_decide(make_engine) -> None:
    """Only the member who started the run is barred: a run another member started, or the schedule
    fired, is decided as before."""
    engine = make_engine({"d": finding_definition("d", approval=True)}, accounts=2)
    by_other = engine.fire("d", kind="manual", actor_name="member:olav")[0]
    scheduled = fire_one(engine)
    for run_id in (by_other, scheduled):
        item_id = items_of(engine, run_id)["ACC-001"]["item_id"]
        assert commands.approve_item(engine, actor(engine, "sigrid"), item_id) == "succeeded"
    assert audit_of(engine, "command.refused") == []


def _held_after_sigrids_retry(engine: Any) -> str:
    """An item awaiting approval that sigrid retried before it was held.

    Today's engine holds an item before its first attempt, and an item has one approval, so this arises
    only from data an engine wrote otherwise (an older Runledger, a re-approval policy): the rule is
    checked on the record itself, whatever path made it. Written through the store as a retry writes it:
    the ``item.retried`` entry, the attempt, then the approval that holds the item."""
    run_id = fire_one(engine)
    item_id = items_of(engine, run_id)["ACC-001"]["item_id"]
    now = engine.clock.now()
    with engine.ws.transaction() as tx:
        tx.audit("member:sigrid", "item.retried", "run_item", item_id,
                 {"run_id": run_id, "previous_cause": "messaging system unavailable", "attempt": 2})
        item_store.insert_attempts(tx, [{"item_id": item_id, "attempt": 2, "run_id": run_id,
                                         "actor": "member:sigrid", "started_at": now, "finished_at": now,
                                         "outcome": "failed", "failure_cause": "findings register timed out",
                                         "failure_class": "transient", "record_ref": None}])
    return item_id


@pytest.mark.parametrize("act", ["approve", "dismiss"])
def test_the_member_who_retried_an_item_may_not_decide_it(make_engine, act: str) -> None:
    engine = make_engine(APPROVAL, accounts=1)
    _add_olav(engine)
    item_id = _held_after_sigrids_retry(engine)

    with pytest.raises(commands.FourEyesRefused) as refused:
        _decide(engine, "sigrid", act, item_id)
    expected = f"sigrid retried item {item_id} and so may not {act} it (four eyes); ask another approver."
    assert str(refused.value) == expected
    [entry] = _refusals(engine, item_id)
    assert entry["actor"] == "member:sigrid"
    assert entry["payload"]["four_eyes"] == "retried the item" and entry["payload"]["reason"] == expected
    assert item_of(engine, item_id)["outcome"] == "awaiting-approval"

    assert _decide(engine, "olav", act, item_id) == ("succeeded" if act == "approve" else "skipped")


def test_an_audited_retry_counts_even_without_its_attempt(make_engine) -> None:
    """A member's retry is audited when claimed, before its attempt is written: that entry alone bars her."""
    engine = make_engine(APPROVAL, accounts=1)
    run_id = fire_one(engine)
    item_id = items_of(engine, run_id)["ACC-001"]["item_id"]
    with engine.ws.transaction() as tx:
        tx.audit("member:sigrid", "item.retried", "run_item", item_id, {"run_id": run_id, "attempt": 1})
    assert attempts_of(engine, item_id) == []
    with pytest.raises(commands.FourEyesRefused, match=f"sigrid retried item {item_id}"):
        commands.approve_item(engine, actor(engine, "sigrid"), item_id)


def test_the_authors_refusal_is_audited_too(make_engine) -> None:
    engine = make_engine(APPROVAL, accounts=1, author="member:sigrid")
    item_id = items_of(engine, fire_one(engine))["ACC-001"]["item_id"]
    with pytest.raises(commands.FourEyesRefused) as refused:
        commands.approve_item(engine, actor(engine, "sigrid"), item_id)
    [entry] = _refusals(engine, item_id)
    assert entry["actor"] == "member:sigrid"
    assert entry["payload"] == {"permission": "approve", "reason": str(refused.value),
                                "four_eyes": "authored the definition version", "run_id": entry["payload"]["run_id"]}
    assert "(segregation of duties)" in str(refused.value)


def test_the_command_line_refuses_the_member_who_fired_the_run(make_engine) -> None:
    """``fire d --as sigrid`` then ``approve ITEM --as sigrid``: refused with the sentence, exit 1, audited."""
    engine = make_engine(APPROVAL, accounts=1)
    definitions, db = str(engine.definitions_dir), engine.ws.path  # a DuckDB file, or a PostgreSQL URL
    engine.shutdown()
    engine.ws.close()
    lines: list[str] = []
    assert main(["--db", db, "--definitions", definitions, "fire", "d", "--as", "sigrid"], out=lines.append) \
        == EXIT_OK, lines
    lines.clear()
    item_id = "RUN-000001-000001"
    assert main(["--db", db, "--definitions", definitions, "approve", item_id, "--as", "sigrid"],
                out=lines.append) == EXIT_REFUSED
    assert lines == [("refused: sigrid started run RUN-000001 (run now) and so may not approve its items "
                      "(four eyes); ask another approver.")]
    ws = Workspace(db)
    try:
        with ws.read() as conn:
            assert item_store.read_item(conn, item_id)["outcome"] == "awaiting-approval"
            refusals = [(r.actor, r.entity_id) for r in conn.exec_driver_sql(
                "SELECT actor, entity_id FROM audit_log WHERE event = 'command.refused'")]
        assert refusals == [("member:sigrid", item_id)]
        assert ws.verify_audit().intact
    finally:
        ws.close()
