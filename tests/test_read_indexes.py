"""Schema 10: PostgreSQL's indexes for the dashboard's and the analytics' reads (store/migrations.py).

A workspace of schema 9 upgrades to 10 on both backends: PostgreSQL gains the indexes, DuckDB nothing (its
migration is a no-op). And the queries the Runs and Run pages issue can use them: an expression index serves only
the very expression it holds, so a change to a sort key's SQL that the index no longer matches fails here, not
as a slow page at a million runs. (Timings are for bench/bench_dashboard.py, by hand; nothing here is timed.)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa

from store.migrations import POSTGRES_INDEXES, SCHEMA_VERSION
from store.rollups import backfill_rollups
from store.views import run_pages
from store.views.run_pages import RunFilter, RunSort, count_outcomes_for_runs, read_items_page, read_runs_page
from store.workspace import Workspace
from tests.backends import (  # noqa: F401 - fixtures
    backend_fixture,
    create_database,
    pg_server_fixture,
    workspace_db_fixture,
)

V10_INDEXES = {name for name, _ in POSTGRES_INDEXES}


def _index_names(conn: sa.Connection) -> set[str]:
    if conn.dialect.name == "postgresql":
        return set(conn.exec_driver_sql("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'").scalars())
    return set(conn.exec_driver_sql("SELECT index_name FROM duckdb_indexes()").scalars())


def _schema_version(conn: sa.Connection) -> int:
    return int(conn.exec_driver_sql("SELECT value FROM schema_meta WHERE key = 'schema_version'").scalar_one())


def _as_schema_9(db: str) -> None:
    """The workspace as Runledger of schema 9 left it: without v10's indexes, v11's dispositions, v12's holds and
    archives, v13's and v15's rollups, its version 9."""
    ws = Workspace(db)
    try:
        with ws.engine.begin() as conn:
            for name in V10_INDEXES & _index_names(conn):
                conn.exec_driver_sql(f"DROP INDEX {name}")
            for table in ("item_dispositions", "legal_holds", "retention_archives",  # v11, v12
                          "run_rollups", "run_duration_rollups", "run_failure_accounts", "event_rollups",  # v13
                          "failure_cause_rollups"):  # v15
                conn.exec_driver_sql(f"DROP TABLE {table}")
            conn.exec_driver_sql("UPDATE schema_meta SET value = '9' WHERE key = 'schema_version'")
    finally:
        ws.close()


def test_a_workspace_of_schema_9_upgrades_to_10_and_on(workspace_db: str, backend: str) -> None:
    assert SCHEMA_VERSION == 15
    _as_schema_9(workspace_db)
    ws = Workspace(workspace_db, read_only=True)  # read-only: looks, upgrades nothing
    try:
        with ws.read() as conn:
            assert _schema_version(conn) == 9
            assert not V10_INDEXES & _index_names(conn)
    finally:
        ws.close()
    ws = Workspace(workspace_db)
    try:
        with ws.read() as conn:
            assert _schema_version(conn) == SCHEMA_VERSION
            present = V10_INDEXES & _index_names(conn)
            assert all(sa.inspect(conn).has_table(t) for t in (
                "item_dispositions", "legal_holds", "retention_archives",  # v11, v12
                "run_rollups", "run_duration_rollups", "run_failure_accounts", "event_rollups",  # v13
                "failure_cause_rollups"))  # v15
        assert present == (V10_INDEXES if backend == "postgresql" else set())
    finally:
        ws.close()
    ws = Workspace(workspace_db)  # opening it again changes nothing
    try:
        with ws.read() as conn:
            assert _schema_version(conn) == SCHEMA_VERSION
    finally:
        ws.close()


def _plans(ws: Workspace, call: Callable[[sa.Connection], Any]) -> str:
    """PostgreSQL's plans for the statements ``call`` issues, with their parameters, sequential scans
    discouraged (the test's tables are nearly empty, where a scan would win; at a million rows it loses)."""
    issued: list[tuple[str, Any]] = []

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            issued.append((statement, parameters))

    sa.event.listen(ws.engine, "before_cursor_execute", note)
    try:
        with ws.read() as conn:
            call(conn)
    finally:
        sa.event.remove(ws.engine, "before_cursor_execute", note)
    with ws.read() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")
        conn.exec_driver_sql("SET enable_bitmapscan = off")
        return "\n".join("\n".join(conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).scalars())
                         for statement, parameters in issued)


