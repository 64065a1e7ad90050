"""How each run's failures stand — recovered, dispositioned (by kind), retrying, open — kept per run.

The Analytics page and the brief's integrity statement account for every item of the period with a failed
attempt (store/views/failures.py). Deriving that from the attempts means reading every attempt of the
period: seconds at a million runs. A run's failures change only when the run settles (a batch of outcomes,
a retry, an approval, a cancel, recovery: ``store.run_counts.write_item_counts``) or when one of its items is
dispositioned (``store.dispositions``), and both refresh the run's row here in their own transaction, from
the run's own items, attempts and dispositions — never a tally that could drift: ``backfill_failure_accounts``
recomputes them all, and the fault harness holds them equal to it.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from core.states import ACTED_OUTCOMES, ITEM_FAILED, SKIPPED
from store.schema import item_attempts, item_dispositions, run_failure_accounts, run_items, runs

STANDINGS: tuple[str, ...] = ("recovered", "retrying", "open", "waived", "resolved_outside", "superseded")
KIND_COLUMN = {"waived": "waived", "resolved-outside": "resolved_outside", "superseded": "superseded"}


def _standing() -> Any:
    """Each failed-before item's standing (see store/views/failures.py for what each means)."""
    failed = run_items.c.outcome == ITEM_FAILED
    return sa.case(
        (run_items.c.outcome.in_((*ACTED_OUTCOMES, SKIPPED)), "recovered"),
        *[(sa.and_(failed, item_dispositions.c.kind == kind), column) for kind, column in KIND_COLUMN.items()],
        (sa.and_(failed, item_dispositions.c.item_id.is_(None), run_items.c.retry_due_at.is_(None)), "open"),
        else_="retrying")


def _accounts(where_run: Any) -> Any:
    ever = (sa.select(item_attempts.c.item_id).where(item_attempts.c.outcome == ITEM_FAILED, where_run(item_attempts))
            .distinct().subquery())
    standing = _standing()
    return (sa.select(run_items.c.run_id, runs.c.definition_id, runs.c.triggered_at,
                      sa.func.count().label("failed_items"),
                      *[sa.func.count().filter(standing == column).label(column) for column in STANDINGS])
            .select_from(ever.join(run_items, run_items.c.item_id == ever.c.item_id)
                         .join(runs, runs.c.run_id == run_items.c.run_id)
                         .outerjoin(item_dispositions, item_dispositions.c.item_id == run_items.c.item_id))
            .group_by(run_items.c.run_id, runs.c.definition_id, runs.c.triggered_at))


_INSERTED = ["run_id", "definition_id", "triggered_at", "failed_items", *STANDINGS]


def refresh_failure_account(conn: sa.Connection, run_id: str) -> None:
    """Recount one run's failures (its settle's or a disposition's transaction)."""
    conn.execute(run_failure_accounts.delete().where(run_failure_accounts.c.run_id == run_id))
    conn.execute(run_failure_accounts.insert().from_select(_INSERTED, _accounts(lambda t: t.c.run_id == run_id)))


def has_failure_account(conn: sa.Connection, run_id: str) -> bool:
    return conn.execute(sa.select(run_failure_accounts.c.run_id).where(run_failure_accounts.c.run_id == run_id)
                        ).first() is not None


def backfill_failure_accounts(conn: sa.Connection) -> None:
    """Recount every run's failures (the migration, the generator, and the tests' reference)."""
    conn.execute(run_failure_accounts.delete())
    conn.execute(run_failure_accounts.insert().from_select(_INSERTED, _accounts(lambda t: sa.true())))


def read_failure_accounts(conn: sa.Connection) -> list[tuple[Any, ...]]:
    """Every run's row, in run order (to compare the kept rows with a recount)."""
    return [tuple(r) for r in conn.execute(sa.select(run_failure_accounts).order_by(run_failure_accounts.c.run_id))]


def recount_failure_accounts(conn: sa.Connection) -> list[tuple[Any, ...]]:
    """Every run's row as its items, attempts and dispositions say it should be (read only)."""
    q = _accounts(lambda t: sa.true()).subquery()
    return [tuple(r) for r in conn.execute(sa.select(*[q.c[c] for c in _INSERTED]).order_by(q.c.run_id))]
