"""Closed runs summed by day and their durations by month, kept by the transaction that closes a run.

The analytics page and the brief group a period's runs by automation, week, trigger kind, status and
duration. At a million runs, grouping ``runs`` itself costs seconds on PostgreSQL (one backend process per
query, a heap page per few dozen runs) and the completion-time percentiles sort every closed run. A closed
run's figures no longer change unless it is reopened (a retry of a run completed with failures) or archived,
and both pass through here: so closed runs are summed into two small tables, and only the few open runs are
read from ``runs`` itself.

- ``run_rollups``: per (automation, UTC day of the trigger, trigger kind, status, duration bucket) the runs,
  matched subjects, actions invoked, item counts by outcome and runs with a failed attempt (schema 15) — what
  ``count_runs_by_definition_week``, ``count_items_by_definition_week_outcome``,
  ``count_runs_by_completion_bucket`` and the Runs page's counts (store/views/run_pages.py) sum.
- ``run_duration_rollups``: per (automation, UTC month of the trigger, duration key) the runs; the key is
  ``floor(log_1.02(milliseconds))``, so a percentile read from it is within 1% of the exact one (DDSketch's
  idea: relative, not absolute, error). Months, not days, because durations spread over hundreds of keys.

``apply_run_change`` is called with the run's row before and after every settle (``engine.status``), under
the run's row lock: it takes the old contribution away and adds the new one. The rows are written when the
transaction ends (``Tx.add_to_sums``, ``write_sums``), after every other lock it takes, keys in one sorted
order, so two transactions never wait on each other's rows crosswise. ``backfill_rollups`` recomputes both tables from
``runs`` (the migration; tests hold the kept tables equal to it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from core.states import TERMINAL_RUN_STATUSES
from store.failure_accounts import has_failure_account
from store.schema import (
    event_rollups,
    failure_cause_rollups,
    run_duration_rollups,
    run_failure_accounts,
    run_rollups,
    runs,
    trigger_events,
)
from store.tx import Tx

# Trigger-to-completion buckets: (label, upper bound in seconds, exclusive). Log-spaced, because a run
# takes seconds when nothing waits and days when an approval or a retry after an outage does.
DURATION_BUCKETS: tuple[tuple[str, float], ...] = (
    ("< 10 s", 10), ("10 s – 1 min", 60), ("1 – 10 min", 600), ("10 min – 1 h", 3600),
    ("1 – 6 h", 6 * 3600), ("6 – 24 h", 86400), ("1 – 7 days", 7 * 86400), ("> 7 days", float("inf")),
)
DURATION_RATIO = 1.02  # consecutive duration keys' bounds differ by 2%: a key's middle is within 1% of its runs
ITEM_COLUMNS: tuple[str, ...] = ("items_pending", "items_succeeded", "items_failed", "items_skipped",
                                 "items_awaiting_approval", "items_idempotent_replay")
FAILED_FIRST = "runs_with_failed_attempts"  # runs with an item that failed at least once (a failure account)
RUN_MEASURES: tuple[str, ...] = ("runs", "subjects_matched", "actions_invoked", *ITEM_COLUMNS, FAILED_FIRST)
_COLUMNS = ("definition_id", "triggered_at", "trigger_kind", "status", "completed_at", "subjects_matched",
            "actions_invoked", *ITEM_COLUMNS)
FLAG = "with_failed_attempts"  # beside a run's columns: whether it has a failure account (store/failure_accounts.py)

Key = tuple[Any, ...]


def utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def seconds_of(run: Mapping[str, Any]) -> float:
    return (utc(run["completed_at"]) - utc(run["triggered_at"])).total_seconds()


def bucket_of(seconds: float) -> int:
    return next(i for i, (_, bound) in enumerate(DURATION_BUCKETS) if seconds < bound)


ZERO_KEY = -1  # under a millisecond: a run closed in the step that triggered it (a simulated clock's runs)


def duration_key(seconds: float) -> int:
    ms = seconds * 1000.0
    return ZERO_KEY if ms < 1.0 else math.floor(math.log(ms, DURATION_RATIO))


def key_seconds(key: int) -> float:
    """The middle (geometric) of a duration key's range, in seconds: what a percentile from the rollup says."""
    return 0.0 if key == ZERO_KEY else float(DURATION_RATIO ** (key + 0.5) / 1000.0)


def _closed(run: Mapping[str, Any] | None) -> bool:
    return run is not None and run["status"] in TERMINAL_RUN_STATUSES and run["completed_at"] is not None


def contributions(run: Mapping[str, Any]) -> tuple[tuple[Key, dict[str, int]], tuple[Key, int]] | None:
    """What one closed run adds to each table (None for an open run)."""
    if not _closed(run):
        return None
    at = utc(run["triggered_at"])
    seconds = seconds_of(run)
    day_key = (run["definition_id"], at.date(), run["trigger_kind"], run["status"], bucket_of(seconds))
    measures = {"runs": 1, "subjects_matched": int(run["subjects_matched"] or 0),
                "actions_invoked": int(run["actions_invoked"] or 0), **{c: int(run[c] or 0) for c in ITEM_COLUMNS},
                FAILED_FIRST: int(bool(run[FLAG]))}
    return (day_key, measures), ((run["definition_id"], at.date().replace(day=1), duration_key(seconds)), 1)


