"""Races between members and the engine, run for real: threads started together at a ``Barrier`` against
one engine and one workspace, as the app runs them.

Where the interesting interleaving is one the scheduler rarely picks, the test forces it with events:
"both commands have checked the item and now write at once" (``_meet_before_writing``) or "this command
read the run, then the other change committed, then this one writes" (``_pause_after_reading``). Each test
asserts one action execution, a named refusal for the loser (a ``CommandRefused``, never a traceback nor a
silent success), attempts and audit entries that tell the truth, an intact audit chain and a run status
that is the one derived from its items.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from core.states import derive_run_status
from engine import commands
from engine.actioners.base import TransientFailure
from store import items as item_store
from store import runs as run_store
from store.errors import WriteConflict
from store.members import create_member
from store.schema import run_items
from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import make_engine_fixture, pg_server_fixture, pg_template_fixture  # noqa: F401
from tests.support import (
    WrappedActioner,
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

WAIT = 10  # seconds: only ever reached when a test is about to fail


class Scripted(WrappedActioner):
    """Per subject, what each successive call does: ``fail`` (transient), ``block`` (until ``gate``), ``ok``."""

    def __init__(self, script: Mapping[str, Sequence[str]]) -> None:
        super().__init__()
        self.script = {s: list(steps) for s, steps in script.items()}
        self.gate, self.entered = threading.Event(), threading.Event()

    def before(self, req, ctx) -> None:
        with self._lock:
            steps = self.script.get(req.subject_id) or ["ok"]
            step = steps.pop(0) if len(steps) > 1 else steps[0]
        if step == "block":
            self.entered.set()
            if not self.gate.wait(WAIT):
                raise AssertionError("the test never released the gate")
        elif step == "fail":
            raise TransientFailure("findings register timed out")


class Outcome:
    """What a racing thread returned or raised."""

    def __init__(self, name: str) -> None:
        self.name, self.value, self.error, self.done = name, None, None, threading.Event()

    def __repr__(self) -> str:
        return f"{self.name}: {self.error!r}" if self.error else f"{self.name}: {self.value!r}"


def _race(*work: tuple[str, Callable[[], Any]]) -> tuple[list[Outcome], list[threading.Thread]]:
    """Start one thread per callable, all released together by a barrier."""
    barrier = threading.Barrier(len(work))
    outcomes = [Outcome(name) for name, _ in work]

    def run(out: Outcome, fn: Callable[[], Any]) -> None:
        try:
            barrier.wait(WAIT)
            out.value = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            out.error = exc
        finally:
            out.done.set()

    threads = [threading.Thread(target=run, args=(out, fn), name=name, daemon=True)
               for out, (name, fn) in zip(outcomes, work, strict=True)]
    for t in threads:
        t.start()
    return outcomes, threads


def _join(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.join(WAIT)
    assert not any(t.is_alive() for t in threads), "a racing thread is stuck"


def _first_done(outcomes: list[Outcome]) -> Outcome | None:
    """The first thread to finish (None if none finishes: only when a guard is missing)."""
    finished = threading.Event()
    for out in outcomes:
        threading.Thread(target=lambda o=out: o.done.wait(WAIT) and finished.set(), daemon=True).start()
    finished.wait(WAIT / 2)
    return next((o for o in outcomes if o.done.is_set()), None)


def _meet_before_writing(monkeypatch, engine, names: set[str]) -> None:
    """The named threads wait for each other just before their first write transaction: both have read
    and checked the same state, and only what is checked inside the write can tell them apart."""
    real = engine.ws.transaction
    barrier, met = threading.Barrier(len(names)), set()

    def transaction():
        me = threading.current_thread().name
        if me in names and me not in met:
            met.add(me)
            barrier.wait(WAIT)
        return real()

    monkeypatch.setattr(engine.ws, "transaction", transaction)


def _pause_after_reading(monkeypatch, thread: str, until: threading.Event) -> None:
    """``thread`` stops right after its command has read the item and run (at the permission check, which
    comes before the eligibility checks) until ``until`` is set: it then acts on what it read."""
    from engine.commands import approvals, automations, cancel, retry

    real = retry.check_permission
    paused = set()

    def check_permission(ws, who, *args):
        me = threading.current_thread().name
        if me == thread and me not in paused:
            paused.add(me)
            assert until.wait(WAIT), "the other side never finished"
        return real(ws, who, *args)

    for module in (approvals, automations, cancel, retry):  # each command checks its actor itself
        monkeypatch.setattr(module, "check_permission", check_permission)


def _add_olav(engine) -> None:
    with engine.ws.transaction() as tx:
        create_member(tx, "olav", "Olav Berg", quick_password_hash("olav"), ["operator", "approver"], "member:admin")


def _assert_consistent(engine, run_id: str) -> dict:
    """The audit chain verifies and the run's stored status is the one its items derive."""
    verdict = engine.ws.verify_audit()
    assert verdict.intact, verdict
    run = run_of(engine, run_id)
    with engine.ws.read() as conn:
        facts = run_store.read_run_facts(conn, run)
    assert run["status"] == derive_run_status(facts), (run["status"], facts)
    return run


