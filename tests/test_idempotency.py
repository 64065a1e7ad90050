"""Idempotency: a retry after a lost answer replays the original outcome instead of acting twice; the
same key with different parameters is refused as a conflict; an item's key is the same on every attempt."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from engine import commands
from engine.actioners.base import record_id
from engine.executor import idempotency_key, params_hash
from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import make_engine_fixture, pg_server_fixture, pg_template_fixture  # noqa: F401
from tests.support import (
    FailsTransiently,
    LosesResponse,
    actor,
    attempts_of,
    audit_of,
    finding_definition,
    fire_one,
    items_of,
    run_of,
    scalar,
    values,
)


def _one_record_for(engine, item: dict) -> str:
    """The item's downstream findings: exactly one, whose ref is returned."""
    rows = values(engine, "SELECT finding_id FROM findings WHERE source_item_id = :i", i=item["item_id"])
    assert len(rows) == 1, rows
    assert scalar(engine, "SELECT count(*) FROM idempotency_records WHERE idempotency_key = :k",
                  k=item["idempotency_key"]) == 1
    return f"findings:{rows[0]}"


def test_manual_retry_after_a_lost_answer_replays_the_original_outcome(make_engine) -> None:
    act = LosesResponse({"ACC-002"})
    engine = make_engine({"d": finding_definition("d")}, accounts=3, actioners={"findings.create": act})
    run_id = fire_one(engine)
    lost = items_of(engine, run_id)["ACC-002"]
    # The module did act and commit; the engine only saw a transient failure.
    assert (lost["outcome"], lost["failure_class"], lost["record_ref"]) == ("failed", "transient", None)
    assert "connection reset" in lost["failure_cause"]
    original_ref = act.committed["ACC-002"]
    assert run_of(engine, run_id)["status"] == "completed-with-failures"

    calls_before = len(act.calls)
    assert commands.retry_item(engine, actor(engine, "sigrid"), lost["item_id"]) == "idempotent-replay"
    assert len(act.calls) == calls_before  # the actioner was not called again

    replayed = items_of(engine, run_id)["ACC-002"]
    assert replayed["outcome"] == "idempotent-replay"
    assert replayed["record_ref"] == original_ref
    assert replayed["failure_cause"] is None and replayed["idempotency_key"] == lost["idempotency_key"]
    assert _one_record_for(engine, replayed) == original_ref
    assert [(a["attempt"], a["outcome"], a["actor"], a["record_ref"]) for a in attempts_of(engine, lost["item_id"])] \
        == [(1, "failed", "schedule:d", None), (2, "idempotent-replay", "member:sigrid", original_ref)]
    [entry] = audit_of(engine, "item.replayed", lost["item_id"])
    assert entry["actor"] == "member:sigrid" and entry["payload"]["record_ref"] == original_ref
    assert run_of(engine, run_id)["status"] == "completed"  # a replay is a final, successful outcome
    assert scalar(engine, "SELECT count(*) FROM findings") == 3  # one per subject, none twice


def test_automatic_retry_after_a_lost_answer_replays_too(make_engine) -> None:
    act = LosesResponse({"ACC-001"})
    engine = make_engine({"d": finding_definition("d", retry="max_attempts: 2, backoff_seconds: 60")}, accounts=1,
                         actioners={"findings.create": act})
    run_id = fire_one(engine)
    assert run_of(engine, run_id)["status"] == "running"  # a retry is scheduled
    engine.clock.sleep(60)
    assert engine.process_due_retries() == 1
    item = items_of(engine, run_id)["ACC-001"]
    assert (item["outcome"], item["record_ref"]) == ("idempotent-replay", act.committed["ACC-001"])
    assert [a["actor"] for a in attempts_of(engine, item["item_id"])] == ["schedule:d", "engine:retry-policy"]
    assert len(act.calls) == 1
    _one_record_for(engine, item)
    assert run_of(engine, run_id)["status"] == "completed"


