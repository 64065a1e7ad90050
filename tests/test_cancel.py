"""Cancellation: request, then settle. The request (who, when, why) is recorded at once; items not yet
started are skipped with reason ``cancelled``; items in flight complete and are recorded; then the run is
``cancelled``."""

from __future__ import annotations

import threading

import pytest

from engine import commands
from engine.actioners.base import TransientFailure
from store import runs as run_store
from store.subjects import record_trigger_event
from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import make_engine_fixture, pg_server_fixture, pg_template_fixture  # noqa: F401
from tests.support import (
    BlocksOnEvent,
    FailsTransiently,
    actor,
    audit_of,
    finding_definition,
    fire_one,
    items_of,
    run_of,
    scalar,
    values,
)


def _run_in_thread(engine, definition_id: str = "d") -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            engine.fire(definition_id)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    worker = threading.Thread(target=work, name="run-under-test")
    worker.start()
    return worker, errors


def test_cancel_skips_unstarted_items_and_lets_in_flight_ones_complete(make_engine) -> None:
    act = BlocksOnEvent()
    engine = make_engine({"d": finding_definition("d")}, accounts=40, actioners={"findings.create": act})
    worker, errors = _run_in_thread(engine)
    try:
        assert act.entered.wait(20), "the actioner was never called"
        with engine.ws.read() as conn:
            [run] = run_store.read_open_runs(conn)
        run_id = run["run_id"]
        before = items_of(engine, run_id)
        in_flight = {s for s, i in before.items() if i["outcome"] == "in-flight"}
        not_started = {s for s, i in before.items() if i["outcome"] == "pending"}
        assert in_flight and not_started and len(in_flight) + len(not_started) == 40

        sigrid = actor(engine, "sigrid")
        assert commands.cancel_run(engine, sigrid, run_id, "wrong accounts selected") == "running"
        # Recorded at once, while the in-flight items are still being worked.
        run = run_of(engine, run_id)
        assert (run["status"], run["cancel_requested_by"], run["cancel_reason"]) == (
            "running", "member:sigrid", "wrong accounts selected")
        assert run["cancel_requested_at"] == engine.clock.now()
        now = items_of(engine, run_id)
        assert {s for s, i in now.items() if i["outcome"] == "skipped"} == not_started
        assert {now[s]["skip_reason"] for s in not_started} == {"cancelled"}
        assert {now[s]["outcome"] for s in in_flight} == {"in-flight"}
        [requested] = audit_of(engine, "run.cancel_requested", run_id)
        assert requested["actor"] == "member:sigrid" and requested["payload"] == {"reason": "wrong accounts selected"}
        with pytest.raises(commands.AlreadyDone, match="already has a cancel request"):
            commands.cancel_run(engine, sigrid, run_id, "again, while it settles")
    finally:
        act.gate.set()
        worker.join(20)
    assert not worker.is_alive() and errors == []

    after = items_of(engine, run_id)
    for s in in_flight:  # they completed, and their outcomes are recorded with the records they made
        assert after[s]["outcome"] == "succeeded" and after[s]["record_ref"].startswith("findings:FND-")
    assert {s for s, i in after.items() if i["outcome"] == "skipped"} == not_started
    assert sorted(act.subjects_called()) == sorted(in_flight)  # skipped items were never acted on
    assert scalar(engine, "SELECT count(*) FROM findings") == len(in_flight)
    assert scalar(engine, "SELECT count(*) FROM item_attempts WHERE run_id = :r", r=run_id) == len(in_flight)

    run = run_of(engine, run_id)
    assert run["status"] == "cancelled" and run["completed_at"] is not None
    assert run["actions_invoked"] == len(in_flight)
    skipped_audit = {e["entity_id"] for e in audit_of(engine, "item.skipped") if e["actor"] == "member:sigrid"}
    assert skipped_audit == {after[s]["item_id"] for s in not_started}
    [cancelled] = audit_of(engine, "run.cancelled", run_id)
    assert cancelled["payload"] == {"from": "running", "to": "cancelled"}


def test_cancel_of_a_completed_run_is_refused(make_engine) -> None:
    engine = make_engine({"d": finding_definition("d")}, accounts=2)
    run_id = fire_one(engine)
    assert run_of(engine, run_id)["status"] == "completed"
    with pytest.raises(commands.NotEligible,
                       match=f"Run {run_id} is completed; only pending or running runs can be cancelled"):
        commands.cancel_run(engine, actor(engine, "sigrid"), run_id, "too late")
    run = run_of(engine, run_id)
    assert run["status"] == "completed" and run["cancel_requested_at"] is None
    assert audit_of(engine, "run.cancel_requested") == []


def test_cancel_needs_a_reason(make_engine) -> None:
    act = FailsTransiently({"ACC-001": 1})
    engine = make_engine({"d": finding_definition("d", retry="max_attempts: 2, backoff_seconds: 600")},
                         accounts=1, actioners={"findings.create": act})
    run_id = fire_one(engine)
    with pytest.raises(commands.CommandRefused, match="needs a reason"):
        commands.cancel_run(engine, actor(engine, "sigrid"), run_id, "   ")
    assert run_of(engine, run_id)["cancel_requested_at"] is None


