"""What the quarterly analytics page and the audit committee brief read: aggregates, never raw items.

Every function here groups inside the database and returns at most a few thousand small rows (per
definition × week × outcome, per cause, per duration bucket), so a quarter over twenty million items costs
one scan, not a 3 GiB pull into Polars. The period is on the run's trigger time, as the summary and the
Runs page count it; a filter is a small dataclass.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from store import rollups
from store.portable import quantile_cont, seconds_between
from store.rollups import utc
from store.run_counts import COLUMN_OUTCOME, COUNT_COLUMNS
from store.schema import (
    approvals,
    audit_log,
    definition_versions,
    event_rollups,
    run_duration_rollups,
    run_failure_causes,
    run_items,
    run_rollups,
    runs,
    trigger_events,
)
from store.views.period_split import split_period


@dataclass(frozen=True)
class AnalyticsFilter:
    start: dt.datetime | None = None  # inclusive, on the run's trigger time
    end: dt.datetime | None = None  # exclusive
    definitions: tuple[str, ...] = ()  # empty: every definition


def run_period_conds(f: AnalyticsFilter) -> list[Any]:
    """The runs a filter covers: triggered in its period, of its definitions (shared by the brief's and the
    integrity statement's queries, so every figure counts the same runs)."""
    conds: list[Any] = []
    if f.start:
        conds.append(runs.c.triggered_at >= f.start)
    if f.end:
        conds.append(runs.c.triggered_at < f.end)
    if f.definitions:
        conds.append(runs.c.definition_id.in_(f.definitions))
    return conds


def _week(col: Any) -> Any:
    """Monday 00:00 UTC of the week holding ``col`` (ISO weeks, as DuckDB and PostgreSQL both truncate)."""
    return sa.func.date_trunc("week", col)


def _rows(conn: sa.Connection, q: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(q).mappings()]


def count_runs_and_items_by_week(conn: sa.Connection, f: AnalyticsFilter) -> tuple[list[dict[str, Any]],
                                                                                    list[dict[str, Any]]]:
    """Both of the below from one pass (what the analytics read): runs per (definition, week, trigger kind,
    status), and items per (definition, week, outcome) summed from the same rows."""
    names = ("runs", "subjects_matched", "actions_invoked", *COUNT_COLUMNS)
    out: dict[tuple[Any, ...], dict[str, int]] = {}
    for r in _summed(conn, f, ("trigger_kind", "status"), names):
        _add(out, (r["definition_id"], r["week"], r["trigger_kind"], r["status"]), r, names)
    run_rows = [{"definition_id": k[0], "week": k[1], "trigger_kind": k[2], "status": k[3],
                 "runs": v["runs"], "subjects_matched": v["subjects_matched"], "actions_invoked": v["actions_invoked"]}
                for k, v in out.items() if v["runs"]]
    sums: dict[tuple[Any, ...], dict[str, int]] = {}
    for k, v in out.items():
        _add(sums, k[:2], v, COUNT_COLUMNS)
    item_rows = [{"definition_id": definition_id, "week": week, "outcome": outcome, "items": int(r[column])}
                 for (definition_id, week), r in sums.items() for column, outcome in COLUMN_OUTCOME.items()
                 if r[column]]
    return run_rows, item_rows


def count_runs_by_definition_week(conn: sa.Connection, f: AnalyticsFilter) -> list[dict[str, Any]]:
    """Runs per (definition, week, trigger kind, status) with their matched subjects and actions invoked."""
    return count_runs_and_items_by_week(conn, f)[0]


def count_items_by_definition_week_outcome(conn: sa.Connection, f: AnalyticsFilter) -> list[dict[str, Any]]:
    """Items per (definition, week, outcome), summed from each run's own item counts (store.run_counts):
    a million runs read instead of twenty million items joined. Pending and in-flight count as pending."""
    return count_runs_and_items_by_week(conn, f)[1]


def _add(acc: dict[tuple[Any, ...], dict[str, int]], key: tuple[Any, ...], row: Any, names: Sequence[str]) -> None:
    into = acc.setdefault(key, dict.fromkeys(names, 0))
    for name in names:
        into[name] += int(row[name] or 0)


def _summed(conn: sa.Connection, f: AnalyticsFilter, by: tuple[str, ...], names: Sequence[str]
            ) -> Iterator[dict[str, Any]]:
    """Rows of (definition_id, week, *by, *names): the closed runs of the period's whole UTC days from
    ``run_rollups``, the rest (open runs, and closed ones of a partial first or last day) from ``runs``."""
    split = split_period(f, "day")
    r = run_rollups.c
    mine = [r.definition_id.in_(f.definitions)] if f.definitions else []
    if split.whole:
        week = _week(r.day).label("week")  # summed per week in the database: a few rows per automation and week
        q = (sa.select(r.definition_id, week, *[r[b] for b in by], *[sa.func.sum(r[n]).label(n) for n in names])
             .where(*split.whole_conds(r.day), r.runs != 0, *mine)
             .group_by(r.definition_id, week, *[r[b] for b in by]))
        for row in conn.execute(q).mappings():
            yield {**row, "week": _as_week(row["week"])}
    week = _week(runs.c.triggered_at).label("week")
    for rest in split.rest_conds(conn):
        q = (sa.select(runs.c.definition_id, week, *[runs.c[b] for b in by],
                       *[sa.func.coalesce(sa.func.sum(runs.c[n]), 0).label(n) if n != "runs" else
                         sa.func.count().label("runs") for n in names])
             .where(*run_period_conds(f), rest).group_by(runs.c.definition_id, week, *[runs.c[b] for b in by]))
        for row in conn.execute(q).mappings():
            yield {**row, "week": _as_week(row["week"])}


def _as_week(value: dt.date | dt.datetime) -> dt.datetime:
    """A week's Monday as the runs' weeks are: midnight UTC, aware (a date's truncation is a date on one
    backend and a timestamp on the other)."""
    if not isinstance(value, dt.datetime):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    return utc(value)


def _causes(f: AnalyticsFilter, *measures: Any) -> Any:
    """Per-run failure summaries (store.run_counts) of the period's runs, grouped by definition and cause."""
    c = run_failure_causes.c
    conds = [*([c.triggered_at >= f.start] if f.start else []), *([c.triggered_at < f.end] if f.end else []),
             *([c.definition_id.in_(f.definitions)] if f.definitions else [])]
    return (sa.select(c.definition_id, c.failure_cause, c.failure_class, *measures).where(*conds)
            .group_by(c.definition_id, c.failure_cause, c.failure_class))


def count_failures_by_cause(conn: sa.Connection, f: AnalyticsFilter) -> tuple[list[dict[str, Any]],
                                                                                list[dict[str, Any]]]:
    """Both of the below from one pass over the period's failure summaries (what the analytics read)."""
    c = run_failure_causes.c
    q = _causes(f, sa.func.sum(c.failed_attempts).label("attempts"),
                sa.func.sum(c.items_with_failed_attempts).label("items"),
                sa.func.count().filter(c.failed_attempts > 0).label("runs"),
                sa.func.sum(c.failed_items).label("still_failed"))
    rows = _rows(conn, q)
    key = ("definition_id", "failure_cause", "failure_class")
    return ([{**{k: r[k] for k in key}, "attempts": r["attempts"], "items": r["items"], "runs": r["runs"]}
             for r in rows if r["attempts"] and r["attempts"] > 0],
            [{**{k: r[k] for k in key}, "still_failed": r["still_failed"]}
             for r in rows if r["still_failed"] and r["still_failed"] > 0])


def count_failed_attempts_by_cause(conn: sa.Connection, f: AnalyticsFilter) -> list[dict[str, Any]]:
    """Every failed attempt in the period by (definition, cause, class): failures that a retry later
    recovered count too, which is what an auditor asks about ("what went wrong, and how often")."""
    return count_failures_by_cause(conn, f)[0]


def count_failed_items_now_by_cause(conn: sa.Connection, f: AnalyticsFilter) -> list[dict[str, Any]]:
    """Items still failed, by (definition, cause, class): the part of the failures not yet recovered."""
    return count_failures_by_cause(conn, f)[1]


# Re-exported: the buckets' labels are the analytics page's and the brief's (reporting.analytics).
DURATION_BUCKETS = rollups.DURATION_BUCKETS


def _duration_bucket(secs: Any) -> Any:
    return sa.case(*[(secs < bound, i) for i, (_, bound) in enumerate(DURATION_BUCKETS[:-1])],
                   else_=len(DURATION_BUCKETS) - 1)


def count_runs_by_completion_bucket(conn: sa.Connection, f: AnalyticsFilter) -> list[dict[str, Any]]:
    """Closed runs per (definition, duration bucket) from trigger to completion."""
    split = split_period(f, "day")
    r = run_rollups.c
    mine = [r.definition_id.in_(f.definitions)] if f.definitions else []
    bucket = _duration_bucket(seconds_between(runs.c.triggered_at, runs.c.completed_at)).label("bucket")
    counts = _counted(conn, [
        *([sa.select(r.definition_id, r.bucket, sa.func.sum(r.runs)).where(*split.whole_conds(r.day), r.runs != 0,
                                                                          *mine).group_by(r.definition_id, r.bucket)]
          if split.whole else []),
        *(sa.select(runs.c.definition_id, bucket, sa.func.count())
          .where(runs.c.completed_at.is_not(None), *run_period_conds(f), rest).group_by(runs.c.definition_id, bucket)
          for rest in split.rest_conds(conn))])
    return [{"definition_id": d, "bucket": DURATION_BUCKETS[b][0], "runs": n} for (d, b), n in counts.items() if n]


def _counted(conn: sa.Connection, queries: Sequence[Any]) -> Counter[tuple[str, int]]:
    """(definition, integer key) → count, summed over queries whose rows are (definition, key, count): a
    rollup's whole days or months and the runs of the rest (``split_period``)."""
    counts: Counter[tuple[str, int]] = Counter()
    for q in queries:
        for definition_id, key, n in conn.execute(q):
            counts[(definition_id, int(key))] += int(n or 0)
    return counts


# Up to this many closed runs in the period, percentiles are computed from every run's own duration (exact,
# tens of milliseconds); above it, from the duration rollup (within 1%, and says so: ``approximate``).
EXACT_PERCENTILES_UP_TO = 20_000


def summarize_completion_times(conn: sa.Connection, f: AnalyticsFilter) -> list[dict[str, Any]]:
    """Per definition: closed runs and the median, 90th percentile and longest trigger-to-completion."""
    split = split_period(f, "month")
    secs = seconds_between(runs.c.triggered_at, runs.c.completed_at)
    key = sa.case((secs * 1000.0 < 1.0, rollups.ZERO_KEY), else_=sa.cast(sa.func.floor(
        sa.func.ln(sa.func.greatest(secs * 1000.0, 1.0)) / math.log(rollups.DURATION_RATIO)), sa.Integer)
    ).label("duration_key")
    closed = [runs.c.completed_at.is_not(None), *run_period_conds(f)]
    d = run_duration_rollups.c
    mine = [d.definition_id.in_(f.definitions)] if f.definitions else []
    counts = _counted(conn, [
        *([sa.select(d.definition_id, d.duration_key, sa.func.sum(d.runs))
           .where(*split.whole_conds(d.month), d.runs != 0, *mine).group_by(d.definition_id, d.duration_key)]
          if split.whole else []),
        *(sa.select(runs.c.definition_id, key, sa.func.count()).where(*closed, rest)
          .group_by(runs.c.definition_id, key) for rest in split.rest_conds(conn))])
    histogram: dict[str, dict[int, int]] = {}
    for (definition_id, k), n in counts.items():
        if n:
            histogram.setdefault(definition_id, {})[k] = n
    if sum(n for per in histogram.values() for n in per.values()) > EXACT_PERCENTILES_UP_TO:
        return [{"definition_id": definition_id, "closed_runs": sum(per.values()), "approximate": True,
                 **rollups.percentiles_from(per)} for definition_id, per in sorted(histogram.items())]
    q = (sa.select(runs.c.definition_id, sa.func.count().label("closed_runs"),
                   quantile_cont(secs, 0.5).label("p50_seconds"),
                   quantile_cont(secs, 0.9).label("p90_seconds"),
                   sa.func.max(secs).label("max_seconds"))
         .where(*closed).group_by(runs.c.definition_id))
    return [{**row, "approximate": False} for row in _rows(conn, q)]


def summarize_approvals(conn: sa.Connection, f: AnalyticsFilter, now: dt.datetime) -> list[dict[str, Any]]:
    """Per (definition, decision; NULL while open): approvals, and how long they waited (open ones: so far)."""
    waited = seconds_between(approvals.c.opened_at, sa.func.coalesce(approvals.c.decided_at, sa.literal(now)))
    q = (sa.select(approvals.c.definition_id, approvals.c.decision, sa.func.count().label("approvals"),
                   quantile_cont(waited, 0.5).label("median_wait_seconds"),
                   sa.func.max(waited).label("max_wait_seconds"))
         .select_from(approvals.join(runs, runs.c.run_id == approvals.c.run_id))
         .where(*run_period_conds(f))
         .group_by(approvals.c.definition_id, approvals.c.decision))
    return _rows(conn, q)


def read_approval_decisions(conn: sa.Connection, f: AnalyticsFilter, limit: int = 500) -> list[dict[str, Any]]:
    """Approvals of the period's runs with their item's subject, oldest first (the brief lists them); those
    opened together (one run's) in their item's order, on either backend."""
    q = (sa.select(approvals.c.approval_id, approvals.c.item_id, approvals.c.run_id, approvals.c.definition_id,
                   approvals.c.opened_at, approvals.c.decision, approvals.c.decided_by, approvals.c.decided_at,
                   approvals.c.reason, run_items.c.subject_id, run_items.c.subject_label)
         .select_from(approvals.join(runs, runs.c.run_id == approvals.c.run_id)
                      .join(run_items, run_items.c.item_id == approvals.c.item_id))
         .where(*run_period_conds(f)).order_by(approvals.c.opened_at, approvals.c.item_id).limit(limit))
    return _rows(conn, q)


def count_trigger_events(conn: sa.Connection, f: AnalyticsFilter) -> list[dict[str, Any]]:
    """Events and signals received in the period by (kind, type, source), and how many are undispatched: the
    whole UTC days from ``event_rollups`` (store/rollups.py), a partial first or last day from the events, and
    the undispatched (a handful, through their index) from the events themselves."""
    kinds = ("event", "signal")
    e, r = trigger_events.c, event_rollups.c
    counts: dict[tuple[str, str, str], list[int]] = {}
    split = split_period(f, "day")

    def add(rows: Any, at: int) -> None:
        for kind, event_type, source, n in rows:
            counts.setdefault((kind, event_type, source), [0, 0])[at] += int(n)

    by = (e.kind, e.event_type, e.source)
    period = [*([e.occurred_at >= f.start] if f.start else []), *([e.occurred_at < f.end] if f.end else [])]
    if split.whole:
        add(conn.execute(sa.select(r.kind, r.event_type, r.source, sa.func.sum(r.events))
                         .where(r.kind.in_(kinds), *split.whole_conds(r.day))
                         .group_by(r.kind, r.event_type, r.source)), 0)
    for edge in split.edge_conds(e.occurred_at):
        add(conn.execute(sa.select(*by, sa.func.count()).where(e.kind.in_(kinds), *period, edge).group_by(*by)), 0)
    add(conn.execute(sa.select(*by, sa.func.count()).where(e.dispatched_at.is_(None), e.kind.in_(kinds), *period)
                     .group_by(*by)), 1)
    return [{"kind": k[0], "event_type": k[1], "source": k[2], "events": n, "undispatched": u}
            for k, (n, u) in counts.items() if n]



def read_version_history(conn: sa.Connection, definition_ids: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every version with the moment it took effect (its text holds the trigger of that time)."""
    q = sa.select(definition_versions.c.definition_id, definition_versions.c.version,
                  definition_versions.c.content, definition_versions.c.created_at)
    if definition_ids:
        q = q.where(definition_versions.c.definition_id.in_(definition_ids))
    return _rows(conn, q.order_by(definition_versions.c.definition_id, definition_versions.c.version))


def read_enablement_changes(conn: sa.Connection, definition_ids: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """When admins disabled or re-enabled each definition, and who (from the audit log)."""
    q = (sa.select(audit_log.c.entity_id.label("definition_id"), audit_log.c.event, audit_log.c.actor,
                   audit_log.c.occurred_at)
         .where(audit_log.c.entity_kind == "definition",
                audit_log.c.event.in_(("definition.enabled", "definition.disabled"))))
    if definition_ids:
        q = q.where(audit_log.c.entity_id.in_(definition_ids))
    return _rows(conn, q.order_by(audit_log.c.seq))


def read_run_time_range(conn: sa.Connection) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The first and last trigger time of any run (the quarters worth offering)."""
    row = conn.execute(sa.select(sa.func.min(runs.c.triggered_at), sa.func.max(runs.c.triggered_at))).one()
    return row[0], row[1]
