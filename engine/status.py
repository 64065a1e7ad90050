"""Writes the run status the state machine derives; the only place a run's status is set."""

from __future__ import annotations

from typing import Any

from core.states import (
    AWAITING_APPROVAL,
    CANCELLED,
    COMPLETED,
    COMPLETED_WITH_FAILURES,
    FAILED,
    IN_FLIGHT,
    ITEM_PENDING,
    PENDING,
    RUNNING,
    TERMINAL_RUN_STATUSES,
    derive_run_status,
)
from engine.alerts import queue_run_alerts
from store import runs as run_store
from store.rollups import apply_run_change, read_run_row, with_failure_flag
from store.run_counts import write_item_counts
from store.tx import Tx

RUN_EVENTS = {RUNNING: "run.started", COMPLETED: "run.completed",
              COMPLETED_WITH_FAILURES: "run.completed_with_failures", CANCELLED: "run.cancelled",
              FAILED: "run.failed"}


def settle_run_status(tx: Tx, run_id: str, actor: str) -> str:
    run = run_store.lock_run(tx, run_id)  # before counting its items: see lock_run
    if run is None:
        raise LookupError(f"there is no run {run_id} to settle")
    # A closed run's share of the rollups counts whether it has a failure account, which the settle may create.
    before = with_failure_flag(tx.conn, run) if run["status"] in TERMINAL_RUN_STATUSES else run
    status = _settle(tx, run, actor)
    # A run closing, reopening or closed with new counts moves its share of the analytics' rollups, in this
    # transaction and under this row lock (store/rollups.py); a working run's settle reads nothing more.
    if run["status"] in TERMINAL_RUN_STATUSES or status in TERMINAL_RUN_STATUSES:
        apply_run_change(tx, before, read_run_row(tx.conn, run_id))
    return status


def _settle(tx: Tx, run: dict[str, Any], actor: str) -> str:
    run_id = str(run["run_id"])
    facts = run_store.read_run_facts(tx.conn, run)
    write_item_counts(tx, run, facts.outcome_counts)  # the counts the status comes from, kept on the run
    new = derive_run_status(facts)
    old = run["status"]
    c = facts.outcome_counts
    if new == RUNNING and c.get(AWAITING_APPROVAL, 0) and not (c.get(IN_FLIGHT, 0) or c.get(ITEM_PENDING, 0)):
        # Nothing left to do but decide: the approvers hear of it (once per run, ``engine.alerts``).
        queue_run_alerts(tx, run, AWAITING_APPROVAL)
    if new == old:
        return new
    if old == PENDING and new in TERMINAL_RUN_STATUSES and run["started_at"] is not None:
        # A run that started and finished in one step (it matched nothing) still passes through
        # running, so its trail says it started before it completed.
        run_store.transition_run(tx, run_id, old, RUNNING)
        tx.audit(actor, RUN_EVENTS[RUNNING], "run", run_id, {"from": old, "to": RUNNING})
        old = RUNNING
    values: dict[str, object] = {}
    if new in TERMINAL_RUN_STATUSES:
        values["completed_at"] = tx.now()
    elif old == COMPLETED_WITH_FAILURES:
        values["completed_at"] = None
    run_store.transition_run(tx, run_id, old, new, **values)
    event = "run.reopened" if old == COMPLETED_WITH_FAILURES else RUN_EVENTS[new]
    tx.audit(actor, event, "run", run_id, {"from": old, "to": new})
    if new in (FAILED, COMPLETED_WITH_FAILURES):
        queue_run_alerts(tx, run, new)  # in this transaction: the alert exists if and only if the status does
    return new
