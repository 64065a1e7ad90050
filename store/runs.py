"""Runs: created per (definition, trigger event) at most once, counted, cancelled on request."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from core.states import ITEM_FAILED, OPEN_RUN_STATUSES, PENDING, RunFacts, TransitionRefused, check_run_transition
from store.schema import run_items, run_number, runs, trigger_events
from store.tx import Tx


def create_run(tx: Tx, *, definition_id: str, definition_version: int, event: dict[str, Any],
               actor: str, worker: str | None = None) -> str | None:
    """Create a pending run for this trigger event, worked by ``worker`` (``store.workers``), or return None
    if one already exists."""
    exists = tx.conn.execute(sa.select(runs.c.run_id).where(
        runs.c.definition_id == definition_id, runs.c.trigger_event_id == event["event_id"])).first()
    if exists:
        return None
    n = tx.conn.execute(sa.select(run_number.next_value())).scalar_one()
    run_id = f"RUN-{n:06d}"
    tx.conn.execute(runs.insert().values(
        run_id=run_id, run_number=n, definition_id=definition_id, definition_version=definition_version,
        trigger_kind=event["kind"], trigger_source=event["source"], trigger_event_id=event["event_id"],
        triggered_at=event["occurred_at"], status=PENDING, subjects_matched=0, actions_invoked=0,
        created_at=tx.now(), worked_by=worker))
    tx.audit(actor, "run.created", "run", run_id,
             {"definition_id": definition_id, "definition_version": definition_version,
              "trigger_event_id": event["event_id"], "trigger_kind": event["kind"],
              "trigger_source": event["source"]})
    return run_id


def read_run(conn: sa.Connection, run_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).mappings().first()
    return dict(row) if row else None


def lock_run(tx: Tx, run_id: str) -> dict[str, Any] | None:
    """The run, read for an update of its status and counts. On PostgreSQL its row is locked until the
    transaction ends, so two processes settling one run (a worker's batch, a member's retry) settle it one
    after the other, each counting the other's committed items; on DuckDB this process's write lock does."""
    q = sa.select(runs).where(runs.c.run_id == run_id)
    if tx.conn.dialect.name == "postgresql":
        q = q.with_for_update()
    row = tx.conn.execute(q).mappings().first()
    return dict(row) if row else None


def require_run(conn: sa.Connection, run_id: str) -> dict[str, Any]:
    """A run that must exist (the caller holds its items, or just wrote it)."""
    run = read_run(conn, run_id)
    if run is None:
        raise LookupError(f"there is no run {run_id} in this workspace")
    return run


def read_cancel_requested(conn: sa.Connection, run_id: str) -> bool:
    """Whether the run has a cancel request: the executor asks before every batch."""
    return conn.execute(sa.select(runs.c.cancel_requested_at.is_not(None)).where(runs.c.run_id == run_id)
                        ).scalar_one()


def read_run_facts(conn: sa.Connection, run: dict[str, Any]) -> RunFacts:
    # One pass over the run's items (the executor asks after every batch): the count per outcome, and
    # per outcome how many have a retry scheduled (only failed items ever have one).
    counts: dict[str, int] = {}
    scheduled = 0
    for outcome, n, due in conn.execute(
            sa.select(run_items.c.outcome, sa.func.count(), sa.func.count(run_items.c.retry_due_at))
            .where(run_items.c.run_id == run["run_id"]).group_by(run_items.c.outcome)):
        counts[outcome] = n
        if outcome == ITEM_FAILED:
            scheduled = due
    return RunFacts(started=run["started_at"] is not None,
                    cancel_requested=run["cancel_requested_at"] is not None,
                    run_failure=run["failure_cause"], outcome_counts=counts, retries_scheduled=scheduled)


def write_run_fields(tx: Tx, run_id: str, **values: Any) -> None:
    """Facts of a run other than its status (matched counts, start, a run-level failure)."""
    if "status" in values:
        raise ValueError("a run's status changes only through transition_run")
    tx.conn.execute(runs.update().where(runs.c.run_id == run_id).values(**values))


def transition_run(tx: Tx, run_id: str, current: str, wanted: str, **values: Any) -> None:
    """``current`` → ``wanted``, checked against the transition table and against the stored row in one
    guarded statement; a run no longer ``current`` is refused by name (and the transaction rolls back)."""
    check_run_transition(run_id, current, wanted)
    res = tx.conn.execute(runs.update().where(runs.c.run_id == run_id, runs.c.status == current)
                          .values(status=wanted, **values))
    if res.rowcount != 1:
        stored = tx.conn.execute(sa.select(runs.c.status).where(runs.c.run_id == run_id)).scalar()
        raise TransitionRefused("run", run_id, stored or "missing", wanted)


def add_actions_invoked(tx: Tx, run_id: str, n: int) -> None:
    if n:
        tx.conn.execute(runs.update().where(runs.c.run_id == run_id)
                        .values(actions_invoked=runs.c.actions_invoked + n))


def read_open_runs(conn: sa.Connection) -> list[dict[str, Any]]:
    """Runs not yet closed: what crash recovery and the retry loop look at."""
    q = sa.select(runs).where(runs.c.status.in_(OPEN_RUN_STATUSES)).order_by(runs.c.run_number)
    return [dict(r) for r in conn.execute(q).mappings()]


def read_event(conn: sa.Connection, event_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(trigger_events).where(trigger_events.c.event_id == event_id)).mappings().first()
    return dict(row) if row else None


def read_undispatched_events(conn: sa.Connection, limit: int = 500) -> list[dict[str, Any]]:
    q = (sa.select(trigger_events).where(trigger_events.c.dispatched_at.is_(None))
         .order_by(trigger_events.c.occurred_at, trigger_events.c.event_id).limit(limit))
    return [dict(r) for r in conn.execute(q).mappings()]


def claim_event(tx: Tx, event_id: str) -> bool:
    """Take an undispatched event to turn into runs, in the transaction that creates them: False if another
    dispatcher (another process on the same database) took it first. One guarded statement: on PostgreSQL a
    second claim waits for the first's commit, then finds the event dispatched."""
    res = tx.conn.execute(trigger_events.update().where(trigger_events.c.event_id == event_id,
                                                        trigger_events.c.dispatched_at.is_(None))
                          .values(dispatched_at=tx.now()))
    return res.rowcount == 1


