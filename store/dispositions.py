"""Failed items' dispositions: recorded once each, beside the item, and read by the pages and the reports.

The item's row is not touched: its outcome stays ``failed``. A disposition is inserted only while the item is
still the failure the member saw (same outcome and attempts), in the command's transaction, so a retry that
settled meanwhile, or another member's disposition, makes it a no-op the command reports.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from core.states import ITEM_FAILED
from store.schema import item_dispositions, run_items, runs
from store.tx import Tx


def insert_disposition(tx: Tx, item: dict[str, Any], definition_id: str, kind: str, reason: str,
                       reference: str | None, superseded_by: str | None, actor: str) -> bool:
    """Record the disposition of ``item`` (a run_items row as the member saw it); False if it is no longer
    that failure (retried since) or was dispositioned meanwhile."""
    q = sa.select(run_items.c.item_id).where(run_items.c.item_id == item["item_id"],
                                             run_items.c.outcome == ITEM_FAILED,
                                             run_items.c.attempts == item["attempts"])
    if tx.conn.dialect.name == "postgresql":  # a retry claiming the item waits, or is waited for (DuckDB: one writer)
        q = q.with_for_update()
    still = tx.conn.execute(q).first()
    if still is None or read_disposition(tx.conn, item["item_id"]) is not None:
        return False
    tx.conn.execute(item_dispositions.insert().values(
        item_id=item["item_id"], run_id=item["run_id"], definition_id=definition_id, kind=kind, reason=reason,
        reference=reference, superseded_by=superseded_by, failure_cause=item["failure_cause"] or "",
        attempts=item["attempts"], decided_by=actor, decided_at=tx.now()))
    return True


def read_disposition(conn: sa.Connection, item_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(item_dispositions).where(item_dispositions.c.item_id == item_id)).mappings().first()
    return dict(row) if row else None


def read_dispositions(conn: sa.Connection, item_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Item id → its disposition, for those of ``item_ids`` that have one."""
    if not item_ids:
        return {}
    rows = conn.execute(sa.select(item_dispositions).where(item_dispositions.c.item_id.in_(list(item_ids))))
    return {r["item_id"]: dict(r) for r in rows.mappings()}


def read_run_dispositions(conn: sa.Connection, run_id: str) -> dict[str, dict[str, Any]]:
    rows = conn.execute(sa.select(item_dispositions).where(item_dispositions.c.run_id == run_id)
                        .order_by(item_dispositions.c.item_id))
    return {r["item_id"]: dict(r) for r in rows.mappings()}


def count_open_failures(conn: sa.Connection, run_id: str) -> int:
    """The run's failed items without a disposition."""
    q = (sa.select(sa.func.count()).select_from(run_items.outerjoin(
        item_dispositions, item_dispositions.c.item_id == run_items.c.item_id))
         .where(run_items.c.run_id == run_id, run_items.c.outcome == ITEM_FAILED,
                item_dispositions.c.item_id.is_(None)))
    return int(conn.execute(q).scalar_one())


def read_open_failures_in_period(conn: sa.Connection, start: dt.datetime, end: dt.datetime,
                                 definition_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Failed items of runs triggered in [start, end) that nobody has dispositioned: what the brief's
    integrity statement lists (in run and position order)."""
    q = (sa.select(run_items.c.item_id, run_items.c.run_id, runs.c.definition_id, run_items.c.subject_id,
                   run_items.c.failure_cause, run_items.c.failure_class, run_items.c.retry_due_at)
         .select_from(run_items.join(runs, runs.c.run_id == run_items.c.run_id).outerjoin(
             item_dispositions, item_dispositions.c.item_id == run_items.c.item_id))
         .where(runs.c.triggered_at >= start, runs.c.triggered_at < end, runs.c.items_failed > 0,
                run_items.c.outcome == ITEM_FAILED, item_dispositions.c.item_id.is_(None))
         .order_by(runs.c.run_number, run_items.c.position))
    if definition_ids:
        q = q.where(runs.c.definition_id.in_(list(definition_ids)))
    return [dict(r) for r in conn.execute(q).mappings()]


def count_dispositions_in_period(conn: sa.Connection, start: dt.datetime, end: dt.datetime,
                                 definition_ids: Sequence[str] | None = None) -> dict[str, int]:
    """Kind → dispositioned items of runs triggered in [start, end)."""
    q = (sa.select(item_dispositions.c.kind, sa.func.count().label("n"))
         .select_from(item_dispositions.join(runs, runs.c.run_id == item_dispositions.c.run_id))
         .where(runs.c.triggered_at >= start, runs.c.triggered_at < end)
         .group_by(item_dispositions.c.kind))
    if definition_ids:
        q = q.where(runs.c.definition_id.in_(list(definition_ids)))
    return {r.kind: int(r.n) for r in conn.execute(q)}
