"""The store calls behind each dashboard page, as the pages make them, for ``bench_dashboard.py``.

Each case makes every store call its page makes on a first view (keep them in step with ``pages/``): the Runs
page's two counts, the page of runs, its outcome and failed-first breakdowns; the Run page's facts, breakdowns,
alerts, import and first items; an item with its audit; the Failed items page's pickers, groups and items."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from store.alerts import read_run_alerts
from store.views.analytics import read_run_time_range
from store.views.oversight import FailedFilter, count_failed_items_by_cause, read_failed_items
from store.views.registers import read_import_of_run
from store.views.run_pages import (
    RunFilter,
    RunSort,
    count_failed_first_items,
    count_items_by_action_and_outcome,
    count_outcomes_for_runs,
    count_runs,
    count_runs_in_view,
    read_definition_ids,
    read_entity_audit,
    read_item_detail,
    read_items_page,
    read_run_detail,
    read_runs_page,
)

UTC = dt.UTC
Q = (dt.datetime(2026, 7, 1, tzinfo=UTC), dt.datetime(2026, 10, 1, tzinfo=UTC))


def cases(ws: Any) -> list[tuple[str, Callable[[], Any]]]:
    def runs_page(f: RunFilter, sort: RunSort, after: str | None = None) -> Callable[[], Any]:
        def call() -> Any:  # pages/runs.py
            with ws.read() as conn:
                counts = count_runs_in_view(conn, f)
                rows, nxt = read_runs_page(conn, f, sort, after=after)
                ids = [r["run_id"] for r in rows]
                return (counts, count_outcomes_for_runs(conn, ids),
                        count_failed_first_items(conn, ids), count_runs(conn) if not rows else None)
        return call

    everything, newest = RunFilter(), RunSort()
    filtered = RunFilter(definitions=("kyc-weekly-review", "aml-monitor-failure"),
                         statuses=("completed", "completed-with-failures"), start=Q[0], end=Q[1])
    # a cursor half-way down the unfiltered list, found the way a member gets there (page after page is
    # too slow to set up, so one query jumps there; the page call itself is what is timed)
    with ws.read() as conn:
        half = max(1, count_runs(conn) // 2)  # 500,000 in the 1,000,000-run workspace
        rows, cursor = read_runs_page(conn, everything, newest, limit=half)
        mid_run = rows[half // 2]["run_id"]
        item_id = f"{mid_run}-000001"
    return [
        ("Runs: all, newest completed first, first page", runs_page(everything, newest)),
        ("Runs: 2 definitions × 2 statuses × a quarter", runs_page(filtered, newest)),
        ("Runs: sorted by duration, first page", runs_page(everything, RunSort("duration"))),
        ("Runs: a page 500,000 runs deep (keyset)", runs_page(everything, newest, after=cursor)),
        ("Run: facts, breakdown, first 100 items", lambda: _run(ws, mid_run)),
        ("Run item: item, attempts, approval, audit", lambda: _item(ws, item_id)),
        ("Failed items: a quarter, grouped + newest 500", lambda: _failed(ws, FailedFilter(start=Q[0], end=Q[1]))),
        ("Failed items: all time, grouped + newest 500", lambda: _failed(ws, FailedFilter())),
    ]


def _run(ws: Any, run_id: str) -> Any:  # pages/run.py
    with ws.read() as conn:
        return (read_run_detail(conn, run_id), count_items_by_action_and_outcome(conn, run_id),
                count_failed_first_items(conn, [run_id]), read_run_alerts(conn, run_id),
                read_import_of_run(conn, run_id), read_items_page(conn, run_id), read_entity_audit(conn, "run", run_id))


def _item(ws: Any, item_id: str) -> Any:  # pages/item.py
    with ws.read() as conn:
        return read_item_detail(conn, item_id), read_entity_audit(conn, "run_item", item_id)


def _failed(ws: Any, f: FailedFilter) -> Any:  # pages/failed_items.py
    with ws.read() as conn:
        return (read_definition_ids(conn), read_run_time_range(conn), count_failed_items_by_cause(conn, f),
                read_failed_items(conn, f, limit=500))