def _deltas(pairs: Iterable[tuple[Mapping[str, Any] | None, int]]) -> tuple[dict[Key, dict[str, int]],
                                                                            dict[Key, int]]:
    days: dict[Key, dict[str, int]] = {}
    months: dict[Key, int] = {}
    for run, sign in pairs:
        c = contributions(run) if run is not None else None
        if c is None:
            continue
        (day_key, measures), (month_key, n) = c
        acc = days.setdefault(day_key, dict.fromkeys(RUN_MEASURES, 0))
        for name, value in measures.items():
            acc[name] += sign * value
        months[month_key] = months.get(month_key, 0) + sign * n
    return ({k: v for k, v in days.items() if any(v.values())}, {k: v for k, v in months.items() if v})


def _upsert(conn: sa.Connection, table: sa.Table, key_names: tuple[str, ...], row: Mapping[str, Any],
            measures: Mapping[str, int]) -> None:
    # ON CONFLICT … DO UPDATE: PostgreSQL's and DuckDB's alike (duckdb-engine compiles PostgreSQL's construct);
    # on PostgreSQL it waits for a concurrent insert of the same key rather than failing on it.
    from sqlalchemy.dialects.postgresql import insert

    stmt = insert(table).values(**row, **measures)
    conn.execute(stmt.on_conflict_do_update(index_elements=list(key_names), set_={
        name: table.c[name] + stmt.excluded[name] for name in measures}))


_DAY_KEY = ("definition_id", "day", "trigger_kind", "status", "bucket")
_MONTH_KEY = ("definition_id", "month", "duration_key")
_CAUSE_KEY = ("definition_id", "month", "cause_key", "failure_class")


def apply_deltas(tx: Tx, pairs: Iterable[tuple[Mapping[str, Any] | None, int]]) -> None:
    """Add (+1) or take away (-1) runs' contributions, at the end of the transaction (``Tx.add_to_sums``)."""
    days, months = _deltas(pairs)
    for key, measures in days.items():
        tx.add_to_sums(run_rollups.name, key, measures)
    for key, n in months.items():
        tx.add_to_sums(run_duration_rollups.name, key, {"runs": n})


def cause_key(cause: str) -> str:
    """A failure cause's key in ``failure_cause_rollups``: its digest, of a fixed size whatever the text's."""
    return hashlib.sha256(cause.encode()).hexdigest()[:32]


def _cause_row(key: Key) -> dict[str, Any]:
    """``failure_cause_rollups``' sums are keyed (automation, month, cause text, class); its rows by the digest."""
    definition_id, month, cause, failure_class = key
    return {"definition_id": definition_id, "month": month, "cause_key": cause_key(cause),
            "failure_class": failure_class, "failure_cause": cause}


def _row(names: tuple[str, ...]) -> Callable[[Key], dict[str, Any]]:
    return lambda key: dict(zip(names, key, strict=True))


# table name → (table, its key columns, a sums key → the row's key columns)
_TABLES: dict[str, tuple[sa.Table, tuple[str, ...], Callable[[Key], dict[str, Any]]]] = {
    run_rollups.name: (run_rollups, _DAY_KEY, _row(_DAY_KEY)),
    run_duration_rollups.name: (run_duration_rollups, _MONTH_KEY, _row(_MONTH_KEY)),
    event_rollups.name: (event_rollups, ("kind", "event_type", "source", "day"),
                         _row(("kind", "event_type", "source", "day"))),
    failure_cause_rollups.name: (failure_cause_rollups, _CAUSE_KEY, _cause_row),
}


def write_sums(conn: sa.Connection, sums: Mapping[tuple[str, Key], Mapping[str, int]]) -> None:
    """A transaction's rollup changes, keys in one sorted order (``Workspace.transaction``, at its end)."""
    for (table_name, key) in sorted(sums, key=repr):
        measures = sums[(table_name, key)]
        if any(measures.values()):
            table, key_names, to_row = _TABLES[table_name]
            _upsert(conn, table, key_names, to_row(key), measures)