@pytest.mark.parametrize(("sort", "index"), [("completed", "ix_runs_completed_sort"),
                                             ("started", "ix_runs_started_sort"),
                                             ("duration", "ix_runs_duration_sort"),
                                             ("triggered", "ix_runs_triggered")])
@pytest.mark.parametrize("descending", [True, False])
def test_the_runs_page_reads_its_sort_from_an_index_on_postgresql(pg_server: str, sort: str, index: str,
                                                                  descending: bool) -> None:
    ws = Workspace(create_database(pg_server))
    try:
        first = _plans(ws, lambda conn: read_runs_page(conn, RunFilter(), RunSort(sort, descending)))
        assert f"Index Scan{' Backward' if descending else ''} using {index} on runs" in first, first
        assert "Sort Key" not in first, first
        with ws.engine.begin() as conn:  # two runs, so that the first page of one has a next page's cursor
            for n in (1, 2):
                conn.exec_driver_sql(
                    "INSERT INTO runs (run_id, run_number, definition_id, definition_version, trigger_kind, "
                    "trigger_source, trigger_event_id, triggered_at, status, subjects_matched, actions_invoked, "
                    "started_at, completed_at, created_at) VALUES (%(id)s, %(n)s, 'd', 1, 'schedule', 's', "
                    "%(id)s, now(), 'completed', 0, 0, now(), now(), now())", {"id": f"RUN-{n}", "n": n})
        with ws.read() as conn:
            _, cursor = read_runs_page(conn, RunFilter(), RunSort(sort, descending), limit=1)
        assert cursor is not None
        deep = _plans(ws, lambda conn: read_runs_page(conn, RunFilter(), RunSort(sort, descending), after=cursor))
        assert f"using {index} on runs" in deep and "Sort Key" not in deep, deep
    finally:
        ws.close()


def test_a_period_sorted_by_completion_starts_its_walk_at_the_latest_completion_it_can_hold_on_postgresql(
        pg_server: str) -> None:
    """A view of runs triggered in a period, newest completed first: the open runs, then the closed ones — among
    them a run triggered just before the period's end and closed days after it, which the bound from the
    duration rollups must still let in. Page after page equals the runs sorted by hand. (What the bound saves —
    the read starting at it in ix_runs_completed_sort rather than at the workspace's newest run — is measured by
    bench/bench_dashboard.py at a million runs, where the planner takes that path.)"""
    ws = Workspace(create_database(pg_server))
    start, end = dt.datetime(2026, 7, 1, tzinfo=dt.UTC), dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    runs_made = []  # (run_id, run_number, status, triggered, completed)
    for n in range(1, 121):
        triggered = start + dt.timedelta(hours=n * 20 - 200)  # before, in and after the period
        hours = 72 if n == 109 else (n % 7)  # run 109: triggered 4 h before the end, closed 68 h after it
        status = ("pending", "running")[n % 2] if n % 17 == 0 else "completed"
        completed = None if status != "completed" else triggered + dt.timedelta(hours=hours, seconds=n)
        runs_made.append((f"RUN-{n:03}", n, status, triggered, completed))
    try:
        with ws.engine.begin() as conn:
            for run_id, n, status, triggered, completed in runs_made:
                conn.exec_driver_sql(
                    "INSERT INTO runs (run_id, run_number, definition_id, definition_version, trigger_kind, "
                    "trigger_source, trigger_event_id, triggered_at, status, subjects_matched, actions_invoked, "
                    "started_at, completed_at, created_at) VALUES (%(id)s, %(n)s, 'd', 1, 'schedule', 's', %(id)s, "
                    "%(t)s, %(s)s, 0, 0, %(t)s, %(c)s, %(t)s)",
                    {"id": run_id, "n": n, "t": triggered, "s": status, "c": completed})
            backfill_rollups(conn)  # the runs went in by hand, past the settle that keeps the rollups
        far = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)
        expected = [r[0] for r in sorted((r for r in runs_made if start <= r[3] < end),
                                         key=lambda r: (r[4] or far, r[1]), reverse=True)]
        assert "RUN-109" in expected and any(r[2] != "completed" for r in runs_made if start <= r[3] < end)
        view, got, cursor = RunFilter(start=start, end=end), [], None
        with ws.read() as conn:
            while True:
                rows, cursor = read_runs_page(conn, view, RunSort(), after=cursor, limit=7)
                got += [r["run_id"] for r in rows]
                if cursor is None:
                    break
        assert got == expected
        with ws.read() as conn:  # the bound: the period's end, the longest run's 72 h (within 2%) and a second
            latest = run_pages._latest_completion(conn, view)
        assert latest is not None and dt.timedelta(hours=72) < latest - end < dt.timedelta(hours=72 * 1.02, seconds=2)
    finally:
        ws.close()


