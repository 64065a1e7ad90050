"""Run items, their attempts and approvals.

Every change of an item's outcome is one guarded statement: ``UPDATE … WHERE outcome IN (the states the
core's transition table allows it from)``, checked by its row count. A row that was not in an allowed
state is refused by name (``TransitionRefused``), and the transaction rolls back — the transition is
checked against the stored state, not against what a caller believed it to be. (The portable way to take
work without ``SELECT … FOR UPDATE``, which DuckDB does not have.)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from core.states import (
    APPROVAL_CANCELLED,
    APPROVED,
    AWAITING_APPROVAL,
    IN_FLIGHT,
    ITEM_FAILED,
    ITEM_PENDING,
    SKIPPED,
    TransitionRefused,
    check_item_transition,
    item_sources,
)
from store.bulk import Columns, append_columns, append_packed, append_rows, columns_of, listed, pack, update_columns
from store.errors import WorkTakenOver
from store.schema import approvals, audit_log, item_attempts, run_items
from store.tx import Tx

if TYPE_CHECKING:
    import pyarrow as pa


def insert_items(tx: Tx, rows: Sequence[dict[str, Any]] | Columns | pa.Table) -> None:
    """Append items: rows, columns (name → values), or chunks packed with ``pack_items``."""
    if isinstance(rows, Mapping):
        append_columns(tx, run_items, rows)
    elif hasattr(rows, "num_rows"):  # an Arrow table: pyarrow is not imported unless a caller uses it
        append_packed(tx, run_items, rows)
    else:
        append_rows(tx, run_items, rows)


def pack_items(columns: Columns) -> pa.Table:
    return pack(run_items, columns)


def read_item(conn: sa.Connection, item_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(run_items).where(run_items.c.item_id == item_id)).mappings().first()
    return dict(row) if row else None


def require_item(conn: sa.Connection, item_id: str) -> dict[str, Any]:
    """An item that must exist (the caller just claimed or settled it)."""
    item = read_item(conn, item_id)
    if item is None:
        raise LookupError(f"there is no run item {item_id} in this workspace")
    return item


def read_items(conn: sa.Connection, run_id: str, outcome: str | None = None) -> list[dict[str, Any]]:
    q = sa.select(run_items).where(run_items.c.run_id == run_id)
    if outcome:
        q = q.where(run_items.c.outcome == outcome)
    return [dict(r) for r in conn.execute(q.order_by(run_items.c.position)).mappings().all()]


# What the executor needs of a claimed item: no timestamps, whose conversion dominates reading a batch.
CLAIM_COLUMNS = ("item_id", "run_id", "position", "subject_kind", "subject_id", "subject_label",
                 "subject_snapshot", "action", "parameters", "idempotency_key", "outcome", "attempts")


def _is_postgres(tx: Tx) -> bool:
    return bool(tx.conn.dialect.name == "postgresql")


def claim_pending_item_columns(tx: Tx, run_id: str, limit: int, after_position: int = 0,
                               worker: str | None = None) -> dict[str, list[Any]]:
    """Take the next ``limit`` pending items of a run in order, marking them in flight (held by ``worker``);
    return them as columns (``CLAIM_COLUMNS`` → values), which the executor works from without a dict per item.

    A read (two when the next positions are not all pending) and one range update: the pending items
    between the first and last position read are exactly those read, because claims happen under the
    workspace's write lock in this transaction. (On PostgreSQL, where other processes claim too, the rows
    are locked as they are read, skipping those another transaction holds, and updated by id.)
    ``after_position`` lets the caller skip the part of the run it has already worked through.
    """
    pending = (run_items.c.run_id == run_id, run_items.c.outcome == ITEM_PENDING,
               run_items.c.position > after_position)
    cols = [run_items.c[c] for c in CLAIM_COLUMNS]
    if _is_postgres(tx):
        taken = columns_of(tx.conn.execute(sa.select(*cols).where(*pending).order_by(run_items.c.position)
                                           .limit(limit).with_for_update(skip_locked=True)))
        if taken["item_id"]:
            tx.conn.execute(run_items.update().where(run_items.c.item_id.in_(taken["item_id"])).values(
                outcome=IN_FLIGHT, retry_due_at=None, updated_at=tx.now(), claimed_by=worker))
        return taken
    # Positions are unique within a run, so if the ``limit`` positions after ``after_position`` are all
    # pending, they are the items to take — the common case, as a run is worked in position order.
    taken = columns_of(tx.conn.execute(sa.select(*cols).where(
        *pending, run_items.c.position <= after_position + limit).order_by(run_items.c.position)))
    if len(taken["position"]) < limit:
        # Otherwise the last position to take is found on the position column alone: a top-N over the
        # whole rows would carry every pending item's snapshot and parameters through the sort.
        next_ones = (sa.select(run_items.c.position).where(*pending).order_by(run_items.c.position)
                     .limit(limit).subquery())
        last = sa.select(sa.func.max(next_ones.c.position)).scalar_subquery()
        taken = columns_of(tx.conn.execute(sa.select(*cols).where(*pending, run_items.c.position <= last)
                                           .order_by(run_items.c.position)))
    positions = taken["position"]
    if positions:
        res = tx.conn.execute(run_items.update().where(
            run_items.c.run_id == run_id, run_items.c.outcome == ITEM_PENDING,
            run_items.c.position.between(positions[0], positions[-1]))
            .values(outcome=IN_FLIGHT, retry_due_at=None, updated_at=tx.now(), claimed_by=worker))
        if res.rowcount != len(positions):  # another writer moved one of them inside this transaction
            _refuse(tx, taken["item_id"], IN_FLIGHT)
    return taken


def _refuse(tx: Tx, item_ids: Sequence[str], wanted: str) -> None:
    """Name the first item a guarded write could not move to ``wanted``, with the state it was in."""
    allowed = item_sources(wanted)
    rows = tx.conn.execute(sa.select(run_items.c.item_id, run_items.c.outcome).where(
        run_items.c.item_id.in_(list(item_ids)), run_items.c.outcome.not_in(list(allowed)))
        .order_by(run_items.c.item_id).limit(1)).first()
    if rows is None:  # the row is gone
        raise TransitionRefused("item", item_ids[0], "missing", wanted)
    raise TransitionRefused("item", rows.item_id, rows.outcome, wanted)


def as_claimed_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Items read or claimed as dicts, as the columns ``claim_pending_item_columns`` gives."""
    return {c: [r[c] for r in rows] for c in CLAIM_COLUMNS}


