"""What the Runs, Run and Run item pages read: filtered, keyset-paginated runs and one run's facts.

Written for a workspace of a million runs and twenty million items: every list is a keyset page (sort key
plus ``run_number`` as the unique tiebreak; never OFFSET), counts are one grouped query, and a page's
outcome breakdown is one grouped query over just those runs' items.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from core.states import ACTED_OUTCOMES, ITEM_FAILED
from store.schema import (
    approvals,
    audit_log,
    definition_versions,
    definitions,
    item_attempts,
    run_failure_causes,
    run_items,
    runs,
    trigger_events,
)
from store.views.analytics import seconds_between

PAGE_SIZE = 50


@dataclass(frozen=True)
class RunFilter:
    definitions: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    start: dt.datetime | None = None  # inclusive
    end: dt.datetime | None = None  # exclusive
    time_field: str = "triggered"  # triggered | completed
    outcome: str | None = None  # runs with at least one item of this outcome
    failed_attempts: bool = False  # runs with at least one failed attempt, recovered by a retry or not


@dataclass(frozen=True)
class RunSort:
    key: str = "completed"
    descending: bool = True


_FAR = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)
# Sort key → (expression, what stands in for NULL so that keyset comparisons stay total, kind).
_SORTS: dict[str, tuple[Any, Any, str]] = {
    "completed": (runs.c.completed_at, _FAR, "ts"),  # still open runs count as the newest
    "triggered": (runs.c.triggered_at, _FAR, "ts"),
    "started": (runs.c.started_at, _FAR, "ts"),
    "duration": (sa.cast(sa.func.floor(seconds_between(runs.c.started_at, runs.c.completed_at) * 1000), sa.BigInteger),
                 -1, "int"),  # whole milliseconds
    "definition": (runs.c.definition_id, "", "str"),
    "status": (runs.c.status, "", "str"),
    "subjects": (runs.c.subjects_matched, -1, "int"),
    "actions": (runs.c.actions_invoked, -1, "int"),
}


def _sort_expr(key: str) -> tuple[Any, str]:
    expr, null_as, kind = _SORTS[key]
    return sa.func.coalesce(expr, sa.literal(null_as, type_=runs.c.triggered_at.type if kind == "ts" else None)), kind


def encode_cursor(value: Any, run_number: int) -> str:
    raw = json.dumps([value.isoformat() if isinstance(value, dt.datetime) else value, run_number])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


class BadCursor(ValueError):
    pass


def decode_cursor(text: str, key: str) -> tuple[Any, int]:
    """The page position a URL carries; a broken one raises BadCursor (the page then starts over)."""
    try:
        value, number = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        kind = _SORTS[key][2]
        if kind == "ts":
            value = dt.datetime.fromisoformat(value)
        elif kind == "int":
            value = int(value)
        else:
            value = str(value)
        return value, int(number)
    except (ValueError, TypeError, KeyError, json.JSONDecodeError) as exc:
        raise BadCursor(f"the page position in the link ({text[:40]!r}) is not one this page made") from exc


def _where(f: RunFilter) -> list[Any]:
    conds: list[Any] = []
    if f.definitions:
        conds.append(runs.c.definition_id.in_(f.definitions))
    if f.statuses:
        conds.append(runs.c.status.in_(f.statuses))
    col = runs.c.completed_at if f.time_field == "completed" else runs.c.triggered_at
    if f.start:
        conds.append(col >= f.start)
    if f.end:
        conds.append(col < f.end)
    if f.outcome:
        conds.append(sa.exists().where(run_items.c.run_id == runs.c.run_id, run_items.c.outcome == f.outcome))
    if f.failed_attempts:
        # The failure summary holds a row for every run that has or had a failed item (a few thousand rows),
        # so the filter needs no scan of every attempt.
        conds.append(sa.exists().where(run_failure_causes.c.run_id == runs.c.run_id,
                                       run_failure_causes.c.failed_attempts > 0))
    return conds


RUN_COLUMNS = (runs.c.run_id, runs.c.run_number, runs.c.definition_id, runs.c.definition_version,
               runs.c.trigger_kind, runs.c.trigger_source, runs.c.status, runs.c.subjects_matched,
               runs.c.actions_invoked, runs.c.triggered_at, runs.c.started_at, runs.c.completed_at)


def read_runs_page(conn: sa.Connection, f: RunFilter, sort: RunSort, after: str | None = None,
                   limit: int = PAGE_SIZE) -> tuple[list[dict[str, Any]], str | None]:
    """One page of runs and the cursor of the next page (None on the last page)."""
    key, kind = _sort_expr(sort.key)
    q = sa.select(*RUN_COLUMNS, key.label("sort_value")).where(*_where(f))
    if after:
        value, number = decode_cursor(after, sort.key)
        pair, bound = sa.tuple_(key, runs.c.run_number), sa.tuple_(sa.literal(value), sa.literal(number))
        q = q.where(pair < bound if sort.descending else pair > bound)
    order = (key.desc(), runs.c.run_number.desc()) if sort.descending else (key.asc(), runs.c.run_number.asc())
    rows = [dict(r) for r in conn.execute(q.order_by(*order).limit(limit + 1)).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = encode_cursor(rows[-1]["sort_value"], rows[-1]["run_number"]) if more and rows else None
    for r in rows:
        r.pop("sort_value")
    return rows, cursor


def count_runs_by_status(conn: sa.Connection, f: RunFilter) -> dict[str, int]:
    q = sa.select(runs.c.status, sa.func.count()).where(*_where(f)).group_by(runs.c.status)
    return {s: n for s, n in conn.execute(q)}


def count_outcomes_for_runs(conn: sa.Connection, run_ids: list[str]) -> dict[str, dict[str, int]]:
    """Outcome counts per run for one page of runs, in one grouped query."""
    out: dict[str, dict[str, int]] = {r: {} for r in run_ids}
    if not run_ids:
        return out
    q = (sa.select(run_items.c.run_id, run_items.c.outcome, sa.func.count())
         .where(run_items.c.run_id.in_(run_ids)).group_by(run_items.c.run_id, run_items.c.outcome))
    for run_id, outcome, n in conn.execute(q):
        out[run_id][outcome] = n
    return out


@dataclass(frozen=True)
class FailedFirst:
    """A run's items with at least one failed attempt: how many, and how they stand now."""

    items: int = 0
    recovered: int = 0  # succeeded or replayed on a later attempt
    still_failed: int = 0


