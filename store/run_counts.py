"""Each run's item counts by outcome, kept on the run itself, and its failures summarized by cause.

The analytics page and the brief count a quarter's outcomes per automation and week; joining twenty
million items to their runs for that costs seconds, reading a million runs milliseconds. So every time a
run's status is settled — which the engine does in the very transaction of every outcome change (a batch
of outcomes, a retry, an approval, a dismissal, a cancel, recovery) — the counts it derived the status
from are written on the run too. They are the run's own items counted, never a separate tally that could
drift: ``backfill_item_counts`` recomputes them all, and tests hold them equal to the items.

Failures get the same treatment in ``run_failure_causes``: per run and cause (its first clause, see
``cause_kind``), the items failed now and the attempts that ever failed. It is refreshed at the same
moment for a run that has or had failed items, so a clean run (nearly all of them) pays nothing, and the
Failed items page and the analytics read a few thousand summary rows instead of scanning every attempt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from core.states import (
    AWAITING_APPROVAL,
    IDEMPOTENT_REPLAY,
    IN_FLIGHT,
    ITEM_FAILED,
    ITEM_PENDING,
    SKIPPED,
    SUCCEEDED,
    UNFINISHED_ITEM_STATES,
)
from store.cause_rollups import apply_cause_change, read_cause_rows
from store.failure_accounts import has_failure_account, refresh_failure_account
from store.schema import item_attempts, run_failure_causes, run_items, runs
from store.tx import Tx

# item outcome (or pre-outcome state) → the run column that counts it
OUTCOME_COLUMN: dict[str, str] = {
    ITEM_PENDING: "items_pending", IN_FLIGHT: "items_pending", SUCCEEDED: "items_succeeded",
    ITEM_FAILED: "items_failed", SKIPPED: "items_skipped", AWAITING_APPROVAL: "items_awaiting_approval",
    IDEMPOTENT_REPLAY: "items_idempotent_replay",
}
COUNT_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(OUTCOME_COLUMN.values()))
# the outcome each column reports under (pending and in-flight together as "pending")
COLUMN_OUTCOME: dict[str, str] = {"items_pending": ITEM_PENDING, **{c: o for o, c in OUTCOME_COLUMN.items()
                                                                  if o not in UNFINISHED_ITEM_STATES}}


def item_count_values(outcome_counts: Mapping[str, int]) -> dict[str, int]:
    values = dict.fromkeys(COUNT_COLUMNS, 0)
    for outcome, n in outcome_counts.items():
        values[OUTCOME_COLUMN[outcome]] += int(n)
    return values


def write_item_counts(tx: Tx, run: Mapping[str, Any], outcome_counts: Mapping[str, int]) -> None:
    """Store the counts the run's status was just derived from (only when they changed), and refresh the
    run's failure summary when it has or had failed items."""
    values = item_count_values(outcome_counts)
    if any(run.get(c) != v for c, v in values.items()):
        tx.conn.execute(runs.update().where(runs.c.run_id == run["run_id"]).values(**values))
    failures = bool(values["items_failed"] or run.get("items_failed"))
    if failures:
        mine = run_failure_causes.c.run_id == run["run_id"]
        before = read_cause_rows(tx.conn, mine)
        tx.conn.execute(run_failure_causes.delete().where(mine))
        tx.conn.execute(run_failure_causes.insert().from_select(
            [c.name for c in run_failure_causes.columns],
            _failure_summary(runs.c.run_id == run["run_id"], run_items.c.run_id == run["run_id"],
                             item_attempts.c.run_id == run["run_id"])))
        apply_cause_change(tx, before, read_cause_rows(tx.conn, mine))
    # A failed item recovering takes its run's failed count to 0 and then on to succeeded at the next settle,
    # so the account is recounted while the run has one at all (one key lookup for every other run).
    if failures or has_failure_account(tx.conn, run["run_id"]):
        refresh_failure_account(tx.conn, run["run_id"])


def cause_kind(col: Any) -> Any:
    """A cause's first clause says what went wrong ("messaging system unavailable (…)"); what follows the
    first ';' names the item ("the request to a.okafor …"). Grouping on it counts one cause once."""
    return sa.func.coalesce(sa.func.split_part(col, ";", 1), "(no cause recorded)")


def _failure_summary(runs_where: Any, items_where: Any, attempts_where: Any) -> Any:
    """(run, its definition and trigger time, cause, class) → items failed now, failed attempts, items with
    a failed attempt."""
    now = (sa.select(run_items.c.run_id, cause_kind(run_items.c.failure_cause).label("cause"),
                     sa.func.coalesce(run_items.c.failure_class, "unknown").label("class_"),
                     sa.func.count().label("failed_items"))
           .where(run_items.c.outcome == ITEM_FAILED, items_where).group_by(sa.literal_column("1"),
                                                                          sa.literal_column("2"),
                                                                          sa.literal_column("3")).subquery())
    ever = (sa.select(item_attempts.c.run_id, cause_kind(item_attempts.c.failure_cause).label("cause"),
                      sa.func.coalesce(item_attempts.c.failure_class, "unknown").label("class_"),
                      sa.func.count().label("failed_attempts"),
                      sa.func.count(sa.distinct(item_attempts.c.item_id)).label("items_with_failed_attempts"))
            .where(item_attempts.c.outcome == ITEM_FAILED, attempts_where).group_by(sa.literal_column("1"),
                                                                                 sa.literal_column("2"),
                                                                                 sa.literal_column("3")).subquery())
    on = sa.and_(now.c.run_id == ever.c.run_id, now.c.cause == ever.c.cause, now.c.class_ == ever.c.class_)
    both = (sa.select(sa.func.coalesce(now.c.run_id, ever.c.run_id).label("run_id"),
                      sa.func.coalesce(now.c.cause, ever.c.cause).label("cause"),
                      sa.func.coalesce(now.c.class_, ever.c.class_).label("class_"),
                      sa.func.coalesce(now.c.failed_items, 0).label("failed_items"),
                      sa.func.coalesce(ever.c.failed_attempts, 0).label("failed_attempts"),
                      sa.func.coalesce(ever.c.items_with_failed_attempts, 0).label("items_with"))
            .select_from(now.join(ever, on, full=True)).subquery())
    return (sa.select(both.c.run_id, runs.c.definition_id, runs.c.triggered_at, both.c.cause, both.c.class_,
                      both.c.failed_items, both.c.failed_attempts, both.c.items_with)
            .select_from(both.join(runs, runs.c.run_id == both.c.run_id)).where(runs_where))


def backfill_failure_causes(conn: sa.Connection) -> None:
    """Summarize every run's failures from its items and attempts (the migration, and the generator)."""
    conn.execute(run_failure_causes.delete())
    conn.execute(run_failure_causes.insert().from_select([c.name for c in run_failure_causes.columns],
                                                         _failure_summary(sa.true(), sa.true(), sa.true())))


def backfill_item_counts(conn: sa.Connection) -> None:
    """Recount every run from its items (the migration that introduced the columns, and the generator)."""
    counted = (sa.select(run_items.c.run_id, *[
        sa.func.count().filter(run_items.c.outcome.in_([o for o, c in OUTCOME_COLUMN.items() if c == column]))
        .label(column) for column in COUNT_COLUMNS]).group_by(run_items.c.run_id).subquery())
    conn.execute(runs.update().where(runs.c.run_id == counted.c.run_id)
                 .values(**{column: counted.c[column] for column in COUNT_COLUMNS}))
