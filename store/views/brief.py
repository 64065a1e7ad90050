"""What the audit committee brief reads beyond the analytics aggregates: the shape of each automation's
runs (subjects matched per run, statuses), why items were skipped, who retried, and the list of runs.

Every function groups in the database, scoped like ``store.analytics`` to the runs triggered in a period
(and the definitions filter); only the appendix lists rows, one per run.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from core.states import SKIPPED
from store.schema import audit_log, item_attempts, run_items, runs, trigger_events
from store.views.analytics import AnalyticsFilter, run_period_conds

RETRY_EVENTS = ("item.retried", "item.retry_started")  # by a member; by the retry policy


def _rows(conn: sa.Connection, q: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(q).mappings()]


def summarize_run_shapes(conn: sa.Connection, f: AnalyticsFilter) -> list[dict[str, Any]]:
    """Per definition: the fewest and most subjects a run matched (the spec's "between 30 and 80"), and
    the versions that ran."""
    q = (sa.select(runs.c.definition_id, sa.func.count().label("runs"),
                   sa.func.min(runs.c.subjects_matched).label("min_subjects"),
                   sa.func.max(runs.c.subjects_matched).label("max_subjects"),
                   sa.func.min(runs.c.definition_version).label("min_version"),
                   sa.func.max(runs.c.definition_version).label("max_version"))
         .where(*run_period_conds(f)).group_by(runs.c.definition_id))
    return _rows(conn, q)


def count_runs_by_status(conn: sa.Connection, f: AnalyticsFilter) -> list[dict[str, Any]]:
    q = (sa.select(runs.c.definition_id, runs.c.status, sa.func.count().label("runs"))
         .where(*run_period_conds(f)).group_by(runs.c.definition_id, runs.c.status))
    return _rows(conn, q)


def count_items_by_subject_kind(conn: sa.Connection, f: AnalyticsFilter) -> list[dict[str, Any]]:
    """Which registers each definition's items were about (to name the subjects: accounts, incidents)."""
    q = (sa.select(runs.c.definition_id, run_items.c.subject_kind, sa.func.count().label("items"))
         .select_from(run_items.join(runs, runs.c.run_id == run_items.c.run_id)).where(*run_period_conds(f))
         .group_by(runs.c.definition_id, run_items.c.subject_kind))
    return _rows(conn, q)


def count_skips_by_reason(conn: sa.Connection, f: AnalyticsFilter) -> list[dict[str, Any]]:
    """Skipped items per (definition, reason), most frequent first: the brief quotes the reasons."""
    q = (sa.select(runs.c.definition_id, run_items.c.skip_reason, sa.func.count().label("items"))
         .select_from(run_items.join(runs, runs.c.run_id == run_items.c.run_id))
         .where(run_items.c.outcome == SKIPPED, *run_period_conds(f))
         .group_by(runs.c.definition_id, run_items.c.skip_reason)
         .order_by(runs.c.definition_id, sa.desc("items"), run_items.c.skip_reason))
    return _rows(conn, q)


def count_retries_by_actor(conn: sa.Connection, f: AnalyticsFilter) -> list[dict[str, Any]]:
    """Retries of the period's items per (definition, actor), from the audit log: a member's retry is
    ``item.retried``, the retry policy's is ``item.retry_started``; each names the item it retried."""
    q = (sa.select(runs.c.definition_id, audit_log.c.actor, sa.func.count().label("retries"),
                   sa.func.count(sa.distinct(audit_log.c.entity_id)).label("items"))
         .select_from(audit_log.join(run_items, run_items.c.item_id == audit_log.c.entity_id)
                      .join(runs, runs.c.run_id == run_items.c.run_id))
         .where(audit_log.c.entity_kind == "run_item", audit_log.c.event.in_(RETRY_EVENTS), *run_period_conds(f))
         .group_by(runs.c.definition_id, audit_log.c.actor)
         .order_by(runs.c.definition_id, sa.desc("retries"), audit_log.c.actor))
    return _rows(conn, q)


def read_period_runs(conn: sa.Connection, f: AnalyticsFilter, limit: int = 100_000) -> list[dict[str, Any]]:
    """Every run of the period in trigger order, with its item count and the type of the event that
    triggered it (the brief's appendix)."""
    item_counts = (sa.select(run_items.c.run_id, sa.func.count().label("n"))
                   .select_from(run_items.join(runs, runs.c.run_id == run_items.c.run_id))
                   .where(*run_period_conds(f)).group_by(run_items.c.run_id).subquery())
    q = (sa.select(runs.c.run_id, runs.c.definition_id, runs.c.definition_version, runs.c.trigger_kind,
                   runs.c.trigger_source, trigger_events.c.event_type, runs.c.triggered_at, runs.c.status,
                   runs.c.subjects_matched, runs.c.actions_invoked,
                   sa.func.coalesce(item_counts.c.n, 0).label("items"))
         .select_from(runs.outerjoin(item_counts, item_counts.c.run_id == runs.c.run_id)
                      .outerjoin(trigger_events, trigger_events.c.event_id == runs.c.trigger_event_id))
         .where(*run_period_conds(f)).order_by(runs.c.triggered_at, runs.c.run_number).limit(limit))
    return _rows(conn, q)


def read_remote_attempts(conn: sa.Connection, f: AnalyticsFilter, prefixes: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every attempt of the period's items whose action reached a remote system (``webhook:…``,
    ``email:…``): its action, outcome, failure class and what the system answered (``evidence``). The brief
    counts them by integration and answer; a period's remote actions are thousands, not millions."""
    remote = sa.or_(*(run_items.c.action.startswith(p) for p in prefixes))
    q = (sa.select(run_items.c.action, item_attempts.c.outcome, item_attempts.c.failure_class,
                   item_attempts.c.evidence)
         .select_from(item_attempts.join(run_items, run_items.c.item_id == item_attempts.c.item_id)
                      .join(runs, runs.c.run_id == run_items.c.run_id))
         .where(remote, *run_period_conds(f)).order_by(run_items.c.action))
    return _rows(conn, q)
