"""What the Failed items, Approvals, Audit log and Records pages read.

Failed items are found through the item outcome (a small fraction of twenty million items) and joined to
their runs only for the period and definition; the audit log pages by ``seq`` (keyset, never OFFSET).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from core.states import AWAITING_APPROVAL, ITEM_FAILED
from store.records import RECORD_TABLES
from store.run_counts import cause_kind
from store.schema import (
    approvals,
    audit_log,
    failure_cause_rollups,
    item_dispositions,
    run_failure_causes,
    run_items,
    runs,
)
from store.views.period_split import split_period


# --- failed items ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FailedFilter:
    definition: str | None = None
    start: dt.datetime | None = None  # on the run's trigger time, inclusive
    end: dt.datetime | None = None  # exclusive


def _run_conds(f: FailedFilter) -> list[Any]:
    conds: list[Any] = []
    if f.definition:
        conds.append(runs.c.definition_id == f.definition)
    if f.start:
        conds.append(runs.c.triggered_at >= f.start)
    if f.end:
        conds.append(runs.c.triggered_at < f.end)
    return conds


def _failed(f: FailedFilter) -> tuple[Any, list[Any]]:
    j = (run_items.join(runs, runs.c.run_id == run_items.c.run_id)
         .outerjoin(item_dispositions, item_dispositions.c.item_id == run_items.c.item_id))
    return j, [run_items.c.outcome == ITEM_FAILED, *_run_conds(f)]


def count_failed_items_by_cause(conn: sa.Connection, f: FailedFilter) -> list[dict[str, Any]]:
    """Failed items by (definition, cause, class): the period's whole UTC months from
    ``failure_cause_rollups`` (a few hundred rows for all time), its partial first and last month from the
    runs' failure summaries (store/cause_rollups.py)."""
    split, c, r = split_period(f, "month"), run_failure_causes.c, failure_cause_rollups.c
    groups: dict[tuple[str, str, str], dict[str, int]] = {}

    def add(rows: Any) -> None:
        for definition_id, cause, class_, items, n in rows:
            acc = groups.setdefault((definition_id, cause, class_), {"items": 0, "runs": 0})
            acc["items"] += int(items)
            acc["runs"] += int(n)

    if split.whole:
        add(conn.execute(
            sa.select(r.definition_id, r.failure_cause, r.failure_class, sa.func.sum(r.failed_items),
                      sa.func.sum(r.runs))
            .where(*split.whole_conds(r.month), *([r.definition_id == f.definition] if f.definition else []))
            .group_by(r.definition_id, r.failure_cause, r.failure_class)))
    mine = [c.failed_items > 0, *([c.definition_id == f.definition] if f.definition else []),
            *([c.triggered_at >= f.start] if f.start else []), *([c.triggered_at < f.end] if f.end else [])]
    for edge in split.edge_conds(c.triggered_at):
        add(conn.execute(sa.select(c.definition_id, c.failure_cause, c.failure_class, sa.func.sum(c.failed_items),
                                   sa.func.count())
                         .where(*mine, edge).group_by(c.definition_id, c.failure_cause, c.failure_class)))
    out = [{"definition_id": d, "failure_cause": cause, "failure_class": cls, **acc}
           for (d, cause, cls), acc in groups.items() if acc["items"]]
    return sorted(out, key=lambda g: (-g["items"], g["definition_id"], g["failure_cause"]))


def count_dispositioned_by_cause(conn: sa.Connection, f: FailedFilter) -> dict[tuple[str, str, str], int]:
    """(definition, cause, class) → failed items dispositioned, keyed as ``count_failed_items_by_cause``'s
    groups are: a group's open failures are its items less these. Reads the dispositions (a few per
    period), joined to their items for the class and to their runs for the period."""
    q = (sa.select(runs.c.definition_id, cause_kind(run_items.c.failure_cause).label("cause"),
                   sa.func.coalesce(run_items.c.failure_class, "unknown").label("class_"),
                   sa.func.count().label("n"))
         .select_from(item_dispositions.join(run_items, run_items.c.item_id == item_dispositions.c.item_id)
                      .join(runs, runs.c.run_id == item_dispositions.c.run_id))
         .where(run_items.c.outcome == ITEM_FAILED, *_run_conds(f))
         .group_by(runs.c.definition_id, sa.text("2"), sa.text("3")))
    return {(r.definition_id, r.cause, r.class_): int(r.n) for r in conn.execute(q)}


_ITEM_COLUMNS = (run_items.c.item_id, run_items.c.run_id, runs.c.definition_id, runs.c.triggered_at,
                 run_items.c.subject_label, run_items.c.outcome, run_items.c.failure_cause,
                 run_items.c.failure_class, run_items.c.attempts, run_items.c.retry_due_at,
                 runs.c.cancel_requested_at, runs.c.cancel_requested_by, runs.c.trigger_kind, runs.c.trigger_source,
                 item_dispositions.c.kind.label("disposition"), item_dispositions.c.reason.label("disposition_reason"),
                 item_dispositions.c.decided_by.label("dispositioned_by"))


def runs_holding(picked: Sequence[Any], limit: int) -> list[str]:
    """The first of ``picked`` (run id, items it holds), in order, that together hold ``limit`` items."""
    taken, run_ids = 0, []
    for run_id, n in picked:
        run_ids.append(run_id)
        taken += n
        if taken >= limit:
            break
    return run_ids


