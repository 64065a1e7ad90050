"""What the quarterly analytics page and the audit committee brief read: aggregates, never raw items.

Every function here groups inside the database and returns at most a few thousand small rows (per
definition × week × outcome, per cause, per duration bucket), so a quarter over twenty million items costs
one scan, not a 3 GiB pull into Polars. The period is on the run's trigger time, as the summary and the
Runs page count it; a filter is a small dataclass.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from store.run_counts import COLUMN_OUTCOME, COUNT_COLUMNS
from store.schema import approvals, audit_log, definition_versions, run_failure_causes, run_items, runs, trigger_events


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


def count_runs_by_definition_week(conn: sa.Connection, f: AnalyticsFilter) -> list[dict[str, Any]]:
    """Runs per (definition, week, trigger kind, status) with their matched subjects and actions invoked."""
    week = _week(runs.c.triggered_at).label("week")
    q = (sa.select(runs.c.definition_id, week, runs.c.trigger_kind, runs.c.status,
                   sa.func.count().label("runs"),
                   sa.func.coalesce(sa.func.sum(runs.c.subjects_matched), 0).label("subjects_matched"),
                   sa.func.coalesce(sa.func.sum(runs.c.actions_invoked), 0).label("actions_invoked"))
         .where(*run_period_conds(f))
         .group_by(runs.c.definition_id, week, runs.c.trigger_kind, runs.c.status))
    return _rows(conn, q)


def count_items_by_definition_week_outcome(conn: sa.Connection, f: AnalyticsFilter) -> list[dict[str, Any]]:
    """Items per (definition, week, outcome), summed from each run's own item counts (store.run_counts):
    a million runs read instead of twenty million items joined. Pending and in-flight count as pending."""
    week = _week(runs.c.triggered_at).label("week")
    q = (sa.select(runs.c.definition_id, week,
                   *[sa.func.coalesce(sa.func.sum(runs.c[c]), 0).label(c) for c in COUNT_COLUMNS])
         .where(*run_period_conds(f)).group_by(runs.c.definition_id, week))
    out = []
    for r in conn.execute(q).mappings():
        for column, outcome in COLUMN_OUTCOME.items():
            if r[column]:
                out.append({"definition_id": r["definition_id"], "week": r["week"], "outcome": outcome,
                            "items": int(r[column])})
    return out


def _causes(f: AnalyticsFilter, *measures: Any) -> Any:
    """Per-run failure summaries (store.run_counts) of the period's runs, grouped by definition and cause."""
    c = run_failure_causes.c
    conds = [*([c.triggered_at >= f.start] if f.start else []), *([c.triggered_at < f.end] if f.end else []),
             *([c.definition_id.in_(f.definitions)] if f.definitions else [])]
    return (sa.select(c.definition_id, c.failure_cause, c.failure_class, *measures).where(*conds)
            .group_by(c.definition_id, c.failure_cause, c.failure_class))


def count_failed_attempts_by_cause(conn: sa.Connection, f: AnalyticsFilter) -> list[dict[str, Any]]:
    """Every failed attempt in the period by (definition, cause, class): failures that a retry later
    recovered count too, which is what an auditor asks about ("what went wrong, and how often")."""
    c = run_failure_causes.c
    q = _causes(f, sa.func.sum(c.failed_attempts).label("attempts"),
                sa.func.sum(c.items_with_failed_attempts).label("items"),
                sa.func.count().filter(c.failed_attempts > 0).label("runs")).having(sa.func.sum(c.failed_attempts) > 0)
    return _rows(conn, q)


def count_failed_items_now_by_cause(conn: sa.Connection, f: AnalyticsFilter) -> list[dict[str, Any]]:
    """Items still failed, by (definition, cause, class): the part of the failures not yet recovered."""
    c = run_failure_causes.c
    q = _causes(f, sa.func.sum(c.failed_items).label("still_failed")).having(sa.func.sum(c.failed_items) > 0)
    return _rows(conn, q)


# Trigger-to-completion buckets: (label, upper bound in seconds, exclusive). Log-spaced, because a run
# takes seconds when nothing waits and days when an approval or a retry after an outage does.
DURATION_BUCKETS: tuple[tuple[str, float], ...] = (
    ("< 10 s", 10), ("10 s – 1 min", 60), ("1 – 10 min", 600), ("10 min – 1 h", 3600),
    ("1 – 6 h", 6 * 3600), ("6 – 24 h", 86400), ("1 – 7 days", 7 * 86400), ("> 7 days", float("inf")),
)


