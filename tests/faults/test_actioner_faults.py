"""Actioner faults: an actioner that hangs, raises something unexpected, answers with garbage, or acts and
loses its answer. Each is recorded on the item with its cause and class, the other items of the run go on,
and nothing is half-applied or acted twice."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import pytest
from invariants import assert_consistent

from engine import commands
from engine.action_calls import action_timeout_seconds
from engine.actioners.base import ActionContext, ActionRequest, CreatedRecord
from tests.support import (
    LosesResponse,
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

TIMEOUT = 0.3  # seconds: the executor's wait for an actioner in these tests


@pytest.fixture(autouse=True)
def short_action_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNLEDGER_ACTION_TIMEOUT_SECONDS", str(TIMEOUT))


# --- scripted actioners ----------------------------------------------------------------------------
class Hangs(WrappedActioner):
    """Never answers for the scripted subjects until the test sets ``release`` (then acts normally)."""

    def __init__(self, subjects: set[str]) -> None:
        super().__init__()
        self.subjects = subjects
        self.release = threading.Event()
        self.answered = threading.Event()

    def execute(self, req: ActionRequest, ctx: ActionContext) -> CreatedRecord:
        created = super().execute(req, ctx)
        if req.subject_id in self.subjects:
            self.answered.set()
        return created

    def before(self, req: ActionRequest, ctx: ActionContext) -> None:
        if req.subject_id in self.subjects:
            assert self.release.wait(20), "the test never released the hung call"


class Raises(WrappedActioner):
    def __init__(self, subjects: set[str]) -> None:
        super().__init__()
        self.subjects = subjects

    def before(self, req: ActionRequest, ctx: ActionContext) -> None:
        if req.subject_id in self.subjects:
            {}["owner_directory"]  # an actioner bug: KeyError


class RaisesInProcess(Raises):
    in_process = True  # called directly on the executor's thread, not under the timeout


class AnswersWith(WrappedActioner):
    """Acts, then answers the scripted subject with ``garble(created)`` instead of the record."""

    def __init__(self, subject: str, garble: Any) -> None:
        super().__init__()
        self.subject, self.garble = subject, garble

    def execute(self, req: ActionRequest, ctx: ActionContext) -> Any:
        created = super().execute(req, ctx)
        return self.garble(created) if req.subject_id == self.subject else created


class AnswersWithInProcess(AnswersWith):
    in_process = True


def _wait_until(predicate: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


# --- a hanging actioner ------------------------------------------------------------------------------
def test_the_action_timeout_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert action_timeout_seconds() == TIMEOUT
    monkeypatch.delenv("RUNLEDGER_ACTION_TIMEOUT_SECONDS")
    assert action_timeout_seconds() == 30.0
    for bad in ("soon", "0", "-5"):
        monkeypatch.setenv("RUNLEDGER_ACTION_TIMEOUT_SECONDS", bad)
        with pytest.raises(ValueError, match="RUNLEDGER_ACTION_TIMEOUT_SECONDS must be"):
            action_timeout_seconds()


def test_a_hanging_actioner_times_out_as_a_transient_failure_and_the_run_goes_on(make_engine) -> None:
    act = Hangs({"ACC-002"})
    engine = make_engine({"d": finding_definition("d")}, accounts=3, actioners={"findings.create": act})
    try:
        started = time.monotonic()
        run_id = fire_one(engine)
        assert time.monotonic() - started < TIMEOUT + 5  # the engine did not hang with the actioner
        items = items_of(engine, run_id)
        hung = items["ACC-002"]
        assert (hung["outcome"], hung["failure_class"], hung["record_ref"], hung["attempts"]) == \
            ("failed", "transient", None, 1)
        assert hung["failure_cause"] == (f"findings.create did not answer within {TIMEOUT:g} s; if it acted after "
                                         "all, a retry replays its record instead of acting again")
        assert [items[s]["outcome"] for s in ("ACC-001", "ACC-003")] == ["succeeded", "succeeded"]
        [attempt] = attempts_of(engine, hung["item_id"])
        assert (attempt["outcome"], attempt["failure_class"], attempt["failure_cause"]) == \
            ("failed", "transient", hung["failure_cause"])
        [entry] = audit_of(engine, "item.failed", hung["item_id"])
        assert entry["payload"]["cause"] == hung["failure_cause"] and entry["payload"]["failure_class"] == "transient"
        assert run_of(engine, run_id)["status"] == "completed-with-failures"
        assert_consistent(engine, at_rest=True)
    finally:
        act.release.set()
    _wait_until(lambda: audit_of(engine, "item.late_answer_recorded"))  # let the late call finish


def test_a_timed_out_call_that_answers_late_is_replayed_by_the_retry_never_repeated(make_engine) -> None:
    act = Hangs({"ACC-001"})
    engine = make_engine({"d": finding_definition("d", retry="max_attempts: 3, backoff_seconds: 60")}, accounts=2,
                         actioners={"findings.create": act})
    run_id = fire_one(engine)
    item = items_of(engine, run_id)["ACC-001"]
    assert (item["outcome"], item["failure_class"]) == ("failed", "transient")
    assert item["retry_due_at"] is not None
    assert scalar(engine, "SELECT count(*) FROM findings") == 1  # only ACC-002's, so far

    act.release.set()  # the upstream answers after all, long after the engine stopped waiting
    _wait_until(lambda: audit_of(engine, "item.late_answer_recorded", item["item_id"]))
    [late] = audit_of(engine, "item.late_answer_recorded", item["item_id"])
    ref = late["payload"]["record_ref"]
    assert late["actor"] == "schedule:d" and ref.startswith("findings:FND-")
    assert scalar(engine, "SELECT record_ref FROM idempotency_records WHERE idempotency_key = :k",
                  k=item["idempotency_key"]) == ref

    engine.clock.sleep(60)
    assert engine.process_due_retries() == 1
    replayed = items_of(engine, run_id)["ACC-001"]
    assert (replayed["outcome"], replayed["record_ref"], replayed["failure_cause"]) == ("idempotent-replay", ref, None)
    assert act.subjects_called().count("ACC-001") == 1  # acted once: the retry went through the ledger
    assert [(a["attempt"], a["outcome"], a["actor"]) for a in attempts_of(engine, item["item_id"])] == \
        [(1, "failed", "schedule:d"), (2, "idempotent-replay", "engine:retry-policy")]
    assert scalar(engine, "SELECT count(*) FROM findings WHERE source_item_id = :i", i=item["item_id"]) == 1
    assert run_of(engine, run_id)["status"] == "completed"
    assert_consistent(engine, at_rest=True)


def test_a_retry_while_the_timed_out_call_still_hangs_does_not_call_again(make_engine) -> None:
    act = Hangs({"ACC-001"})
    engine = make_engine({"d": finding_definition("d", retry="max_attempts: 3, backoff_seconds: 60")}, accounts=1,
                         actioners={"findings.create": act})
    run_id = fire_one(engine)
    item_id = items_of(engine, run_id)["ACC-001"]["item_id"]
    engine.clock.sleep(60)
    assert engine.process_due_retries() == 1  # the first call still hangs
    waiting = items_of(engine, run_id)["ACC-001"]
    assert (waiting["outcome"], waiting["failure_class"], waiting["attempts"]) == ("failed", "transient", 2)
    assert waiting["failure_cause"].startswith("findings.create has not yet answered an earlier attempt's call")
    assert len(act.calls) == 1  # not called a second time while the first call may still act

    act.release.set()
    _wait_until(lambda: audit_of(engine, "item.late_answer_recorded", item_id))
    sigrid = actor(engine, "sigrid")
    engine.clock.sleep(60)
    assert commands.retry_item(engine, sigrid, item_id) == "idempotent-replay"
    assert len(act.calls) == 1
    assert [a["outcome"] for a in attempts_of(engine, item_id)] == ["failed", "failed", "idempotent-replay"]
    assert_consistent(engine, at_rest=True)


def test_a_late_call_that_fails_records_nothing_and_the_retry_acts(make_engine) -> None:
    class HangsThenFails(Hangs):
        def before(self, req: ActionRequest, ctx: ActionContext) -> None:
            if req.subject_id in self.subjects and len(self.calls) == 1:
                super().before(req, ctx)
                raise RuntimeError("upstream gave up")

    act = HangsThenFails({"ACC-001"})
    engine = make_engine({"d": finding_definition("d", retry="max_attempts: 3, backoff_seconds: 60")}, accounts=1,
                         actioners={"findings.create": act})
    run_id = fire_one(engine)
    late = engine.executor.calls._late[items_of(engine, run_id)["ACC-001"]["idempotency_key"]]
    act.release.set()
    assert late.settled.wait(10)
    assert not audit_of(engine, "item.late_answer_recorded")
    engine.clock.sleep(60)
    assert engine.process_due_retries() == 1
    item = items_of(engine, run_id)["ACC-001"]
    assert item["outcome"] == "succeeded" and len(act.calls) == 2  # the first call never acted
    assert_consistent(engine, at_rest=True)


# --- unexpected exceptions ---------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [Raises, RaisesInProcess], ids=["under-timeout", "in-process"])
def test_an_unexpected_exception_is_recorded_with_its_cause_and_the_engine_goes_on(make_engine, cls) -> None:
    act = cls({"ACC-001"})
    engine = make_engine({"d": finding_definition("d", retry="max_attempts: 3")}, accounts=3,
                         actioners={"findings.create": act})
    run_id = fire_one(engine)
    items = items_of(engine, run_id)
    bad = items["ACC-001"]
    cause = "unexpected error in findings.create: KeyError: 'owner_directory'"
    assert (bad["outcome"], bad["failure_class"], bad["failure_cause"], bad["retry_due_at"]) == \
        ("failed", "deterministic", cause, None)
    assert [(a["outcome"], a["failure_cause"]) for a in attempts_of(engine, bad["item_id"])] == [("failed", cause)]
    [entry] = audit_of(engine, "item.failed", bad["item_id"])
    assert entry["payload"]["cause"] == cause
    assert items["ACC-002"]["outcome"] == items["ACC-003"]["outcome"] == "succeeded"
    with pytest.raises(commands.NotEligible, match="deterministically"):
        commands.retry_item(engine, actor(engine, "sigrid"), bad["item_id"])
    assert run_of(engine, run_id)["status"] == "completed-with-failures"
    assert_consistent(engine, at_rest=True)


# --- garbage answers ---------------------------------------------------------------------------------
GARBAGE = {
    "none": (lambda c: None, "findings.create answered with NoneType instead of the record it created"),
    "a-dict": (lambda c: {"ref": c.ref}, "findings.create answered with dict instead of the record it created"),
    "no-reference": (lambda c: dataclasses.replace(c, ref=None),
                     "findings.create answered without a reference to the record it created (got None)"),
    "wrong-reference": (lambda c: dataclasses.replace(c, ref="findings:FND-SOMEONE-ELSE"),
                        "findings.create answered without a reference to the record it created "
                        "(got 'findings:FND-SOMEONE-ELSE')"),
    "other-register": (lambda c: dataclasses.replace(c, module="assessments"),
                       "findings.create answered with a record for register 'assessments', not 'findings'"),
    "unknown-register": (lambda c: dataclasses.replace(c, module="tickets"),
                         "findings.create answered with a record for register 'tickets', not 'findings'"),
    "row-not-a-dict": (lambda c: dataclasses.replace(c, row=[1, 2]),
                       "findings.create answered with a list as its record's row"),
    "unknown-field": (lambda c: dataclasses.replace(c, row=c.row | {"colour": "red"}),
                      "findings.create answered with fields the findings register does not have (colour)"),
    "missing-field": (lambda c: dataclasses.replace(c, row=c.row | {"owner": None}),
                      "findings.create answered with a record missing owner"),
    "text-field-not-text": (lambda c: dataclasses.replace(c, row=c.row | {"title": {"nested": 1}}),
                            "findings.create answered with a record whose title is a dict, not text"),
    "timestamp-field-as-text": (lambda c: dataclasses.replace(c, row=c.row | {"created_at": "yesterday"}),
                                "findings.create answered with a record whose created_at is a str, "
                                "not a timestamp"),
}


@pytest.mark.parametrize("cls", [AnswersWith, AnswersWithInProcess], ids=["under-timeout", "in-process"])
@pytest.mark.parametrize("garbage", list(GARBAGE))
def test_a_garbage_answer_is_refused_and_recorded_and_the_rest_of_the_batch_is_written(make_engine, garbage,
                                                                                      cls) -> None:
    garble, expected = GARBAGE[garbage]
    engine = make_engine({"d": finding_definition("d", retry="max_attempts: 3")}, accounts=3,
                         actioners={"findings.create": cls("ACC-002", garble)})
    run_id = fire_one(engine)
    items = items_of(engine, run_id)
    bad = items["ACC-002"]
    cause = f"{expected}; the answer was refused and nothing was recorded"
    assert (bad["outcome"], bad["failure_class"], bad["failure_cause"], bad["record_ref"], bad["retry_due_at"]) == \
        ("failed", "deterministic", cause, None, None)
    assert [(a["outcome"], a["failure_class"], a["failure_cause"]) for a in attempts_of(engine, bad["item_id"])] \
        == [("failed", "deterministic", cause)]
    [entry] = audit_of(engine, "item.failed", bad["item_id"])
    assert entry["payload"]["cause"] == cause
    assert items["ACC-001"]["outcome"] == items["ACC-003"]["outcome"] == "succeeded"
    assert scalar(engine, "SELECT count(*) FROM findings WHERE source_item_id = :i", i=bad["item_id"]) == 0
    assert scalar(engine, "SELECT count(*) FROM idempotency_records WHERE item_id = :i", i=bad["item_id"]) == 0
    assert run_of(engine, run_id)["status"] == "completed-with-failures"
    assert_consistent(engine, at_rest=True)


# --- a lost answer -----------------------------------------------------------------------------------
def test_an_answer_lost_after_acting_is_replayed_by_the_retry_while_the_others_succeed(make_engine) -> None:
    act = LosesResponse({"ACC-002"})
    engine = make_engine({"d": finding_definition("d", retry="max_attempts: 2, backoff_seconds: 30")}, accounts=3,
                         actioners={"findings.create": act})
    run_id = fire_one(engine)
    items = items_of(engine, run_id)
    lost = items["ACC-002"]
    assert (lost["outcome"], lost["failure_class"], lost["failure_cause"]) == \
        ("failed", "transient", "connection reset while reading the findings register's answer")
    assert items["ACC-001"]["outcome"] == items["ACC-003"]["outcome"] == "succeeded"
    engine.clock.sleep(30)
    assert engine.process_due_retries() == 1
    replayed = items_of(engine, run_id)["ACC-002"]
    assert (replayed["outcome"], replayed["record_ref"]) == ("idempotent-replay", act.committed["ACC-002"])
    assert act.subjects_called().count("ACC-002") == 1
    assert [e["event"] for e in audit_of(engine, entity_id=lost["item_id"]) if e["event"].startswith("item.")] == \
        ["item.failed", "item.retry_started", "item.replayed"]
    assert run_of(engine, run_id)["status"] == "completed"
    assert_consistent(engine, at_rest=True)