def _refused(outcome: Outcome, kind: type[commands.CommandRefused], *phrases: str) -> None:
    assert isinstance(outcome.error, kind), outcome
    assert all(p in str(outcome.error) for p in phrases), str(outcome.error)


# --- two members retry the same item at once ----------------------------------------------------------
def _failed_item(make_engine, script: Mapping[str, Sequence[str]]) -> tuple[Any, Scripted, str, str]:
    act = Scripted(script)
    engine = make_engine({"d": finding_definition("d")}, accounts=1, actioners={"findings.create": act})
    _add_olav(engine)
    run_id = fire_one(engine)
    item = items_of(engine, run_id)["ACC-001"]
    assert (item["outcome"], item["failure_class"]) == ("failed", "transient")
    assert run_of(engine, run_id)["status"] == "completed-with-failures"
    return engine, act, run_id, item["item_id"]


def test_two_members_retrying_one_item_at_once_execute_it_once(make_engine, monkeypatch) -> None:
    """Both have checked the item is failed; the conditional claim lets one take it, the other is told."""
    engine, act, run_id, item_id = _failed_item(make_engine, {"ACC-001": ["fail", "block", "ok"]})
    _meet_before_writing(monkeypatch, engine, {"sigrid", "olav"})
    outcomes, threads = _race(("sigrid", lambda: commands.retry_item(engine, actor(engine, "sigrid"), item_id)),
                              ("olav", lambda: commands.retry_item(engine, actor(engine, "olav"), item_id)))
    try:
        assert act.entered.wait(WAIT), "neither retry acted"
        loser = _first_done(outcomes)  # the winner is held in its action until the loser has its answer
    finally:
        act.gate.set()
        _join(threads)
    assert loser is not None, outcomes
    [winner] = [o for o in outcomes if o is not loser]
    assert winner.error is None and winner.value == "succeeded", outcomes
    _refused(loser, commands.AlreadyDone, item_id, "already being retried")

    assert len(act.calls) == 2  # the first run, and one retry
    assert scalar(engine, "SELECT count(*) FROM findings") == 1
    assert scalar(engine, "SELECT count(*) FROM idempotency_records") == 1
    assert [(a["attempt"], a["outcome"], a["actor"]) for a in attempts_of(engine, item_id)] == [
        (1, "failed", "schedule:d"), (2, "succeeded", f"member:{winner.name}")]
    [retried] = audit_of(engine, "item.retried", item_id)
    assert (retried["actor"], retried["payload"]["attempt"]) == (f"member:{winner.name}", 2)
    assert _assert_consistent(engine, run_id)["status"] == "completed"