def count_failed_first_items(conn: sa.Connection, run_ids: list[str]) -> dict[str, FailedFirst]:
    """For a page of runs, one grouped query: items that failed at least once, recovered and still failed.
    Runs with none are absent."""
    if not run_ids:
        return {}
    failed = (sa.select(item_attempts.c.item_id).where(item_attempts.c.run_id.in_(run_ids),
                                                       item_attempts.c.outcome == ITEM_FAILED)
              .distinct().subquery())
    q = (sa.select(run_items.c.run_id, sa.func.count(),
                   sa.func.count().filter(run_items.c.outcome.in_(ACTED_OUTCOMES)),
                   sa.func.count().filter(run_items.c.outcome == ITEM_FAILED))
         .select_from(failed.join(run_items, run_items.c.item_id == failed.c.item_id))
         .group_by(run_items.c.run_id))
    return {run_id: FailedFirst(int(n), int(rec), int(still)) for run_id, n, rec, still in conn.execute(q)}


def count_runs(conn: sa.Connection) -> int:
    """Every run in the workspace (to tell an empty workspace from filters that match nothing)."""
    return int(conn.execute(sa.select(sa.func.count()).select_from(runs)).scalar_one())


def read_definition_ids(conn: sa.Connection) -> list[str]:
    return list(conn.execute(sa.select(definitions.c.definition_id).order_by(definitions.c.definition_id))
                .scalars())