def claim_items(tx: Tx, item_ids: Sequence[str], from_outcomes: Sequence[str], worker: str | None = None
                ) -> list[dict[str, Any]]:
    """Mark the given items in flight (held by ``worker``) if they are still in one of ``from_outcomes``;
    return those taken (an item in another state is left alone: a retry or an approval that another member
    won; on PostgreSQL also one another process's transaction is taking at this moment)."""
    if not item_ids:
        return []
    for outcome in from_outcomes:
        check_item_transition(item_ids[0], outcome, IN_FLIGHT)
    cond = (run_items.c.item_id.in_(list(item_ids)), run_items.c.outcome.in_(list(from_outcomes)))
    found = sa.select(run_items).where(*cond).order_by(run_items.c.position)
    if _is_postgres(tx):
        found = found.with_for_update(skip_locked=True)
    taken = [dict(r) for r in tx.conn.execute(found).mappings().all()]
    if taken:
        ids = [t["item_id"] for t in taken]
        res = tx.conn.execute(run_items.update().where(
            run_items.c.item_id.in_(ids), run_items.c.outcome.in_(list(from_outcomes)))
            .values(outcome=IN_FLIGHT, retry_due_at=None, updated_at=tx.now(), claimed_by=worker))
        if res.rowcount != len(taken):
            _refuse(tx, ids, IN_FLIGHT)
    return taken


def read_unfinished_written_at(conn: sa.Connection, run_id: str) -> dt.datetime | None:
    """When the run's pending and in-flight items were last written (None if it has none): how a live
    engine tells an interrupted run from one being worked (``engine.resume``)."""
    return conn.execute(sa.select(sa.func.max(run_items.c.updated_at)).where(
        run_items.c.run_id == run_id, run_items.c.outcome.in_((ITEM_PENDING, IN_FLIGHT)))).scalar()