def test_a_retry_that_read_the_item_before_anothers_retry_settled_is_refused(make_engine, monkeypatch) -> None:
    """Olav read the item failed after attempt 1; Sigrid's whole retry (failing again) lands before Olav
    writes. Olav asked to retry attempt 1's failure, which has been retried: he is told so, and the
    item is not acted on a third time behind his back (nor audited as attempt 2 when it would be 3)."""
    engine, act, run_id, item_id = _failed_item(make_engine, {"ACC-001": ["fail", "fail", "ok"]})
    sigrid_done = threading.Event()
    _pause_after_reading(monkeypatch, "olav", sigrid_done)

    def sigrid_retries() -> str:
        try:
            return commands.retry_item(engine, actor(engine, "sigrid"), item_id)
        finally:
            sigrid_done.set()

    outcomes, threads = _race(("sigrid", sigrid_retries),
                              ("olav", lambda: commands.retry_item(engine, actor(engine, "olav"), item_id)))
    _join(threads)
    sigrid, olav = outcomes
    assert sigrid.error is None and sigrid.value == "failed", outcomes
    _refused(olav, commands.AlreadyDone, item_id, "retried")

    assert len(act.calls) == 2
    assert [(a["attempt"], a["actor"]) for a in attempts_of(engine, item_id)] == [
        (1, "schedule:d"), (2, "member:sigrid")]
    assert [(e["actor"], e["payload"]["attempt"]) for e in audit_of(engine, "item.retried", item_id)] == [
        ("member:sigrid", 2)]
    assert _assert_consistent(engine, run_id)["status"] == "completed-with-failures"
    # Having seen attempt 2, Olav may retry it: the guard refuses stale retries, not retries.
    assert commands.retry_item(engine, actor(engine, "olav"), item_id) == "succeeded"
    assert [e["payload"]["attempt"] for e in audit_of(engine, "item.retried", item_id)] == [2, 3]


# --- cancel racing with the executor finishing --------------------------------------------------------
def _running_run(make_engine) -> tuple[Any, Scripted, threading.Thread, list[BaseException], str]:
    """A one-item run whose item is in the actioner, held there until ``act.gate`` is set."""
    act = Scripted({"ACC-001": ["block"]})
    engine = make_engine({"d": finding_definition("d")}, accounts=1, actioners={"findings.create": act})
    errors: list[BaseException] = []

    def execute() -> None:
        try:
            engine.fire("d")
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    worker = threading.Thread(target=execute, name="executor", daemon=True)
    worker.start()
    assert act.entered.wait(WAIT)
    with engine.ws.read() as conn:
        [run] = run_store.read_open_runs(conn)
    return engine, act, worker, errors, run["run_id"]


def _assert_one_execution(engine, act: Scripted, run_id: str) -> dict:
    item = items_of(engine, run_id)["ACC-001"]
    assert (item["outcome"], len(act.calls)) == ("succeeded", 1)
    assert scalar(engine, "SELECT count(*) FROM findings") == 1
    assert [a["outcome"] for a in attempts_of(engine, item["item_id"])] == ["succeeded"]
    assert len(audit_of(engine, "item.succeeded", item["item_id"])) == 1
    return _assert_consistent(engine, run_id)


@pytest.mark.parametrize("round_", range(3))
def test_cancel_racing_the_executor_finishing_either_wins_cleanly(make_engine, round_) -> None:
    """Released together: the in-flight item finishing and a member's cancel. Whichever wins, the item
    acted once; the run is cancelled (the cancel came first) or completed (and the cancel was refused)."""
    engine, act, worker, errors, run_id = _running_run(make_engine)
    outcomes, threads = _race(("finish", act.gate.set),
                              ("cancel", lambda: commands.cancel_run(engine, actor(engine, "sigrid"), run_id,
                                                                     "wrong quarter")))
    _join(threads + [worker])
    assert errors == []
    cancel = outcomes[1]
    run = _assert_one_execution(engine, act, run_id)
    if cancel.error is None:
        assert cancel.value in ("running", "cancelled") and run["status"] == "cancelled"
        assert len(audit_of(engine, "run.cancel_requested", run_id)) == 1
    else:
        _refused(cancel, commands.NotEligible, run_id, "is completed")
        assert run["status"] == "completed" and run["cancel_requested_at"] is None
        assert audit_of(engine, "run.cancel_requested", run_id) == []


