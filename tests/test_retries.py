"""Retries: transient failures are retry-eligible (automatically with backoff on the engine's clock, and by
authorized members); deterministic ones stay failed and a retry is refused with the reason; every attempt
is kept."""

from __future__ import annotations

import datetime as dt

import pytest

from engine import commands
from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import make_engine_fixture, pg_server_fixture, pg_template_fixture  # noqa: F401
from tests.support import (
    FailsDeterministically,
    FailsTransiently,
    WrappedActioner,
    actor,
    attempts_of,
    audit_of,
    finding_definition,
    fire_one,
    items_of,
    run_of,
    scalar,
)

BACKOFF = "max_attempts: 3, backoff_seconds: 300, backoff_multiplier: 2"


class Mixed(WrappedActioner):
    """ACC-002 is refused for good; ACC-003 times out once."""

    def __init__(self) -> None:
        super().__init__()
        self.deterministic = FailsDeterministically({"ACC-002"})
        self.transient = FailsTransiently({"ACC-003": 1})

    def before(self, req, ctx) -> None:
        self.deterministic.before(req, ctx)
        self.transient.before(req, ctx)


def test_transient_and_deterministic_failures_are_classed_and_a_deterministic_retry_is_refused(make_engine) -> None:
    engine = make_engine({"d": finding_definition("d")}, accounts=4, actioners={"findings.create": Mixed()})
    run_id = fire_one(engine)
    items = items_of(engine, run_id)
    assert {s: i["outcome"] for s, i in items.items()} == {
        "ACC-001": "succeeded", "ACC-002": "failed", "ACC-003": "failed", "ACC-004": "succeeded"}
    assert (items["ACC-002"]["failure_class"], items["ACC-002"]["failure_cause"]) == (
        "deterministic", "findings register refuses ACC-002: owner unknown")
    assert (items["ACC-003"]["failure_class"], items["ACC-003"]["failure_cause"]) == (
        "transient", "findings register timed out")
    assert items["ACC-003"]["retry_due_at"] is None  # max_attempts 1: no automatic retry
    assert run_of(engine, run_id)["status"] == "completed-with-failures"

    sigrid = actor(engine, "sigrid")
    with pytest.raises(commands.NotEligible) as refused:
        commands.retry_item(engine, sigrid, items["ACC-002"]["item_id"])
    assert str(refused.value) == (
        f"Item {items['ACC-002']['item_id']} failed deterministically (findings register refuses ACC-002: owner "
        "unknown); a retry would fail the same way. Fix the cause or the definition and let the next trigger fire.")
    assert len(attempts_of(engine, items["ACC-002"]["item_id"])) == 1  # nothing was attempted

    plan = commands.plan_retry(engine, run_id)
    assert [i["subject_id"] for i in plan.eligible] == ["ACC-003"]
    assert [(i["subject_id"], "deterministically" in why) for i, why in plan.not_eligible] == [("ACC-002", True)]


def test_automatic_retry_backs_off_on_the_simulated_clock(make_engine) -> None:
    act = FailsTransiently({"ACC-001": 2})
    engine = make_engine({"d": finding_definition("d", retry=BACKOFF)}, accounts=1, actioners={"findings.create": act})
    clock = engine.clock
    t0 = clock.now()
    run_id = fire_one(engine)
    item = items_of(engine, run_id)["ACC-001"]
    assert (item["outcome"], item["attempts"]) == ("failed", 1)
    assert item["retry_due_at"] == t0 + dt.timedelta(seconds=300)
    assert run_of(engine, run_id)["status"] == "running"  # a retry is still due: the run is not closed

    assert engine.process_due_retries() == 0  # not due before the clock moves
    clock.sleep(299)
    assert engine.process_due_retries() == 0
    clock.sleep(1)
    assert engine.process_due_retries() == 1
    item = items_of(engine, run_id)["ACC-001"]
    assert (item["outcome"], item["attempts"]) == ("failed", 2)
    assert item["retry_due_at"] == t0 + dt.timedelta(seconds=300 + 600)  # the backoff doubled
    assert run_of(engine, run_id)["status"] == "running"

    clock.sleep(599)
    assert engine.process_due_retries() == 0
    clock.sleep(1)
    assert engine.process_due_retries() == 1
    item = items_of(engine, run_id)["ACC-001"]
    assert (item["outcome"], item["attempts"], item["retry_due_at"]) == ("succeeded", 3, None)
    assert run_of(engine, run_id)["status"] == "completed"

    attempts = attempts_of(engine, item["item_id"])
    assert [(a["attempt"], a["outcome"], a["failure_class"], a["actor"], a["started_at"] - t0) for a in attempts] == [
        (1, "failed", "transient", "schedule:d", dt.timedelta(0)),
        (2, "failed", "transient", "engine:retry-policy", dt.timedelta(seconds=300)),
        (3, "succeeded", None, "engine:retry-policy", dt.timedelta(seconds=900))]
    assert attempts[2]["record_ref"] == item["record_ref"]
    assert [e["payload"]["attempt"] for e in audit_of(engine, "item.retry_started", item["item_id"])] == [2, 3]
    assert scalar(engine, "SELECT actions_invoked FROM runs WHERE run_id = :r", r=run_id) == 1  # one action