def read_in_flight_items(conn: sa.Connection, run_id: str, held_by: str | None = None) -> list[dict[str, Any]]:
    """The run's in-flight items (only those ``held_by`` holds, if given)."""
    items = read_items(conn, run_id, IN_FLIGHT)
    return items if held_by is None else [i for i in items if i["claimed_by"] == held_by]


def settle_item_outcomes(tx: Tx, columns: Columns, worker: str | None = None) -> None:
    """Write the outcomes a batch settled (columns: ``item_id``, ``outcome``, …): one guarded statement that
    updates only items still in a state every outcome of the batch may follow (in flight) and, with
    ``worker``, still held by it; a row that is not is refused by name and the batch rolls back — a worker
    whose items were taken over after its lease lapsed writes nothing of them."""
    item_ids, outcomes = listed(columns["item_id"]), listed(columns["outcome"])
    if not item_ids:
        return
    allowed = frozenset.intersection(*(item_sources(o) for o in set(outcomes)))
    kept = update_columns(tx, run_items, "item_id", columns, guard=("outcome", sorted(allowed)),
                          fence=("claimed_by", worker) if worker is not None else None)
    if kept:
        wanted = dict(zip(item_ids, outcomes, strict=True))
        first = min(kept)
        stored = tx.conn.execute(sa.select(run_items.c.outcome, run_items.c.claimed_by)
                                 .where(run_items.c.item_id == first)).first()
        if stored is not None and stored.outcome in allowed and worker is not None and stored.claimed_by != worker:
            raise WorkTakenOver(first, worker, str(stored.claimed_by))
        raise TransitionRefused("item", first, stored.outcome if stored else "missing", wanted[first])


def insert_attempts(tx: Tx, rows: Sequence[dict[str, Any]] | Columns) -> None:
    if isinstance(rows, Mapping):
        append_columns(tx, item_attempts, rows)
    else:
        append_rows(tx, item_attempts, rows)


def read_attempts(conn: sa.Connection, item_id: str) -> list[dict[str, Any]]:
    q = sa.select(item_attempts).where(item_attempts.c.item_id == item_id).order_by(item_attempts.c.attempt)
    return [dict(r) for r in conn.execute(q).mappings()]


def read_item_actors(conn: sa.Connection, item_id: str) -> set[str]:
    """Everyone who retried the item or started an attempt at it: the four-eyes check asks whether the
    member deciding it is among them. A member's retry is audited as ``item.retried`` when it is claimed,
    before its attempt is written, so the audit entry counts even where the attempt never landed."""
    retried = sa.select(audit_log.c.actor).where(audit_log.c.entity_kind == "run_item",
                                                 audit_log.c.entity_id == item_id,
                                                 audit_log.c.event == "item.retried")
    attempted = sa.select(item_attempts.c.actor).where(item_attempts.c.item_id == item_id)
    return set(conn.execute(sa.union(retried, attempted)).scalars())


def skip_unstarted_items(tx: Tx, run_id: str, reason: str) -> list[str]:
    """Cancellation: items not yet started (pending or awaiting approval) become skipped."""
    ids = list(tx.conn.execute(sa.select(run_items.c.item_id).where(
        run_items.c.run_id == run_id, run_items.c.outcome.in_((ITEM_PENDING, AWAITING_APPROVAL)))).scalars())
    if ids:
        res = tx.conn.execute(run_items.update().where(
            run_items.c.item_id.in_(ids), run_items.c.outcome.in_((ITEM_PENDING, AWAITING_APPROVAL)))
            .values(outcome=SKIPPED, skip_reason=reason, updated_at=tx.now()))
        if res.rowcount != len(ids):
            _refuse(tx, ids, SKIPPED)
        tx.conn.execute(approvals.update().where(approvals.c.item_id.in_(ids), approvals.c.decision.is_(None))
                        .values(decision=APPROVAL_CANCELLED, decided_at=tx.now(), reason=reason))
    tx.conn.execute(run_items.update().where(
        run_items.c.run_id == run_id, run_items.c.outcome == ITEM_FAILED, run_items.c.retry_due_at.is_not(None))
        .values(retry_due_at=None))
    return ids


