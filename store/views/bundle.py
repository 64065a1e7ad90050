"""What a run's evidence bundle reads: every item, attempt, approval and audit entry of one run, in pages.

A run can hold 100,000 items, so nothing here is one query per item and nothing is read whole: each
function is a generator of keyset pages (never OFFSET), which the bundle writes out as it goes. Read them
all on one connection, inside one transaction, and the bundle is one consistent snapshot of the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from store.schema import approvals, audit_log, item_attempts, run_items

PAGE = 5_000

# The audit entity kinds that concern a run, beside its items: who exported its evidence before, and
# which member was refused an act on it.
RUN_ENTITY_KINDS = ("run", "bundle")


def iter_run_items(conn: sa.Connection, run_id: str, page: int = PAGE) -> Iterator[dict[str, Any]]:
    """Every column of every item of the run, in position order."""
    after = 0
    while True:
        rows = conn.execute(sa.select(run_items).where(run_items.c.run_id == run_id,
                                                       run_items.c.position > after)
                            .order_by(run_items.c.position).limit(page)).mappings().all()
        yield from (dict(r) for r in rows)
        if len(rows) < page:
            return
        after = rows[-1]["position"]


def iter_run_attempts(conn: sa.Connection, run_id: str, page: int = PAGE) -> Iterator[dict[str, Any]]:
    """Every attempt at the run's items, in item order then attempt order (the order they happened)."""
    position = run_items.c.position.label("item_position")
    base = (sa.select(item_attempts, position)
            .join(run_items, run_items.c.item_id == item_attempts.c.item_id)
            .where(item_attempts.c.run_id == run_id))
    after: tuple[int, int] = (0, 0)
    while True:
        q = base.where(sa.tuple_(run_items.c.position, item_attempts.c.attempt) > sa.tuple_(*after))
        rows = conn.execute(q.order_by(run_items.c.position, item_attempts.c.attempt).limit(page)
                            ).mappings().all()
        for r in rows:
            row = dict(r)
            row.pop("item_position")
            yield row
        if len(rows) < page:
            return
        after = (rows[-1]["item_position"], rows[-1]["attempt"])


def iter_run_approvals(conn: sa.Connection, run_id: str, page: int = PAGE) -> Iterator[dict[str, Any]]:
    """Every approval opened for the run's items, decided or not."""
    after = ""
    while True:
        rows = conn.execute(sa.select(approvals).where(approvals.c.run_id == run_id,
                                                       approvals.c.approval_id > after)
                            .order_by(approvals.c.approval_id).limit(page)).mappings().all()
        yield from (dict(r) for r in rows)
        if len(rows) < page:
            return
        after = rows[-1]["approval_id"]


def iter_run_audit_entries(conn: sa.Connection, run_id: str, trigger_event_id: str | None,
                           page: int = PAGE) -> Iterator[dict[str, Any]]:
    """Every audit entry about the run, its items and its trigger event, with all columns, in chain order.

    Paged by ``seq``: the log is appended in ``seq`` order, so each page skips the earlier part of the
    file instead of rescanning it. The items are matched by a semi-join, not by a list of ids.
    """
    item_ids = sa.select(run_items.c.item_id).where(run_items.c.run_id == run_id)
    about = [sa.and_(audit_log.c.entity_kind.in_(RUN_ENTITY_KINDS), audit_log.c.entity_id == run_id),
             sa.and_(audit_log.c.entity_kind == "run_item", audit_log.c.entity_id.in_(item_ids))]
    if trigger_event_id:
        about.append(sa.and_(audit_log.c.entity_kind == "trigger_event",
                             audit_log.c.entity_id == trigger_event_id))
    after = 0
    while True:
        rows = conn.execute(sa.select(audit_log).where(sa.or_(*about), audit_log.c.seq > after)
                            .order_by(audit_log.c.seq).limit(page)).mappings().all()
        yield from (dict(r) for r in rows)
        if len(rows) < page:
            return
        after = rows[-1]["seq"]
