"""How the period's failures stand: recovered by a retry, dispositioned (by kind), or open — and which are open.

An item counts as a failure if any of its attempts failed. It is recovered once a later attempt succeeded, was
answered from the idempotency ledger, or found at its re-check that nothing was left to do (skipped);
dispositioned while failed with a disposition; retrying while an automatic retry is due or a retry is pending
or in flight; and open otherwise: failed, nobody retrying it, nobody having said why it may stay so. The
brief's integrity statement and the Analytics page read this; the Failed items page counts by group
instead (``store.views.oversight``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from core.states import ACTED_OUTCOMES, ITEM_FAILED, SKIPPED
from store.schema import item_attempts, item_dispositions, run_items, runs
from store.views.analytics import AnalyticsFilter, run_period_conds


@dataclass(frozen=True)
class FailureAccount:
    failed_items: int = 0  # items with at least one failed attempt
    recovered: int = 0
    dispositioned: dict[str, int] = field(default_factory=dict)  # kind → items
    open: int = 0
    retrying: int = 0  # failed before, a retry pending or in flight now
    open_items: tuple[dict[str, Any], ...] = ()  # the first of the open ones, oldest run first

    @property
    def accounted(self) -> bool:
        """Every failure recovered or dispositioned (none open, none still being retried)."""
        return self.open == 0 and self.retrying == 0

    @property
    def dispositioned_total(self) -> int:
        return sum(self.dispositioned.values())


def read_failure_account(conn: sa.Connection, f: AnalyticsFilter, listed: int = 25) -> FailureAccount:
    period = run_period_conds(f)
    ever_failed = (sa.select(item_attempts.c.item_id)
                   .select_from(item_attempts.join(runs, runs.c.run_id == item_attempts.c.run_id))
                   .where(item_attempts.c.outcome == ITEM_FAILED, *period).distinct().subquery())
    due = run_items.c.retry_due_at.is_not(None).label("due")
    standing = (sa.select(run_items.c.outcome, item_dispositions.c.kind, due, sa.func.count().label("n"))
                .select_from(ever_failed.join(run_items, run_items.c.item_id == ever_failed.c.item_id)
                             .outerjoin(item_dispositions, item_dispositions.c.item_id == run_items.c.item_id))
                .group_by(run_items.c.outcome, item_dispositions.c.kind, due))
    total = recovered = open_ = retrying = 0
    kinds: dict[str, int] = {}
    for outcome, kind, retry_due, n in conn.execute(standing):
        total += n
        if outcome in (*ACTED_OUTCOMES, SKIPPED):  # a retry acted, or its re-check found nothing left to do
            recovered += n
        elif outcome == ITEM_FAILED and kind:
            kinds[kind] = kinds.get(kind, 0) + n
        elif outcome == ITEM_FAILED and not retry_due:
            open_ += n
        else:  # an automatic retry due, or a retry pending or in flight
            retrying += n
    first_open: tuple[dict[str, Any], ...] = ()
    if open_:
        q = (sa.select(run_items.c.item_id, run_items.c.run_id, runs.c.definition_id, run_items.c.subject_id,
                       run_items.c.failure_cause, run_items.c.failure_class)
             .select_from(run_items.join(runs, runs.c.run_id == run_items.c.run_id)
                          .outerjoin(item_dispositions, item_dispositions.c.item_id == run_items.c.item_id))
             .where(run_items.c.outcome == ITEM_FAILED, item_dispositions.c.item_id.is_(None),
                    run_items.c.retry_due_at.is_(None), runs.c.items_failed > 0, *period)
             .order_by(runs.c.run_number, run_items.c.position).limit(listed))
        first_open = tuple(dict(r) for r in conn.execute(q).mappings())
    return FailureAccount(total, recovered, dict(sorted(kinds.items())), open_, retrying, first_open)
