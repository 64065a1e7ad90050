"""What the Runs, Run and Run item pages read: filtered, keyset-paginated runs and one run's facts.

Written for a workspace of a million runs and twenty million items: every list is a keyset page (sort key
plus ``run_number`` as the unique tiebreak; never OFFSET), counts are one grouped query, and a page's
outcome breakdown is one grouped query over just those runs' items.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa

from core.states import ACTED_OUTCOMES, ITEM_FAILED, OPEN_RUN_STATUSES, RUN_STATUSES, TERMINAL_RUN_STATUSES
from store.portable import duration_ms
from store.rollups import DURATION_RATIO, FAILED_FIRST, ZERO_KEY, utc
from store.schema import (
    approvals,
    audit_log,
    definition_versions,
    definitions,
    item_attempts,
    item_dispositions,
    run_duration_rollups,
    run_failure_accounts,
    run_items,
    run_rollups,
    runs,
    trigger_events,
)
from store.views.period_split import PeriodSplit, split_period

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


# What stands in for NULL in a nullable sort key, so that keyset comparisons stay total: written as literals,
# not bound parameters, so that PostgreSQL matches the very expression its index holds (ix_runs_*_sort,
# store/migrations.py v10) under a prepared statement's generic plan too. Still open runs count as the newest.
_FAR = sa.literal_column("TIMESTAMPTZ '9999-12-31 00:00:00+00'", type_=runs.c.triggered_at.type)
_NO_DURATION = sa.literal_column("-1", type_=sa.BigInteger())
# Sort key → (expression, kind). Columns that are never NULL are sorted as they are (an index on the column
# serves them); the nullable ones through coalesce.
_SORTS: dict[str, tuple[Any, str]] = {
    "completed": (sa.func.coalesce(runs.c.completed_at, _FAR), "ts"),
    "triggered": (runs.c.triggered_at, "ts"),
    "started": (sa.func.coalesce(runs.c.started_at, _FAR), "ts"),
    "duration": (sa.func.coalesce(duration_ms(runs.c.started_at, runs.c.completed_at), _NO_DURATION), "int"),
    "definition": (runs.c.definition_id, "str"),
    "status": (runs.c.status, "str"),
    "subjects": (runs.c.subjects_matched, "int"),
    "actions": (runs.c.actions_invoked, "int"),
}


def _sort_expr(key: str) -> tuple[Any, str]:
    return _SORTS[key]


def encode_cursor(value: Any, run_number: int) -> str:
    raw = json.dumps([value.isoformat() if isinstance(value, dt.datetime) else value, run_number])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


class BadCursor(ValueError):
    pass


def decode_cursor(text: str, key: str) -> tuple[Any, int]:
    """The page position a URL carries; a broken one raises BadCursor (the page then starts over)."""
    try:
        value, number = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        kind = _SORTS[key][1]
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
        # A run has a failure account exactly when one of its items failed at least once (a few percent of the
        # runs), so the filter needs no scan of every attempt.
        conds.append(sa.exists().where(run_failure_accounts.c.run_id == runs.c.run_id))
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
    latest = _latest_completion(conn, f) if sort.key == "completed" and sort.descending else None
    if latest is None:
        rows = [dict(r) for r in conn.execute(q.order_by(*order).limit(limit + 1)).mappings()]
    else:
        # Open runs sort first (as the newest: _FAR), then the closed ones, whose index walk starts at the latest
        # completion the view can hold rather than at the newest run of the workspace: two reads, in that order.
        rows = [dict(r) for r in conn.execute(q.where(runs.c.status.in_(OPEN_RUN_STATUSES))
                                              .order_by(*order).limit(limit + 1)).mappings()]
        if len(rows) <= limit:
            closed = q.where(runs.c.status.in_(sorted(TERMINAL_RUN_STATUSES)), key <= latest)
            rows += [dict(r) for r in conn.execute(closed.order_by(*order).limit(limit + 1 - len(rows))).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = encode_cursor(rows[-1]["sort_value"], rows[-1]["run_number"]) if more and rows else None
    for r in rows:
        r.pop("sort_value")
    return rows, cursor


def _month(t: dt.datetime) -> dt.date:
    return utc(t).date().replace(day=1)


def _latest_completion(conn: sa.Connection, f: RunFilter) -> dt.datetime | None:
    """On PostgreSQL, for a view whose runs were triggered before ``f.end``: the latest time any of its closed runs
    can have completed — ``f.end`` plus the longest trigger-to-completion time of their automations and months
    (``run_duration_rollups``, whose keys are 2% wide: the key's upper edge, and a second to spare). None when
    there is nothing to bound (no end, a view by completion time) or on DuckDB, which scans the column anyway."""
    if conn.dialect.name != "postgresql" or f.end is None or f.time_field == "completed":
        return None
    d = run_duration_rollups.c
    q = sa.select(sa.func.max(d.duration_key)).where(  # the months of the view's triggers, whole
        d.runs != 0, d.month <= _month(f.end), *([d.month >= _month(f.start)] if f.start else []),
        *([d.definition_id.in_(f.definitions)] if f.definitions else []))
    longest = conn.execute(q).scalar()
    seconds = 0.0 if longest is None or longest == ZERO_KEY else DURATION_RATIO ** (longest + 1) / 1000.0
    return f.end + dt.timedelta(seconds=seconds + 1)


def _from_rollups(f: RunFilter) -> bool:
    """Whether the view is one ``run_rollups`` can count: by automation, status and trigger time alone."""
    return not (f.outcome or f.failed_attempts or f.time_field == "completed")


def _rollup_conds(f: RunFilter, split: PeriodSplit) -> list[Any]:
    """The ``run_rollups`` rows of the view's whole days."""
    r = run_rollups.c
    return [*split.whole_conds(r.day), r.runs != 0, *([r.definition_id.in_(f.definitions)] if f.definitions else []),
            *([r.status.in_(f.statuses)] if f.statuses else [])]


def count_runs_by_status(conn: sa.Connection, f: RunFilter) -> dict[str, int]:
    """Runs in the view by status. A view by automation, status and trigger time is counted from the rollups'
    whole days and ``runs`` for the rest (the open runs, a partial first or last day): a few thousand rows,
    exact, however many runs it holds. Any other view counts its runs."""
    if not _from_rollups(f):
        q = sa.select(runs.c.status, sa.func.count()).where(*_where(f)).group_by(runs.c.status)
        return {s: int(n) for s, n in conn.execute(q)}
    split, r = split_period(f, "day"), run_rollups.c
    counts: Counter[str] = Counter()
    if split.whole:
        q = sa.select(r.status, sa.func.sum(r.runs)).where(*_rollup_conds(f, split)).group_by(r.status)
        counts.update({s: int(n) for s, n in conn.execute(q)})
    for rest in split.rest_conds(conn):
        q = sa.select(runs.c.status, sa.func.count()).where(*_where(f), rest).group_by(runs.c.status)
        counts.update({s: int(n) for s, n in conn.execute(q)})
    return {s: n for s, n in counts.items() if n}


# PostgreSQL counts row by row: a status the planner expects more than this many runs of in the view is given as
# its estimate (``RunCounts.estimated``) rather than counted, so no view counts a million rows (an exact count of
# 100,000 index entries takes ~10 ms). DuckDB counts a million runs' statuses in a few ms and always counts.
ESTIMATE_ABOVE = 100_000


@dataclass(frozen=True)
class RunCounts:
    """The Runs page's figures for a view: runs by status, and runs with a failed attempt (recovered or not)."""

    by_status: dict[str, int]
    with_failed_attempts: int
    estimated: frozenset[str] = frozenset()  # statuses whose figure is PostgreSQL's estimate, not a count

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


def _estimated_rows(conn: sa.Connection, arms: list[Any]) -> list[int] | None:
    """PostgreSQL's estimates of the rows each of ``arms`` (selects) returns, from its statistics, in one EXPLAIN
    of their UNION ALL (nothing is read); None if the plan does not show one estimate per arm."""
    c = sa.union_all(*arms).compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {c}", c.params).scalar_one()
    top = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
    children = top.get("Plans", []) if top["Node Type"] == "Append" else [top]
    return [int(p["Plan Rows"]) for p in children] if len(children) == len(arms) else None


def count_runs_in_view(conn: sa.Connection, f: RunFilter) -> RunCounts:
    """The Runs page's counts. Exact, except on PostgreSQL for a status with more than ``ESTIMATE_ABOVE`` runs
    in the view (the unfiltered view's ``completed``, say): that one is estimated and named in ``estimated``,
    the others are counted through ``ix_runs_status``."""
    with_failed = count_runs_with_failed_attempts(conn, f)
    if conn.dialect.name != "postgresql" or _from_rollups(f):
        return RunCounts(count_runs_by_status(conn, f), with_failed)
    statuses = [s for s in RUN_STATUSES if not f.statuses or s in f.statuses]
    estimates = _estimated_rows(conn, [sa.select(runs.c.run_number).where(*_where(f), runs.c.status == s)
                                       for s in statuses])
    big = {s: n for s, n in zip(statuses, estimates or [], strict=False) if n > ESTIMATE_ABOVE}
    if not big:
        return RunCounts(count_runs_by_status(conn, f), with_failed)
    counted = [s for s in statuses if s not in big]
    q = (sa.select(runs.c.status, sa.func.count()).where(*_where(f), runs.c.status.in_(counted))
         .group_by(runs.c.status))
    exact = {s: int(n) for s, n in conn.execute(q)} if counted else {}
    return RunCounts(exact | big, with_failed, frozenset(big))


def count_runs_with_failed_attempts(conn: sa.Connection, f: RunFilter) -> int:
    """Runs in the view with an item that failed at least once. A view by automation, status and trigger time
    sums the rollups' whole days and joins the rest's runs (open, or of a partial first or last day) to their
    failure accounts; any other view joins its runs to the accounts (one row per such run, a few percent of the
    runs, carrying its definition and trigger time) — never a pass over every run."""
    a = run_failure_accounts.c
    by_trigger = f.time_field != "completed"
    conds = [*([a.definition_id.in_(f.definitions)] if f.definitions else []),
             *([a.triggered_at >= f.start] if f.start and by_trigger else []),
             *([a.triggered_at < f.end] if f.end and by_trigger else [])]
    if not (f.statuses or f.outcome or (not by_trigger and (f.start or f.end))):
        return int(conn.execute(sa.select(sa.func.count()).select_from(run_failure_accounts).where(*conds))
                   .scalar_one())
    joined = sa.select(sa.func.count()).select_from(run_failure_accounts.join(runs, runs.c.run_id == a.run_id))
    if not _from_rollups(f):
        return int(conn.execute(joined.where(*conds, *_where(replace(f, failed_attempts=False)))).scalar_one())
    split, r, total = split_period(f, "day"), run_rollups.c, 0
    if split.whole:
        total += int(conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(r[FAILED_FIRST]), 0)).where(*_rollup_conds(f, split))).scalar_one())
    for rest in split.rest_conds(conn):
        total += int(conn.execute(joined.where(*conds, *_where(f), rest)).scalar_one())
    return total


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
    disposition = conn.execute(sa.select(item_dispositions).where(item_dispositions.c.item_id == item_id)
                               ).mappings().first()
    out["disposition"] = dict(disposition) if disposition else None
    return out


def read_entity_audit(conn: sa.Connection, entity_kind: str, entity_id: str,
                      limit: int = 200) -> list[dict[str, Any]]:
    q = (sa.select(audit_log.c.seq, audit_log.c.occurred_at, audit_log.c.actor, audit_log.c.event,
                   audit_log.c.payload, audit_log.c.hash)
         .where(audit_log.c.entity_kind == entity_kind, audit_log.c.entity_id == entity_id)
         .order_by(audit_log.c.seq).limit(limit))
    return [dict(r) for r in conn.execute(q).mappings()]