def test_a_cancel_that_read_the_run_running_before_it_completed_is_refused(make_engine, monkeypatch) -> None:
    """The member's cancel read the run as running; the executor then finished it; the cancel's write
    must be refused by name — not land on a completed run, nor fail with a state-machine traceback."""
    engine, act, worker, errors, run_id = _running_run(make_engine)
    executor_done = threading.Event()
    _pause_after_reading(monkeypatch, "cancel", executor_done)

    def finish() -> None:
        act.gate.set()
        worker.join(WAIT)
        executor_done.set()

    outcomes, threads = _race(("finish", finish),
                              ("cancel", lambda: commands.cancel_run(engine, actor(engine, "sigrid"), run_id,
                                                                     "wrong quarter")))
    _join(threads)
    assert errors == []
    _refused(outcomes[1], commands.NotEligible, run_id, "is completed", "only pending or running")
    run = _assert_one_execution(engine, act, run_id)
    assert (run["status"], run["cancel_requested_at"], run["cancel_reason"]) == ("completed", None, None)
    assert audit_of(engine, "run.cancel_requested", run_id) == []
    assert audit_of(engine, "run.cancelled", run_id) == []


def test_two_cancels_at_once_record_one_request(make_engine, monkeypatch) -> None:
    engine, act, worker, errors, run_id = _running_run(make_engine)
    _add_olav(engine)
    _meet_before_writing(monkeypatch, engine, {"sigrid", "olav"})
    try:
        outcomes, threads = _race(
            ("sigrid", lambda: commands.cancel_run(engine, actor(engine, "sigrid"), run_id, "wrong quarter")),
            ("olav", lambda: commands.cancel_run(engine, actor(engine, "olav"), run_id, "duplicate run")))
        _join(threads)
    finally:
        act.gate.set()
        worker.join(WAIT)
    assert errors == []
    [winner] = [o for o in outcomes if o.error is None]
    [loser] = [o for o in outcomes if o.error is not None]
    assert winner.value == "running"  # the in-flight item was still acting
    _refused(loser, commands.AlreadyDone, "already has a cancel request")
    [requested] = audit_of(engine, "run.cancel_requested", run_id)
    assert requested["actor"] == f"member:{winner.name}"
    run = _assert_one_execution(engine, act, run_id)
    assert (run["status"], run["cancel_requested_by"]) == ("cancelled", f"member:{winner.name}")


# --- approve racing with dismiss ----------------------------------------------------------------------
def test_approve_racing_dismiss_decides_once(make_engine, monkeypatch) -> None:
    """Both saw the item awaiting approval and decide at once: one decision holds, the other is told."""
    act = Scripted({})
    engine = make_engine({"d": finding_definition("d", approval=True)}, accounts=1,
                         actioners={"findings.create": act})
    _add_olav(engine)
    run_id = fire_one(engine)
    item_id = items_of(engine, run_id)["ACC-001"]["item_id"]
    _meet_before_writing(monkeypatch, engine, {"sigrid", "olav"})
    outcomes, threads = _race(
        ("sigrid", lambda: commands.approve_item(engine, actor(engine, "sigrid"), item_id)),
        ("olav", lambda: commands.dismiss_item(engine, actor(engine, "olav"), item_id, "not applicable")))
    _join(threads)
    approve, dismiss = outcomes
    assert [o.error is None for o in outcomes].count(True) == 1, outcomes
    with engine.ws.read() as conn:
        approval = item_store.read_approval(conn, item_id)
    item = items_of(engine, run_id)["ACC-001"]
    decided = audit_of(engine, "item.approved", item_id) + audit_of(engine, "item.dismissed", item_id)
    if approve.error is None:
        assert approve.value == "succeeded" and item["outcome"] == "succeeded"
        _refused(dismiss, commands.AlreadyDone, item_id, "already decided")
        assert (approval["decision"], approval["decided_by"]) == ("approved", "member:sigrid")
        assert [e["event"] for e in decided] == ["item.approved"]
        assert (len(act.calls), scalar(engine, "SELECT count(*) FROM findings")) == (1, 1)
        assert [a["actor"] for a in attempts_of(engine, item_id)] == ["member:sigrid"]
    else:
        assert dismiss.value == "skipped" and item["outcome"] == "skipped"
        assert item["skip_reason"] == "dismissed by olav: not applicable"
        _refused(approve, commands.AlreadyDone, item_id, "already decided")
        assert (approval["decision"], approval["decided_by"]) == ("dismissed", "member:olav")
        assert [e["event"] for e in decided] == ["item.dismissed"]
        assert (len(act.calls), scalar(engine, "SELECT count(*) FROM findings")) == (0, 0)
        assert attempts_of(engine, item_id) == []
    assert _assert_consistent(engine, run_id)["status"] == "completed"