def read_due_retries(conn: sa.Connection, now: dt.datetime) -> list[tuple[str, str]]:
    q = sa.select(run_items.c.run_id, run_items.c.item_id).where(
        run_items.c.outcome == ITEM_FAILED, run_items.c.retry_due_at <= now).order_by(
        run_items.c.retry_due_at, run_items.c.item_id)
    return [(r.run_id, r.item_id) for r in conn.execute(q)]


# --- approvals ------------------------------------------------------------------------------------
def open_approvals(tx: Tx, rows: Sequence[dict[str, Any]]) -> None:
    append_rows(tx, approvals, rows)


def read_approval(conn: sa.Connection, item_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(approvals).where(approvals.c.item_id == item_id)).mappings().first()
    return dict(row) if row else None


def read_approved_item_ids(conn: sa.Connection, item_ids: Sequence[str]) -> set[str]:
    q = sa.select(approvals.c.item_id).where(approvals.c.item_id.in_(list(item_ids)),
                                             approvals.c.decision == APPROVED)
    return set(conn.execute(q).scalars())


def decide_approval(tx: Tx, item_id: str, decision: str, actor: str, reason: str | None) -> bool:
    """Close an open approval; False if it was already decided (the other decision won)."""
    res = tx.conn.execute(approvals.update().where(approvals.c.item_id == item_id,
                                                   approvals.c.decision.is_(None))
                          .values(decision=decision, decided_by=actor, decided_at=tx.now(), reason=reason))
    return res.rowcount == 1


def skip_item(tx: Tx, item_id: str, from_outcome: str, reason: str) -> None:
    """``from_outcome`` → skipped with ``reason`` (a dismissal); refused if the item is no longer so."""
    check_item_transition(item_id, from_outcome, SKIPPED)
    res = tx.conn.execute(run_items.update().where(run_items.c.item_id == item_id,
                                                   run_items.c.outcome == from_outcome)
                          .values(outcome=SKIPPED, skip_reason=reason, updated_at=tx.now()))
    if res.rowcount != 1:
        _refuse(tx, [item_id], SKIPPED)


def claim_due_retries(tx: Tx, now: dt.datetime, limit: int = 1000, worker: str | None = None
                      ) -> list[dict[str, Any]]:
    """Failed items whose automatic retry is due, in flight now (held by ``worker``): with many workers each
    due item goes to one (on PostgreSQL the others skip the rows one is taking)."""
    due = sa.select(run_items.c.item_id).where(
        run_items.c.outcome == ITEM_FAILED, run_items.c.retry_due_at <= now) \
        .order_by(run_items.c.retry_due_at, run_items.c.item_id).limit(limit)
    if _is_postgres(tx):
        due = due.with_for_update(skip_locked=True)
    ids = list(tx.conn.execute(due).scalars())
    return claim_items(tx, ids, (ITEM_FAILED,), worker)


def read_open_approval_items(conn: sa.Connection) -> list[dict[str, Any]]:
    """Open approvals with the item they hold (subject and parameters), oldest first."""
    q = (sa.select(approvals.c.approval_id, approvals.c.opened_at, approvals.c.definition_id,
                   run_items.c.item_id, run_items.c.run_id, run_items.c.subject_kind, run_items.c.subject_id,
                   run_items.c.subject_label, run_items.c.subject_snapshot, run_items.c.action,
                   run_items.c.parameters)
         .join(run_items, run_items.c.item_id == approvals.c.item_id)
         .where(approvals.c.decision.is_(None)).order_by(approvals.c.opened_at, approvals.c.item_id))
    return [dict(r) for r in conn.execute(q).mappings()]


def read_failed_item_ids(conn: sa.Connection, definition_id: str | None = None) -> list[tuple[str, str]]:
    """(run_id, item_id) of items whose outcome is failed now."""
    from store.schema import runs
    q = sa.select(run_items.c.run_id, run_items.c.item_id).where(run_items.c.outcome == ITEM_FAILED)
    if definition_id:
        q = q.join(runs, runs.c.run_id == run_items.c.run_id).where(runs.c.definition_id == definition_id)
    return [(r.run_id, r.item_id) for r in conn.execute(q.order_by(run_items.c.item_id))]