def test_automatic_retries_stop_at_max_attempts_and_the_run_closes_with_failures(make_engine) -> None:
    act = FailsTransiently({"ACC-001": 5})
    engine = make_engine({"d": finding_definition("d", retry=BACKOFF)}, accounts=2, actioners={"findings.create": act})
    run_id = fire_one(engine)
    for _ in range(4):
        engine.clock.sleep(3600)
        engine.process_due_retries()
    item = items_of(engine, run_id)["ACC-001"]
    assert (item["outcome"], item["attempts"], item["retry_due_at"]) == ("failed", 3, None)
    assert [a["outcome"] for a in attempts_of(engine, item["item_id"])] == ["failed"] * 3
    assert len(act.calls) == 3 + 1  # three for ACC-001, one for ACC-002
    assert run_of(engine, run_id)["status"] == "completed-with-failures"


def test_manual_retry_closes_the_run_as_completed_and_keeps_every_attempt(make_engine) -> None:
    act = FailsTransiently({"ACC-002": 1})
    engine = make_engine({"d": finding_definition("d")}, accounts=3, actioners={"findings.create": act})
    run_id = fire_one(engine)
    run = run_of(engine, run_id)
    assert run["status"] == "completed-with-failures" and run["completed_at"] is not None
    failed = items_of(engine, run_id)["ACC-002"]

    engine.clock.sleep(120)
    assert commands.retry_item(engine, actor(engine, "sigrid"), failed["item_id"]) == "succeeded"
    item = items_of(engine, run_id)["ACC-002"]
    assert item["outcome"] == "succeeded" and item["record_ref"].startswith("findings:FND-")
    assert item["failure_cause"] is None and item["failure_class"] is None
    run = run_of(engine, run_id)
    assert run["status"] == "completed" and run["completed_at"] == engine.clock.now()

    attempts = attempts_of(engine, failed["item_id"])
    assert [(a["attempt"], a["outcome"], a["failure_cause"], a["actor"]) for a in attempts] == [
        (1, "failed", "findings register timed out", "schedule:d"),
        (2, "succeeded", None, "member:sigrid")]  # history appended, not overwritten
    [retried] = audit_of(engine, "item.retried", failed["item_id"])
    assert retried["actor"] == "member:sigrid"
    assert retried["payload"] == {"run_id": run_id, "previous_cause": "findings register timed out", "attempt": 2}
    transitions = [(e["event"], e["payload"]["from"], e["payload"]["to"]) for e in audit_of(engine, entity_id=run_id)
                   if "from" in e["payload"]]
    assert transitions[-3:] == [("run.completed_with_failures", "running", "completed-with-failures"),
                                ("run.reopened", "completed-with-failures", "running"),
                                ("run.completed", "running", "completed")]


def test_a_second_retry_of_the_same_item_is_refused(make_engine) -> None:
    act = FailsTransiently({"ACC-001": 1})
    engine = make_engine({"d": finding_definition("d")}, accounts=1, actioners={"findings.create": act})
    item_id = items_of(engine, fire_one(engine))["ACC-001"]["item_id"]
    sigrid = actor(engine, "sigrid")
    assert commands.retry_item(engine, sigrid, item_id) == "succeeded"
    with pytest.raises(commands.NotEligible, match=f"Item {item_id} is succeeded; only failed items can be retried"):
        commands.retry_item(engine, sigrid, item_id)
    assert len(act.calls) == 2
    assert len(attempts_of(engine, item_id)) == 2
    assert scalar(engine, "SELECT count(*) FROM findings") == 1
    with pytest.raises(commands.NotFound, match="There is no run item 'RUN-999999-000001'"):
        commands.retry_item(engine, sigrid, "RUN-999999-000001")


def test_a_retry_that_fails_again_stays_eligible(make_engine) -> None:
    act = FailsTransiently({"ACC-001": 2})
    engine = make_engine({"d": finding_definition("d")}, accounts=1, actioners={"findings.create": act})
    run_id = fire_one(engine)
    item_id = items_of(engine, run_id)["ACC-001"]["item_id"]
    sigrid = actor(engine, "sigrid")
    assert commands.retry_item(engine, sigrid, item_id) == "failed"
    assert run_of(engine, run_id)["status"] == "completed-with-failures"
    assert commands.retry_item(engine, sigrid, item_id) == "succeeded"
    assert [a["outcome"] for a in attempts_of(engine, item_id)] == ["failed", "failed", "succeeded"]
    assert run_of(engine, run_id)["status"] == "completed"


def test_retry_run_takes_only_the_eligible_items(make_engine) -> None:
    engine = make_engine({"d": finding_definition("d")}, accounts=4, actioners={"findings.create": Mixed()})
    run_id = fire_one(engine)
    plan, results = commands.retry_run(engine, actor(engine, "sigrid"), run_id)
    assert results == {items_of(engine, run_id)["ACC-003"]["item_id"]: "succeeded"}
    assert len(plan.not_eligible) == 1
    assert run_of(engine, run_id)["status"] == "completed-with-failures"  # ACC-002 still failed, for good

