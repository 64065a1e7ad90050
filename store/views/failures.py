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

from core.states import ITEM_FAILED
from store.failure_accounts import KIND_COLUMN, STANDINGS
from store.schema import item_dispositions, run_failure_accounts, run_items, runs
from store.views.analytics import AnalyticsFilter
from store.views.oversight import runs_holding


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
    a = run_failure_accounts.c  # each run's failures as they stand (store/failure_accounts.py)
    conds = [*([a.triggered_at >= f.start] if f.start else []), *([a.triggered_at < f.end] if f.end else []),
             *([a.definition_id.in_(f.definitions)] if f.definitions else [])]
    sums = conn.execute(sa.select(*[sa.func.coalesce(sa.func.sum(a[c]), 0) for c in ("failed_items", *STANDINGS)])
                        .where(*conds)).one()
    total, standing = int(sums[0]), dict(zip(STANDINGS, (int(n) for n in sums[1:]), strict=True))
    kinds = {kind: standing[column] for kind, column in KIND_COLUMN.items() if standing[column]}
    recovered, open_, retrying = standing["recovered"], standing["open"], standing["retrying"]
    first_open: tuple[dict[str, Any], ...] = ()
    if open_:
        first_open = _first_open(conn, conds, listed)
    return FailureAccount(total, recovered, dict(sorted(kinds.items())), open_, retrying, first_open)


def _first_open(conn: sa.Connection, account_conds: list[Any], listed: int) -> tuple[dict[str, Any], ...]:
    """The first ``listed`` open failures, earliest triggered run first: the runs from the accounts (those with open
    failures), then only those runs' items, bounded by the runs' id range so that DuckDB skips the row
    groups of every other run (items are stored in run order) and PostgreSQL reads them by run."""
    a = run_failure_accounts.c
    picked = conn.execute(sa.select(a.run_id, a.open).where(a.open > 0, *account_conds)
                          .order_by(a.triggered_at, a.run_id).limit(listed)).all()  # PostgreSQL: by its index
    run_ids = runs_holding(picked, listed)
    if not run_ids:
        return ()
    q = (sa.select(run_items.c.item_id, run_items.c.run_id, runs.c.definition_id, run_items.c.subject_id,
                   run_items.c.failure_cause, run_items.c.failure_class)
         .select_from(run_items.join(runs, runs.c.run_id == run_items.c.run_id)
                      .outerjoin(item_dispositions, item_dispositions.c.item_id == run_items.c.item_id))
         .where(run_items.c.outcome == ITEM_FAILED, item_dispositions.c.item_id.is_(None),
                run_items.c.retry_due_at.is_(None), run_items.c.run_id.in_(run_ids),
                run_items.c.run_id.between(min(run_ids), max(run_ids)))
         .order_by(runs.c.triggered_at, runs.c.run_number, run_items.c.position).limit(listed))
    return tuple(dict(r) for r in conn.execute(q).mappings())