# --- a retry of an item in a run being cancelled ------------------------------------------------------
def _run_being_cancelled_soon(make_engine) -> tuple[Any, Scripted, str, str, Outcome, threading.Thread]:
    """Two failed items; Sigrid's retry of ACC-002 is in the actioner (held), so a cancel leaves the run
    running — being cancelled — until it settles. ACC-001 is failed and, until the cancel, retryable."""
    act = Scripted({"ACC-001": ["fail", "ok"], "ACC-002": ["fail", "block", "ok"]})
    engine = make_engine({"d": finding_definition("d")}, accounts=2, actioners={"findings.create": act})
    _add_olav(engine)
    run_id = fire_one(engine)
    items = items_of(engine, run_id)
    assert {i["outcome"] for i in items.values()} == {"failed"}
    [held], [held_thread] = _race(("held", lambda: commands.retry_item(engine, actor(engine, "sigrid"),
                                                                       items["ACC-002"]["item_id"])))
    assert act.entered.wait(WAIT)
    return engine, act, run_id, items["ACC-001"]["item_id"], held, held_thread


def _assert_cancelled_run_settles(engine, act: Scripted, run_id: str, held: Outcome, held_thread) -> dict:
    act.gate.set()
    _join([held_thread])
    assert held.error is None and held.value == "succeeded"  # in flight when cancelled: it completes
    run = _assert_consistent(engine, run_id)
    assert run["status"] == "cancelled"
    return run


def test_a_retry_that_read_the_run_before_it_was_cancelled_is_refused(make_engine, monkeypatch) -> None:
    """Olav's retry read the run with no cancel request; Sigrid's cancel committed; Olav's write must be
    refused — the cancel withdrew the run's work — and ACC-001 must not act on a cancelled run."""
    engine, act, run_id, item_id, held, held_thread = _run_being_cancelled_soon(make_engine)
    cancelled = threading.Event()
    _pause_after_reading(monkeypatch, "olav", cancelled)

    def cancel() -> str:
        try:
            return commands.cancel_run(engine, actor(engine, "sigrid"), run_id, "wrong quarter")
        finally:
            cancelled.set()

    outcomes, threads = _race(("sigrid", cancel),
                              ("olav", lambda: commands.retry_item(engine, actor(engine, "olav"), item_id)))
    try:
        _join(threads)
    finally:
        run = _assert_cancelled_run_settles(engine, act, run_id, held, held_thread)
    sigrid, olav = outcomes
    assert sigrid.error is None and sigrid.value == "running", outcomes
    _refused(olav, commands.NotEligible, run_id, "was cancelled by member:sigrid")
    assert run["cancel_requested_by"] == "member:sigrid"
    assert items_of(engine, run_id)["ACC-001"]["outcome"] == "failed"
    assert [a["attempt"] for a in attempts_of(engine, item_id)] == [1]
    assert audit_of(engine, "item.retried", item_id) == []
    assert act.subjects_called().count("ACC-001") == 1  # never acted on after the cancel
    assert scalar(engine, "SELECT count(*) FROM findings") == 1  # ACC-002's retry, which was in flight


def test_retry_racing_cancel_either_wins_cleanly(make_engine, monkeypatch) -> None:
    """Both checked the run with no cancel request, then write at once. The retry first: ACC-001 is in
    flight when the cancel lands, and completes. The cancel first: the retry is refused."""
    engine, act, run_id, item_id, held, held_thread = _run_being_cancelled_soon(make_engine)
    _meet_before_writing(monkeypatch, engine, {"sigrid", "olav"})
    outcomes, threads = _race(
        ("sigrid", lambda: commands.cancel_run(engine, actor(engine, "sigrid"), run_id, "wrong quarter")),
        ("olav", lambda: commands.retry_item(engine, actor(engine, "olav"), item_id)))
    try:
        _join(threads)
    finally:
        _assert_cancelled_run_settles(engine, act, run_id, held, held_thread)
    sigrid, olav = outcomes
    assert sigrid.error is None and sigrid.value == "running", outcomes
    calls = act.subjects_called().count("ACC-001")
    if olav.error is None:
        assert olav.value == "succeeded" and calls == 2
        assert [e["actor"] for e in audit_of(engine, "item.retried", item_id)] == ["member:olav"]
        assert items_of(engine, run_id)["ACC-001"]["outcome"] == "succeeded"
    else:
        _refused(olav, commands.NotEligible, run_id, "was cancelled by member:sigrid")
        assert calls == 1 and audit_of(engine, "item.retried", item_id) == []
        assert items_of(engine, run_id)["ACC-001"]["outcome"] == "failed"


