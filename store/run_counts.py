"""Each run's item counts by outcome, kept on the run itself.

The analytics page and the brief count a quarter's outcomes per automation and week; joining twenty
million items to their runs for that costs seconds, reading a million runs milliseconds. So every time a
run's status is settled — which the engine does in the very transaction of every outcome change (a batch
of outcomes, a retry, an approval, a dismissal, a cancel, recovery) — the counts it derived the status
from are written on the run too. They are the run's own items counted, never a separate tally that could
drift: ``backfill_item_counts`` recomputes them all, and tests hold them equal to the items.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from store.schema import run_items, runs
from store.workspace import Tx

# item outcome (or pre-outcome state) → the run column that counts it
OUTCOME_COLUMN: dict[str, str] = {
    "pending": "items_pending", "in-flight": "items_pending", "succeeded": "items_succeeded",
    "failed": "items_failed", "skipped": "items_skipped", "awaiting-approval": "items_awaiting_approval",
    "idempotent-replay": "items_idempotent_replay",
}
COUNT_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(OUTCOME_COLUMN.values()))
# the outcome each column reports under (pending and in-flight together as "pending")
COLUMN_OUTCOME: dict[str, str] = {"items_pending": "pending", **{c: o for o, c in OUTCOME_COLUMN.items()
                                                                 if o not in ("pending", "in-flight")}}


def item_count_values(outcome_counts: Mapping[str, int]) -> dict[str, int]:
    values = dict.fromkeys(COUNT_COLUMNS, 0)
    for outcome, n in outcome_counts.items():
        values[OUTCOME_COLUMN[outcome]] += int(n)
    return values


def write_item_counts(tx: Tx, run: Mapping[str, Any], outcome_counts: Mapping[str, int]) -> None:
    """Store the counts the run's status was just derived from (only when they changed)."""
    values = item_count_values(outcome_counts)
    if any(run.get(c) != v for c, v in values.items()):
        tx.conn.execute(runs.update().where(runs.c.run_id == run["run_id"]).values(**values))


def backfill_item_counts(conn: sa.Connection) -> None:
    """Recount every run from its items (the migration that introduced the columns, and the generator)."""
    counted = (sa.select(run_items.c.run_id, *[
        sa.func.count().filter(run_items.c.outcome.in_([o for o, c in OUTCOME_COLUMN.items() if c == column]))
        .label(column) for column in COUNT_COLUMNS]).group_by(run_items.c.run_id).subquery())
    conn.execute(runs.update().where(runs.c.run_id == counted.c.run_id)
                 .values(**{column: counted.c[column] for column in COUNT_COLUMNS}))