def seconds_between(a: Any, b: Any) -> Any:
    """Seconds from timestamp ``a`` to ``b``, a double with its fractions, in SQL both backends run (DuckDB's
    ``epoch_ms`` is unknown to PostgreSQL; an interval's ``EXTRACT(epoch …)`` is numeric there: cast)."""
    return sa.cast(sa.extract("epoch", b - a), sa.Double)


def _percentile(expr: Any, fraction: float) -> Any:
    """The continuous percentile of ``expr`` as both backends spell it (DuckDB's ``quantile_cont`` is its own)."""
    return sa.func.percentile_cont(fraction).within_group(expr)


def count_runs_by_completion_bucket(conn: sa.Connection, f: AnalyticsFilter) -> list[dict[str, Any]]:
    """Closed runs per (definition, duration bucket) from trigger to completion."""
    secs = seconds_between(runs.c.triggered_at, runs.c.completed_at)
    bucket = sa.case(*[(secs < bound, label) for label, bound in DURATION_BUCKETS[:-1]],
                     else_=DURATION_BUCKETS[-1][0]).label("bucket")
    q = (sa.select(runs.c.definition_id, bucket, sa.func.count().label("runs"))
         .where(runs.c.completed_at.is_not(None), *run_period_conds(f))
         .group_by(runs.c.definition_id, bucket))
    return _rows(conn, q)


def summarize_completion_times(conn: sa.Connection, f: AnalyticsFilter) -> list[dict[str, Any]]:
    """Per definition: closed runs and the median, 90th percentile and longest trigger-to-completion."""
    secs = seconds_between(runs.c.triggered_at, runs.c.completed_at)
    q = (sa.select(runs.c.definition_id, sa.func.count().label("closed_runs"),
                   _percentile(secs, 0.5).label("p50_seconds"),
                   _percentile(secs, 0.9).label("p90_seconds"),
                   sa.func.max(secs).label("max_seconds"))
         .where(runs.c.completed_at.is_not(None), *run_period_conds(f))
         .group_by(runs.c.definition_id))
    return _rows(conn, q)


def summarize_approvals(conn: sa.Connection, f: AnalyticsFilter, now: dt.datetime) -> list[dict[str, Any]]:
    """Per (definition, decision; NULL while open): approvals, and how long they waited (open ones: so far)."""
    waited = seconds_between(approvals.c.opened_at, sa.func.coalesce(approvals.c.decided_at, sa.literal(now)))
    q = (sa.select(approvals.c.definition_id, approvals.c.decision, sa.func.count().label("approvals"),
                   _percentile(waited, 0.5).label("median_wait_seconds"),
                   sa.func.max(waited).label("max_wait_seconds"))
         .select_from(approvals.join(runs, runs.c.run_id == approvals.c.run_id))
         .where(*run_period_conds(f))
         .group_by(approvals.c.definition_id, approvals.c.decision))
    return _rows(conn, q)


def read_approval_decisions(conn: sa.Connection, f: AnalyticsFilter, limit: int = 500) -> list[dict[str, Any]]:
    """Approvals of the period's runs with their item's subject, oldest first (the brief lists them); a run's
    approvals open at one instant, so its items' order breaks the tie (or each backend picks its own)."""
    q = (sa.select(approvals.c.approval_id, approvals.c.item_id, approvals.c.run_id, approvals.c.definition_id,
                   approvals.c.opened_at, approvals.c.decision, approvals.c.decided_by, approvals.c.decided_at,
                   approvals.c.reason, run_items.c.subject_id, run_items.c.subject_label)
         .select_from(approvals.join(runs, runs.c.run_id == approvals.c.run_id)
                      .join(run_items, run_items.c.item_id == approvals.c.item_id))
         .where(*run_period_conds(f)).order_by(approvals.c.opened_at, approvals.c.item_id).limit(limit))
    return _rows(conn, q)


def count_trigger_events(conn: sa.Connection, f: AnalyticsFilter) -> list[dict[str, Any]]:
    """Events and signals received in the period by (kind, type, source), and how many are undispatched."""
    conds: list[Any] = [trigger_events.c.kind.in_(("event", "signal"))]
    if f.start:
        conds.append(trigger_events.c.occurred_at >= f.start)
    if f.end:
        conds.append(trigger_events.c.occurred_at < f.end)
    q = (sa.select(trigger_events.c.kind, trigger_events.c.event_type, trigger_events.c.source,
                   sa.func.count().label("events"),
                   sa.func.count(trigger_events.c.event_id).filter(
                       trigger_events.c.dispatched_at.is_(None)).label("undispatched"))
         .where(*conds).group_by(trigger_events.c.kind, trigger_events.c.event_type, trigger_events.c.source))
    return _rows(conn, q)


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