# --- a write conflict is reported, not hidden ---------------------------------------------------------
def test_a_write_conflict_reaches_the_member_as_a_named_error_and_changes_nothing(make_engine, backend) -> None:
    """In one process the workspace's write lock serialises writers, so the races above are decided by
    the guards. A writer outside that lock (another worker, as on PostgreSQL) holding the item's row makes
    DuckDB refuse the claim at once: the member gets ``WriteConflict`` saying nothing was saved, the
    action does not run, nothing is audited — and the retry works once the other writer is gone.
    (DuckDB detects conflicts per column: the other writer's claim touches ``outcome``, as a claim does.)
    On PostgreSQL the claim skips the row the other worker holds (``FOR UPDATE SKIP LOCKED``: no worker
    waits for another), so the member is told the item is being retried — with nothing else changed alike."""
    engine, act, run_id, item_id = _failed_item(make_engine, {"ACC-001": ["fail", "ok"]})
    audit_before = len(audit_of(engine))
    holding, release = threading.Event(), threading.Event()

    def other_writer() -> None:
        with engine.ws.engine.connect() as conn, conn.begin() as tx:
            # Another worker's claim of the item, not yet committed (it is then abandoned).
            taken = conn.execute(run_items.update().where(run_items.c.item_id == item_id,
                                                          run_items.c.outcome == "failed")
                                 .values(outcome="in-flight"))
            assert taken.rowcount == 1
            holding.set()
            release.wait(WAIT)
            tx.rollback()

    outcomes, threads = _race(("other-writer", other_writer),
                              ("sigrid", lambda: (holding.wait(WAIT),
                                                  commands.retry_item(engine, actor(engine, "sigrid"), item_id))))
    outcomes[1].done.wait(WAIT)
    release.set()
    _join(threads)
    if backend == "duckdb":
        assert isinstance(outcomes[1].error, WriteConflict), outcomes
        assert "nothing of this one was saved" in str(outcomes[1].error)
        assert "Conflict on update" in str(outcomes[1].error.__cause__)  # DuckDB's own report, kept as the cause
    else:
        _refused(outcomes[1], commands.AlreadyDone, item_id, "already being retried")
    assert len(act.calls) == 1 and items_of(engine, run_id)["ACC-001"]["outcome"] == "failed"
    assert len(audit_of(engine)) == audit_before and attempts_of(engine, item_id)[-1]["attempt"] == 1
    assert commands.retry_item(engine, actor(engine, "sigrid"), item_id) == "succeeded"
    assert [e["payload"]["attempt"] for e in audit_of(engine, "item.retried", item_id)] == [2]
    assert _assert_consistent(engine, run_id)["status"] == "completed"


def test_run_now_names_its_run_when_the_event_poll_dispatched_it_first(make_engine, monkeypatch) -> None:
    """The scheduler's event poll can take a "run now" event between its recording and the member's own
    dispatch: the member must still be told which run started, not "no run started"."""
    engine = make_engine({"d": finding_definition("d")}, accounts=2)
    real = engine.dispatch_events

    def poll_first(background: bool = False) -> list[str]:
        poll = threading.Thread(target=real)  # the poll's thread wins the race and runs the run itself
        poll.start()
        poll.join()
        return real(background=background)
    monkeypatch.setattr(engine, "dispatch_events", poll_first)
    started = engine.fire("d", kind="manual", actor_name="member:sigrid")
    with engine.ws.read() as conn:
        [run] = run_store.read_runs_table(conn)
    assert started == [run["run_id"]]
    assert run["status"] == "completed"