def read_failed_items(conn: sa.Connection, f: FailedFilter, limit: int | None = 500,
                      cause: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    """Failed items with their run's definition, newest run first; ``limit=None`` reads them all (for a bulk
    retry).

    With a limit, the runs come first: the newest runs that have failed items (``runs.items_failed``) and
    hold at least ``limit`` of them; then only those runs' items are read, bounded by the runs' id range
    so that DuckDB skips the row groups of every other run (items are stored in run order)."""
    j, conds = _failed(f)
    if cause is not None:  # one failure group of count_failed_items_by_cause (a bulk disposition takes it)
        conds += [cause_kind(run_items.c.failure_cause) == cause[0],
                  sa.func.coalesce(run_items.c.failure_class, "unknown") == cause[1]]
    q = sa.select(*_ITEM_COLUMNS).select_from(j).where(*conds)
    if limit is not None:
        picked = conn.execute(
            sa.select(runs.c.run_id, runs.c.items_failed).where(runs.c.items_failed > 0, *_run_conds(f))
            .order_by(runs.c.run_number.desc()).limit(limit)).all()
        run_ids = runs_holding(picked, limit)
        if not run_ids:
            return []
        q = q.where(run_items.c.run_id.in_(run_ids), run_items.c.run_id.between(min(run_ids), max(run_ids)))
    q = q.order_by(runs.c.run_number.desc(), run_items.c.position)
    if limit is not None:
        q = q.limit(limit)
    return [dict(r) for r in conn.execute(q).mappings()]


# --- approvals ------------------------------------------------------------------------------------------
def read_open_approvals_oldest_first(conn: sa.Connection) -> list[dict[str, Any]]:
    q = (sa.select(approvals.c.item_id, approvals.c.run_id, approvals.c.definition_id,
                   approvals.c.definition_version, approvals.c.opened_at, run_items.c.subject_label,
                   run_items.c.action, run_items.c.parameters, runs.c.trigger_kind, runs.c.trigger_source)
         .select_from(approvals.join(run_items, run_items.c.item_id == approvals.c.item_id)
                      .join(runs, runs.c.run_id == approvals.c.run_id))
         .where(approvals.c.decision.is_(None), run_items.c.outcome == AWAITING_APPROVAL)
         .order_by(approvals.c.opened_at, approvals.c.item_id))
    return [dict(r) for r in conn.execute(q).mappings()]


def read_recent_decisions(conn: sa.Connection, limit: int = 20) -> list[dict[str, Any]]:
    q = (sa.select(approvals).where(approvals.c.decision.is_not(None))  # a cancel decides many at one instant
         .order_by(approvals.c.decided_at.desc(), approvals.c.item_id.desc()).limit(limit))
    return [dict(r) for r in conn.execute(q).mappings()]


# --- audit log ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    event: str | None = None
    entity_kind: str | None = None
    entity_id: str | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None


def read_audit_page(conn: sa.Connection, f: AuditFilter, before_seq: int | None = None,
                    limit: int = 100) -> tuple[list[dict[str, Any]], int | None]:
    """Newest first; the seq to continue before (None on the last page)."""
    conds: list[Any] = []
    for col, value in ((audit_log.c.actor, f.actor), (audit_log.c.event, f.event),
                       (audit_log.c.entity_kind, f.entity_kind), (audit_log.c.entity_id, f.entity_id)):
        if value:
            conds.append(col == value)
    if f.start:
        conds.append(audit_log.c.occurred_at >= f.start)
    if f.end:
        conds.append(audit_log.c.occurred_at < f.end)
    if before_seq is not None:
        conds.append(audit_log.c.seq < before_seq)
    q = (sa.select(audit_log.c.seq, audit_log.c.occurred_at, audit_log.c.actor, audit_log.c.event,
                   audit_log.c.entity_kind, audit_log.c.entity_id)
         .where(*conds).order_by(audit_log.c.seq.desc()).limit(limit + 1))
    rows = [dict(r) for r in conn.execute(q).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["seq"] if more and rows else None)


def read_audit_entry(conn: sa.Connection, seq: int) -> dict[str, Any] | None:
    row = conn.execute(sa.select(audit_log).where(audit_log.c.seq == seq)).mappings().first()
    return dict(row) if row else None


def read_audit_vocabulary(conn: sa.Connection) -> dict[str, list[str]]:
    """The actors, events and entity kinds that occur, for the filter pickers."""
    out = {}
    for name, col in (("actor", audit_log.c.actor), ("event", audit_log.c.event),
                      ("entity_kind", audit_log.c.entity_kind)):
        out[name] = list(conn.execute(sa.select(col).distinct().order_by(col)).scalars())
    return out


# --- records and subjects -------------------------------------------------------------------------------
RECORD_MODULES = tuple(RECORD_TABLES)


def read_records(conn: sa.Connection, module: str, limit: int = 500) -> list[dict[str, Any]]:
    t = RECORD_TABLES[module]  # a batch's records share their time: newest item first among them
    q = sa.select(t).order_by(t.c.created_at.desc(), t.c.source_item_id.desc()).limit(limit)
    return [dict(r) for r in conn.execute(q).mappings()]


def read_items_for_subject(conn: sa.Connection, subject_kind: str, subject_id: str,
                           limit: int = 200) -> list[dict[str, Any]]:
    q = (sa.select(run_items.c.item_id, run_items.c.run_id, runs.c.definition_id, run_items.c.action,
                   run_items.c.outcome, run_items.c.record_ref, runs.c.triggered_at)
         .select_from(run_items.join(runs, runs.c.run_id == run_items.c.run_id))
         .where(run_items.c.subject_kind == subject_kind, run_items.c.subject_id == subject_id)
         .order_by(runs.c.run_number.desc(), run_items.c.position).limit(limit))  # a run's items: one per action
    return [dict(r) for r in conn.execute(q).mappings()]