def test_cancel_withdraws_scheduled_retries_and_refuses_manual_ones(make_engine) -> None:
    act = FailsTransiently({"ACC-001": 1})
    engine = make_engine({"d": finding_definition("d", retry="max_attempts: 2, backoff_seconds: 600")},
                         accounts=2, actioners={"findings.create": act})
    run_id = fire_one(engine)
    assert run_of(engine, run_id)["status"] == "running"  # waiting for ACC-001's automatic retry
    sigrid = actor(engine, "sigrid")
    assert commands.cancel_run(engine, sigrid, run_id, "stop retrying") == "cancelled"
    item = items_of(engine, run_id)["ACC-001"]
    assert (item["outcome"], item["retry_due_at"]) == ("failed", None)
    engine.clock.sleep(3600)
    assert engine.process_due_retries() == 0
    with pytest.raises(commands.NotEligible, match="was cancelled by member:sigrid"):
        commands.retry_item(engine, sigrid, item["item_id"])
    assert len(act.calls) == 2


def test_cancel_closes_open_approvals(make_engine) -> None:
    engine = make_engine({"d": finding_definition("d", approval=True)}, accounts=3)
    run_id = fire_one(engine)
    assert run_of(engine, run_id)["status"] == "running"
    assert commands.cancel_run(engine, actor(engine, "sigrid"), run_id, "not this quarter") == "cancelled"
    items = items_of(engine, run_id)
    assert {(i["outcome"], i["skip_reason"]) for i in items.values()} == {("skipped", "cancelled")}
    assert values(engine, "SELECT DISTINCT decision FROM approvals WHERE run_id = :r", r=run_id) == ["cancelled"]
    with pytest.raises(commands.NotEligible, match="not awaiting approval"):
        commands.approve_item(engine, actor(engine, "sigrid"), items["ACC-001"]["item_id"])
    assert scalar(engine, "SELECT count(*) FROM findings") == 0


class _ActsThenTimesOut(BlocksOnEvent):
    def before(self, req, ctx) -> None:
        super().before(req, ctx)
        raise TransientFailure("findings register timed out")


def test_a_cancel_landing_while_an_item_acts_schedules_no_automatic_retry(make_engine) -> None:
    """Regression: the batch read "no cancel" before acting and then scheduled a retry, which the retry
    loop later executed — acting again on a cancelled run."""
    act = _ActsThenTimesOut()
    engine = make_engine({"d": finding_definition("d", retry="max_attempts: 3, backoff_seconds: 60")},
                         accounts=1, actioners={"findings.create": act})
    worker, errors = _run_in_thread(engine)
    try:
        assert act.entered.wait(20)
        with engine.ws.read() as conn:
            [run] = run_store.read_open_runs(conn)
        assert commands.cancel_run(engine, actor(engine, "sigrid"), run["run_id"], "stop") == "running"
    finally:
        act.gate.set()
        worker.join(20)
    assert errors == []
    item = items_of(engine, run["run_id"])["ACC-001"]
    assert (item["outcome"], item["failure_class"], item["retry_due_at"]) == ("failed", "transient", None)
    [failed] = audit_of(engine, "item.failed", item["item_id"])
    assert failed["payload"]["retry_due_at"] is None
    assert run_of(engine, run["run_id"])["status"] == "cancelled"
    engine.clock.sleep(3600)
    assert engine.process_due_retries() == 0
    assert len(act.calls) == 1  # never acted on again after the cancel


def _pending_run(engine) -> str:
    """A run created for a trigger event but not yet matched (as the dispatcher leaves it for a moment)."""
    with engine.ws.transaction() as tx:
        record_trigger_event(tx, kind="manual", event_type="run.requested", source="member:sigrid",
                             occurred_at=engine.clock.now(), definition_id="d")
    with engine.ws.read() as conn:
        [event] = run_store.read_undispatched_events(conn)
    with engine.ws.transaction() as tx:
        run_id = run_store.create_run(tx, definition_id="d", definition_version=1, event=event,
                                      actor="member:sigrid")
        run_store.claim_event(tx, event["event_id"])
    assert run_id is not None and run_of(engine, run_id)["status"] == "pending"
    return run_id


def test_a_run_cancelled_while_pending_is_never_matched(make_engine) -> None:
    """Regression: matching went ahead after the cancel, leaving a cancelled run with pending items."""
    engine = make_engine({"d": finding_definition("d")}, accounts=3)
    run_id = _pending_run(engine)
    assert commands.cancel_run(engine, actor(engine, "sigrid"), run_id, "not now") == "cancelled"
    engine.executor.match_run(run_id, "member:sigrid")
    engine.executor.execute_run(run_id, "member:sigrid")
    run = run_of(engine, run_id)
    assert (run["status"], run["started_at"], run["subjects_matched"]) == ("cancelled", None, 0)
    assert items_of(engine, run_id) == {}
    assert scalar(engine, "SELECT count(*) FROM findings") == 0
    assert engine.recover() == []  # nothing is left open


def test_a_cancel_landing_just_before_matching_leaves_no_pending_items(make_engine, monkeypatch) -> None:
    """The cancel commits after the executor read the run as pending but before it wrote the items."""
    engine = make_engine({"d": finding_definition("d")}, accounts=3)
    run_id = _pending_run(engine)
    real_read_event = run_store.read_event

    def read_event_then_cancel(conn, event_id):
        event = real_read_event(conn, event_id)
        commands.cancel_run(engine, actor(engine, "sigrid"), run_id, "while matching")
        return event

    monkeypatch.setattr(run_store, "read_event", read_event_then_cancel)
    engine.executor.match_run(run_id, "member:sigrid")
    monkeypatch.undo()
    engine.executor.execute_run(run_id, "member:sigrid")
    run = run_of(engine, run_id)
    assert (run["status"], run["cancel_reason"]) == ("cancelled", "while matching")
    assert items_of(engine, run_id) == {}
    assert scalar(engine, "SELECT count(*) FROM findings") == 0