def test_the_run_page_reads_a_runs_items_by_position_from_an_index_on_postgresql(pg_server: str) -> None:
    ws = Workspace(create_database(pg_server))
    try:
        plan = _plans(ws, lambda conn: (read_items_page(conn, "RUN-1"), count_outcomes_for_runs(conn, ["RUN-1"])))
        assert plan.count("ix_items_run_position on run_items") == 2, plan
        assert "Sort Key" not in plan.split("Aggregate")[0], plan  # the page comes in position order
    finally:
        ws.close()


def test_the_runs_page_counts_from_the_rollups_and_estimates_only_what_they_cannot_count_on_postgresql(
        pg_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A view by automation, status and trigger time is counted exactly from the rollups, however many runs it
    holds. In any other view, a status with more runs than ``ESTIMATE_ABOVE`` is PostgreSQL's estimate, flagged;
    every other status is counted. Runs with failed attempts are counted from the failure accounts, as the filter
    counts them."""
    ws = Workspace(create_database(pg_server))
    try:
        with ws.engine.begin() as conn:
            for n in range(1, 201):
                status = "completed-with-failures" if n % 10 == 0 else "completed"
                conn.exec_driver_sql(
                    "INSERT INTO runs (run_id, run_number, definition_id, definition_version, trigger_kind, "
                    "trigger_source, trigger_event_id, triggered_at, status, subjects_matched, actions_invoked, "
                    "started_at, completed_at, created_at) VALUES (%(id)s, %(n)s, %(d)s, 1, 'schedule', 's', %(id)s, "
                    "now() - %(n)s * interval '1 hour', %(s)s, 0, 0, now(), now(), now())",
                    {"id": f"RUN-{n}", "n": n, "d": "a" if n % 2 else "b", "s": status})
                if n % 10 == 0:
                    conn.exec_driver_sql(
                        "INSERT INTO run_failure_accounts VALUES (%(id)s, %(d)s, now() - %(n)s * interval '1 hour', "
                        "2, 0, 0, 2, 0, 0, 0)", {"id": f"RUN-{n}", "d": "b", "n": n})
            backfill_rollups(conn)  # the runs went in by hand, past the settle that keeps the rollups
            conn.exec_driver_sql("ANALYZE runs")
        monkeypatch.setattr(run_pages, "ESTIMATE_ABOVE", 100)
        filters = [RunFilter(), RunFilter(definitions=("b",)), RunFilter(definitions=("a",)),
                   RunFilter(statuses=("completed-with-failures",))]
        by_completion = RunFilter(time_field="completed")
        with ws.read() as conn:
            rolled = run_pages.count_runs_in_view(conn, RunFilter())
            assert (rolled.estimated, rolled.by_status) == (frozenset(),
                                                            {"completed": 180, "completed-with-failures": 20})
            counts = run_pages.count_runs_in_view(conn, by_completion)
            assert counts.estimated == {"completed"}
            assert counts.by_status["completed-with-failures"] == 20
            assert abs(counts.by_status["completed"] - 180) <= 18, counts  # the estimate, near the count
            for f in filters:
                expected = sum(run_pages.count_runs_by_status(conn, replace(f, failed_attempts=True)).values())
                failed = run_pages.count_runs_with_failed_attempts(conn, f)
                assert failed == expected == (0 if f.definitions == ("a",) else 20), f
            monkeypatch.setattr(run_pages, "ESTIMATE_ABOVE", 1000)
            exact = run_pages.count_runs_in_view(conn, by_completion)
        assert (exact.estimated, exact.by_status) == (frozenset(), {"completed": 180, "completed-with-failures": 20})
    finally:
        ws.close()