# --- one run --------------------------------------------------------------------------------------
def read_run_detail(conn: sa.Connection, run_id: str) -> dict[str, Any] | None:
    """The run, its trigger event, its definition's title and the text of the version that ran."""
    run = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).mappings().first()
    if run is None:
        return None
    out = dict(run)
    event = conn.execute(sa.select(trigger_events).where(trigger_events.c.event_id == run["trigger_event_id"])
                         ).mappings().first()
    out["event"] = dict(event) if event else None
    version = conn.execute(sa.select(definition_versions).where(
        definition_versions.c.definition_id == run["definition_id"],
        definition_versions.c.version == run["definition_version"])).mappings().first()
    out["version"] = dict(version) if version else None
    out["definition_title"] = conn.execute(sa.select(definitions.c.title).where(
        definitions.c.definition_id == run["definition_id"])).scalar()
    return out


def count_items_by_action_and_outcome(conn: sa.Connection, run_id: str) -> list[dict[str, Any]]:
    q = (sa.select(run_items.c.action, run_items.c.outcome, sa.func.count().label("items"))
         .where(run_items.c.run_id == run_id).group_by(run_items.c.action, run_items.c.outcome)
         .order_by(run_items.c.action, run_items.c.outcome))
    return [dict(r) for r in conn.execute(q).mappings()]


ITEM_LIST_COLUMNS = (run_items.c.item_id, run_items.c.position, run_items.c.subject_kind, run_items.c.subject_id,
                     run_items.c.subject_label, run_items.c.action, run_items.c.outcome, run_items.c.record_ref,
                     run_items.c.skip_reason, run_items.c.failure_cause, run_items.c.failure_class,
                     run_items.c.attempts, run_items.c.updated_at)


def read_items_page(conn: sa.Connection, run_id: str, outcome: str | None = None, after_position: int = 0,
                    limit: int = 100, failed_attempts: bool = False) -> tuple[list[dict[str, Any]], int | None]:
    """A page of a run's items in position order, and the position to continue after (None: last page).
    ``failed_attempts`` keeps the items with at least one failed attempt (recovered or not)."""
    q = sa.select(*ITEM_LIST_COLUMNS).where(run_items.c.run_id == run_id, run_items.c.position > after_position)
    if outcome:
        q = q.where(run_items.c.outcome == outcome)
    if failed_attempts:
        q = q.where(sa.exists().where(item_attempts.c.item_id == run_items.c.item_id,
                                      item_attempts.c.run_id == run_id, item_attempts.c.outcome == ITEM_FAILED))
    rows = [dict(r) for r in conn.execute(q.order_by(run_items.c.position).limit(limit + 1)).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["position"] if more and rows else None)


# --- one item -------------------------------------------------------------------------------------
def read_item_detail(conn: sa.Connection, item_id: str) -> dict[str, Any] | None:
    item = conn.execute(sa.select(run_items).where(run_items.c.item_id == item_id)).mappings().first()
    if item is None:
        return None
    out = dict(item)
    out["run"] = dict(conn.execute(sa.select(runs).where(runs.c.run_id == item["run_id"])).mappings().one())
    out["attempt_rows"] = [dict(r) for r in conn.execute(
        sa.select(item_attempts).where(item_attempts.c.item_id == item_id).order_by(item_attempts.c.attempt)
    ).mappings()]
    approval = conn.execute(sa.select(approvals).where(approvals.c.item_id == item_id)).mappings().first()
    out["approval"] = dict(approval) if approval else None
    return out


def read_entity_audit(conn: sa.Connection, entity_kind: str, entity_id: str,
                      limit: int = 200) -> list[dict[str, Any]]:
    q = (sa.select(audit_log.c.seq, audit_log.c.occurred_at, audit_log.c.actor, audit_log.c.event,
                   audit_log.c.payload, audit_log.c.hash)
         .where(audit_log.c.entity_kind == entity_kind, audit_log.c.entity_id == entity_id)
         .order_by(audit_log.c.seq).limit(limit))
    return [dict(r) for r in conn.execute(q).mappings()]
