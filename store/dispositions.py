"""Failed items' dispositions: recorded once each, beside the item, and read by the pages and the reports.

The item's row is not touched: its outcome stays ``failed``. A disposition is inserted only while the item is
still the failure the member saw (same outcome and attempts), in the command's transaction, so a retry that
settled meanwhile, or another member's disposition, makes it a no-op the command reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from core.states import ITEM_FAILED
from store.failure_accounts import refresh_failure_account
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
    # Its run's failures now stand otherwise. Recounted under the run's row lock (PostgreSQL), as every settle
    # recounts them: two recounts of one run never interleave. Taken after the item's, as a retry takes them.
    if tx.conn.dialect.name == "postgresql":
        tx.conn.execute(sa.select(runs.c.run_id).where(runs.c.run_id == item["run_id"]).with_for_update())
    refresh_failure_account(tx.conn, item["run_id"])
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