def test_same_key_with_different_parameters_is_refused_as_a_conflict(make_engine) -> None:
    act = LosesResponse({"ACC-001"}, ledger_params={"severity": "critical"})
    engine = make_engine({"d": finding_definition("d")}, accounts=1, actioners={"findings.create": act})
    run_id = fire_one(engine)
    item = items_of(engine, run_id)["ACC-001"]
    sigrid = actor(engine, "sigrid")
    assert commands.retry_item(engine, sigrid, item["item_id"]) == "failed"
    assert len(act.calls) == 1  # refused before the actioner: it cannot run twice

    refused = items_of(engine, run_id)["ACC-001"]
    assert refused["failure_class"] == "deterministic"
    assert refused["failure_cause"].startswith("idempotency key conflict: this key was already used with "
                                               "different parameters")
    assert refused["record_ref"] is None
    assert scalar(engine, "SELECT count(*) FROM findings") == 1  # only what the module did the first time
    ledger = scalar(engine, "SELECT params_hash FROM idempotency_records WHERE idempotency_key = :k",
                    k=item["idempotency_key"])
    assert ledger != params_hash(json.loads(item["parameters"]))
    # A conflict is deterministic: a further retry is refused with the reason.
    with pytest.raises(commands.NotEligible, match="failed deterministically .*idempotency key conflict"):
        commands.retry_item(engine, sigrid, item["item_id"])
    assert run_of(engine, run_id)["status"] == "completed-with-failures"


TWO_ACTIONS = finding_definition("d", retry="max_attempts: 3, backoff_seconds: 10").replace(
    "policies:", """  - actioner: lifecycle.open
    params:
      lifecycle: account-review
      owner: "{{ subject.manager }}"
      title: "Review {{ subject.account_id }}"
policies:""")


def test_keys_are_stable_across_attempts_and_distinct_per_action_subject_and_trigger(make_engine) -> None:
    act = FailsTransiently({"ACC-001": 2})
    engine = make_engine({"d": TWO_ACTIONS}, accounts=2, actioners={"findings.create": act})
    run_id = fire_one(engine)
    for _ in range(2):
        engine.clock.sleep(3600)
        engine.process_due_retries()
    run = run_of(engine, run_id)
    assert run["status"] == "completed"

    with engine.ws.read() as conn:
        items = [dict(r) for r in conn.execute(sa.text(
            "SELECT * FROM run_items WHERE run_id = :r ORDER BY position"), {"r": run_id}).mappings()]
    assert [(i["subject_id"], i["action"]) for i in items] == [
        ("ACC-001", "findings.create"), ("ACC-001", "lifecycle.open"),
        ("ACC-002", "findings.create"), ("ACC-002", "lifecycle.open")]
    for index, i in enumerate(items):
        assert i["idempotency_key"] == idempotency_key("d", run["definition_version"], run["trigger_event_id"],
                                                       "accounts", i["subject_id"], index % 2, i["action"])
    assert len({i["idempotency_key"] for i in items}) == 4  # per subject and per action

    # Three attempts at ACC-001's finding, all with the one key; the record id derives from it.
    first = items[0]
    assert [r.idempotency_key for r in act.calls if r.subject_id == "ACC-001"] == [first["idempotency_key"]] * 3
    assert [a["outcome"] for a in attempts_of(engine, first["item_id"])] == ["failed", "failed", "succeeded"]
    assert first["record_ref"] == f"findings:{record_id('FND', first['idempotency_key'])}"

    # Another trigger event is another key for the same subject and action.
    engine.clock.advance_to(engine.clock.now() + dt.timedelta(days=7))
    other = items_of(engine, fire_one(engine))
    assert other["ACC-002"]["idempotency_key"] != items[2]["idempotency_key"]


def test_the_same_schedule_fire_never_makes_a_second_run(make_engine) -> None:
    engine = make_engine({"d": finding_definition("d")}, accounts=2)
    at = engine.clock.now()
    assert len(engine.fire("d", at)) == 1
    assert engine.fire("d", at) == []  # the fire's event id exists: nothing runs twice
    assert scalar(engine, "SELECT count(*) FROM runs") == 1
    assert scalar(engine, "SELECT count(*) FROM findings") == 2