def apply_run_change(tx: Tx, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> None:
    """A run's row changed (its settle): move its contribution from what it was to what it is. A closed
    ``before`` carries ``FLAG`` (``with_failure_flag``), as ``after`` does (``read_run_row``)."""
    if not (_closed(before) or _closed(after)):
        return  # open before and after: nothing of it is summed (nearly every settle of a working run)
    if before is not None and after is not None and all(before.get(c) == after.get(c) for c in (*_COLUMNS, FLAG)):
        return
    apply_deltas(tx, [(before, -1), (after, +1)])


def _run_rows(where: Any) -> Any:
    """Runs' summed columns and ``FLAG``: the rows ``contributions`` takes."""
    flag = sa.exists().where(run_failure_accounts.c.run_id == runs.c.run_id).label(FLAG)
    return sa.select(*[runs.c[c] for c in _COLUMNS], flag).where(where)


def with_failure_flag(conn: sa.Connection, run: Mapping[str, Any]) -> dict[str, Any]:
    """A run's row as read before its settle, with ``FLAG`` as it stands before the settle refreshes it."""
    return {**run, FLAG: has_failure_account(conn, run["run_id"])}


def read_run_row(conn: sa.Connection, run_id: str) -> dict[str, Any] | None:
    row = conn.execute(_run_rows(runs.c.run_id == run_id)).mappings().first()
    return dict(row) if row else None


def remove_runs(tx: Tx, where: Any) -> None:
    """Runs about to be deleted (retention's archive): their contributions leave the rollups with them."""
    rows = tx.conn.execute(_run_rows(where)).mappings()
    apply_deltas(tx, ((dict(r), -1) for r in rows))


def recompute_rollups(conn: sa.Connection) -> tuple[dict[Key, dict[str, int]], dict[Key, int]]:
    """Both tables as ``runs`` says they should be (the backfill, and the tests' reference)."""
    closed = conn.execute(_run_rows(sa.and_(runs.c.status.in_(sorted(TERMINAL_RUN_STATUSES)),
                                            runs.c.completed_at.is_not(None)))).mappings()
    return _deltas((dict(r), +1) for r in closed)


def read_rollup_tables(conn: sa.Connection) -> tuple[dict[Key, dict[str, int]], dict[Key, int]]:
    """Both tables as kept, rows summing to nothing left out (a reopened run's key may linger at zero)."""
    days = {tuple(r[k] for k in _DAY_KEY): {m: int(r[m]) for m in RUN_MEASURES}
            for r in conn.execute(sa.select(run_rollups)).mappings()}
    months = {tuple(r[k] for k in _MONTH_KEY): int(r["runs"])
              for r in conn.execute(sa.select(run_duration_rollups)).mappings()}
    return ({k: v for k, v in days.items() if any(v.values())}, {k: v for k, v in months.items() if v})


def backfill_rollups(conn: sa.Connection) -> None:
    """Rebuild both tables from ``runs`` (the migration that made them; a million runs: seconds)."""
    conn.execute(run_rollups.delete())
    conn.execute(run_duration_rollups.delete())
    days, months = recompute_rollups(conn)
    if days:
        conn.execute(run_rollups.insert(), [{**dict(zip(_DAY_KEY, k, strict=True)), **v} for k, v in days.items()])
    if months:
        conn.execute(run_duration_rollups.insert(), [{**dict(zip(_MONTH_KEY, k, strict=True)), "runs": v}
                                                     for k, v in months.items()])


def percentiles_from(histogram: Mapping[int, int]) -> dict[str, float]:
    """Median, 90th percentile and longest from a duration histogram (key → runs), each a key's middle:
    within 1% of the exact figure. Interpolated between ranks as ``quantile_cont`` is."""
    keys = sorted(k for k, n in histogram.items() if n > 0)
    total = sum(histogram[k] for k in keys)

    def at_rank(rank: int) -> float:
        seen = 0
        for k in keys:
            seen += histogram[k]
            if rank < seen:
                return key_seconds(k)
        return key_seconds(keys[-1])

    def quantile(p: float) -> float:
        h = p * (total - 1)
        low, high = at_rank(math.floor(h)), at_rank(math.ceil(h))
        return low + (h - math.floor(h)) * (high - low)

    return {"p50_seconds": quantile(0.5), "p90_seconds": quantile(0.9), "max_seconds": key_seconds(keys[-1])}


_EVENT_KEY = ("kind", "event_type", "source", "day")


def add_events(tx: Tx, kind: str, event_type: str, source: str, occurred_at: dt.datetime, n: int) -> None:
    """``n`` events just inserted (their insert's transaction): the day's count of their kind, type and source."""
    if n:
        tx.add_to_sums(event_rollups.name, (kind, event_type, source, utc(occurred_at).date()), {"events": n})


def _event_sums(conn: sa.Connection) -> Any:
    day = sa.cast(trigger_events.c.occurred_at, sa.Date)
    return sa.select(trigger_events.c.kind, trigger_events.c.event_type, trigger_events.c.source, day.label("day"),
                     sa.func.count().label("events")).group_by(trigger_events.c.kind, trigger_events.c.event_type,
                                                               trigger_events.c.source, day)


def recompute_event_rollups(conn: sa.Connection) -> dict[Key, int]:
    return {tuple(r[:4]): int(r[4]) for r in conn.execute(_event_sums(conn))}


def read_event_rollups(conn: sa.Connection) -> dict[Key, int]:
    return {tuple(r[:4]): int(r[4]) for r in conn.execute(sa.select(event_rollups)) if r[4]}


def backfill_event_rollups(conn: sa.Connection) -> None:
    conn.execute(event_rollups.delete())
    conn.execute(event_rollups.insert().from_select([*_EVENT_KEY, "events"], _event_sums(conn)))