def mark_events_dispatched(tx: Tx, event_ids: list[str]) -> None:
    """Many events no definition listens to, dispatched at once (an import's thousand changes); one another
    dispatcher marked first keeps its time."""
    for start in range(0, len(event_ids), 10_000):
        tx.conn.execute(trigger_events.update().where(trigger_events.c.event_id.in_(event_ids[start:start + 10_000]),
                                                      trigger_events.c.dispatched_at.is_(None))
                        .values(dispatched_at=tx.now()))


def read_run_ids_for_event(conn: sa.Connection, event_id: str) -> list[str]:
    """The runs a trigger event started (one per listening definition)."""
    q = sa.select(runs.c.run_id).where(runs.c.trigger_event_id == event_id).order_by(runs.c.run_number)
    return [r for (r,) in conn.execute(q)]


def read_run_ids_for_events(conn: sa.Connection, event_ids: list[str]) -> list[str]:
    """The runs a set of trigger events started (an import's events), in run order."""
    if not event_ids:
        return []
    q = sa.select(runs.c.run_id).where(runs.c.trigger_event_id.in_(event_ids)).order_by(runs.c.run_number)
    return [r for (r,) in conn.execute(q)]


def read_runs_table(conn: sa.Connection, limit: int = 200) -> list[dict[str, Any]]:
    """The plain runs table app.py shows until the dashboard lands: newest first."""
    q = sa.select(runs.c.run_id, runs.c.definition_id, runs.c.definition_version, runs.c.trigger_kind,
                  runs.c.trigger_source, runs.c.status, runs.c.subjects_matched, runs.c.actions_invoked,
                  runs.c.triggered_at, runs.c.started_at, runs.c.completed_at
                  ).order_by(runs.c.triggered_at.desc(), runs.c.run_number.desc()).limit(limit)
    return [dict(r) for r in conn.execute(q).mappings()]


def request_cancel(tx: Tx, run_id: str, actor: str, reason: str) -> bool:
    """Record the cancel request once; False if one was already recorded."""
    res = tx.conn.execute(runs.update().where(runs.c.run_id == run_id, runs.c.cancel_requested_at.is_(None))
                          .values(cancel_requested_by=actor, cancel_requested_at=tx.now(),
                                  cancel_reason=reason))
    return res.rowcount == 1
