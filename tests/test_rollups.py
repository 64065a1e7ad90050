"""The analytics read closed runs from rollups kept by the transaction that closes a run (store/rollups.py):
every figure equals the one ``runs`` gives directly, for whole and partial days, for any definitions, and
the kept tables equal a recount after every kind of change (the fault and kill harnesses check the same
after crashes: tests/faults/invariants.py).

DuckDB's demo quarter here; PostgreSQL answers alike (tests/test_read_models.py) and keeps them alike under
many workers (tests/faults/test_fleet_kills.py)."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from store import migrations, rollups
from store.cause_rollups import apply_cause_change, read_cause_rollups, recompute_cause_rollups
from store.portable import quantile_cont, seconds_between
from store.rollups import read_rollup_tables, recompute_rollups
from store.run_counts import COLUMN_OUTCOME, COUNT_COLUMNS
from store.schema import run_failure_causes, run_rollups, runs
from store.views import analytics as av
from store.views import run_pages
from store.views.oversight import FailedFilter, count_failed_items_by_cause
from store.views.run_pages import RunFilter
from store.workspace import Workspace

UTC = dt.UTC


@pytest.fixture(scope="module")
def demo_copy(demo_quarter_path: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("rollups") / "ws.duckdb"
    shutil.copyfile(demo_quarter_path, path)
    return str(path)


@pytest.fixture
def ws(demo_copy: str) -> Iterator[Workspace]:
    w = Workspace(demo_copy, read_only=True)
    yield w
    w.close()


def _direct(conn: sa.Connection, f: av.AnalyticsFilter) -> dict[str, Any]:
    """The four figures straight from ``runs`` (what the analytics read before the rollups)."""
    week = sa.func.date_trunc("week", runs.c.triggered_at).label("week")
    conds = av.run_period_conds(f)
    by_week = {(r[0], rollups.utc(r[1]), r[2], r[3]): tuple(r[4:]) for r in conn.execute(
        sa.select(runs.c.definition_id, week, runs.c.trigger_kind, runs.c.status, sa.func.count(),
                  sa.func.sum(runs.c.subjects_matched), sa.func.sum(runs.c.actions_invoked))
        .where(*conds).group_by(runs.c.definition_id, week, runs.c.trigger_kind, runs.c.status))}
    items: dict[tuple[Any, ...], int] = {}
    for r in conn.execute(sa.select(runs.c.definition_id, week, *[sa.func.sum(runs.c[c]) for c in COUNT_COLUMNS])
                          .where(*conds).group_by(runs.c.definition_id, week)):
        for column, value in zip(COUNT_COLUMNS, r[2:], strict=True):
            if value:
                items[(r[0], rollups.utc(r[1]), COLUMN_OUTCOME[column])] = int(value)
    secs = seconds_between(runs.c.triggered_at, runs.c.completed_at)
    closed = [runs.c.completed_at.is_not(None), *conds]
    buckets: dict[tuple[str, str], int] = {}
    for d, s in conn.execute(sa.select(runs.c.definition_id, secs).where(*closed)):
        label = av.DURATION_BUCKETS[rollups.bucket_of(s)][0]
        buckets[(d, label)] = buckets.get((d, label), 0) + 1
    times = {r[0]: tuple(r[1:]) for r in conn.execute(
        sa.select(runs.c.definition_id, sa.func.count(), quantile_cont(secs, 0.5), quantile_cont(secs, 0.9),
                  sa.func.max(secs)).where(*closed).group_by(runs.c.definition_id))}
    return {"by_week": by_week, "items": items, "buckets": buckets, "times": times}


def _read(conn: sa.Connection, f: av.AnalyticsFilter) -> dict[str, Any]:
    return {
        "by_week": {(r["definition_id"], r["week"], r["trigger_kind"], r["status"]):
                    (r["runs"], r["subjects_matched"], r["actions_invoked"])
                    for r in av.count_runs_by_definition_week(conn, f)},
        "items": {(r["definition_id"], r["week"], r["outcome"]): r["items"]
                  for r in av.count_items_by_definition_week_outcome(conn, f)},
        "buckets": {(r["definition_id"], r["bucket"]): r["runs"] for r in av.count_runs_by_completion_bucket(conn, f)},
        "times": {r["definition_id"]: (r["closed_runs"], r["p50_seconds"], r["p90_seconds"], r["max_seconds"])
                  for r in av.summarize_completion_times(conn, f)},
    }


PERIODS = {
    "the quarter": av.AnalyticsFilter(dt.datetime(2026, 7, 1, tzinfo=UTC), dt.datetime(2026, 10, 1, tzinfo=UTC)),
    "all time": av.AnalyticsFilter(),
    "mid-day to mid-day": av.AnalyticsFilter(dt.datetime(2026, 7, 6, 5, 30, tzinfo=UTC),
                                             dt.datetime(2026, 8, 17, 6, 15, tzinfo=UTC)),
    "within one day": av.AnalyticsFilter(dt.datetime(2026, 7, 13, 5, tzinfo=UTC),
                                         dt.datetime(2026, 7, 13, 7, tzinfo=UTC)),
    "open-ended, one automation": av.AnalyticsFilter(dt.datetime(2026, 8, 3, 12, tzinfo=UTC), None,
                                                     ("kyc-weekly-review",)),
}


@pytest.mark.parametrize("period", PERIODS)
def test_every_figure_equals_what_the_runs_give(ws: Workspace, period: str) -> None:
    f = PERIODS[period]
    with ws.read() as conn:
        direct, read = _direct(conn, f), _read(conn, f)
    assert read == direct
    assert direct["by_week"] or period == "within one day"  # the demo has runs in every other period


def test_the_kept_rollups_equal_a_recount_of_the_demo(ws: Workspace) -> None:
    with ws.read() as conn:
        kept = read_rollup_tables(conn)
        assert kept == recompute_rollups(conn)
        # the demo's retries reopened runs completed with failures: their keys moved, nothing double-counted
        assert sum(v["runs"] for v in kept[0].values()) == conn.execute(
            sa.text("SELECT count(*) FROM runs WHERE completed_at IS NOT NULL")).scalar_one() > 0


def test_over_many_runs_percentiles_come_from_the_histogram_within_one_percent(
        ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(av, "EXACT_PERCENTILES_UP_TO", 0)
    with ws.read() as conn:
        exact = _direct(conn, av.AnalyticsFilter())["times"]
        rows = av.summarize_completion_times(conn, av.AnalyticsFilter())
    assert rows and all(r["approximate"] for r in rows)
    for r in rows:
        n, p50, p90, longest = exact[r["definition_id"]]
        assert r["closed_runs"] == n
        for got, want in ((r["p50_seconds"], p50), (r["p90_seconds"], p90), (r["max_seconds"], longest)):
            assert abs(got - want) <= 0.01 * want + 0.001, (r["definition_id"], got, want)


def test_the_histogram_percentile_interpolates_as_quantile_cont() -> None:
    one = rollups.duration_key(100.0)
    assert rollups.key_seconds(one) == pytest.approx(100.0, rel=0.01)
    got = rollups.percentiles_from({one: 1, one + 10: 1})  # two runs: the median halfway between them
    assert got["p50_seconds"] == pytest.approx((rollups.key_seconds(one) + rollups.key_seconds(one + 10)) / 2)
    assert got["max_seconds"] == rollups.key_seconds(one + 10)


def _reopened_as_schema(source: str, tmp_path: Path, version: int,
                        undo: Callable[[sa.Connection], None]) -> Workspace:
    """A copy of ``source`` taken back to schema ``version`` by ``undo``, then opened (which migrates it)."""
    path = tmp_path / "old.duckdb"
    shutil.copyfile(source, path)
    w = Workspace(str(path))
    with w.transaction() as tx:
        undo(tx.conn)
        tx.conn.exec_driver_sql(f"UPDATE schema_meta SET value = '{version}' WHERE key = 'schema_version'")
    w.close()
    return Workspace(str(path))


def test_a_workspace_from_before_the_rollups_gets_them_on_open(demo_quarter_path: str, tmp_path: Path) -> None:
    def undo(conn: sa.Connection) -> None:  # as schema 12 left it: no rollup tables
        conn.exec_driver_sql("DROP TABLE run_rollups")
        conn.exec_driver_sql("DROP TABLE run_duration_rollups")

    w = _reopened_as_schema(demo_quarter_path, tmp_path, 12, undo)
    try:
        with w.read() as conn:
            assert migrations.read_schema_version(conn) == migrations.SCHEMA_VERSION >= 13
            kept = read_rollup_tables(conn)
            assert kept == recompute_rollups(conn) and kept[0] and kept[1]
    finally:
        w.close()


FAILED_PERIODS = {  # the demo as make run seeds it: its latest KYC run (30 November, 06:00) left with failures
    "the current quarter": FailedFilter(start=dt.datetime(2026, 10, 1, tzinfo=UTC),
                                        end=dt.datetime(2027, 1, 1, tzinfo=UTC)),
    "all time": FailedFilter(),
    "mid-month to mid-month": FailedFilter(start=dt.datetime(2026, 11, 15, 6, tzinfo=UTC),
                                           end=dt.datetime(2026, 12, 2, 12, tzinfo=UTC)),
    "within one day": FailedFilter(start=dt.datetime(2026, 11, 30, 5, tzinfo=UTC),
                                   end=dt.datetime(2026, 11, 30, 7, tzinfo=UTC)),
    "open-ended, one automation": FailedFilter("kyc-weekly-review", dt.datetime(2026, 11, 29, 12, tzinfo=UTC)),
    "the worked example's quarter": FailedFilter(start=dt.datetime(2026, 7, 1, tzinfo=UTC),
                                                 end=dt.datetime(2026, 10, 1, tzinfo=UTC)),
}


@pytest.fixture(scope="module")
def today(demo_today_path: str) -> Iterator[Workspace]:
    w = Workspace(demo_today_path, read_only=True)
    yield w
    w.close()


@pytest.mark.parametrize("period", PERIODS)
def test_the_runs_page_counts_equal_the_runs_counted(ws: Workspace, period: str) -> None:
    """The Runs page's counts by status come from the rollups' whole days and ``runs`` for the rest: equal to
    the runs counted, with a status filter too."""
    f = PERIODS[period]
    for view in (RunFilter(definitions=f.definitions, start=f.start, end=f.end),
                 RunFilter(definitions=f.definitions, statuses=("completed-with-failures", "running", "completed"),
                           start=f.start, end=f.end)):
        conds = [runs.c.triggered_at >= view.start] if view.start else []
        conds += [runs.c.triggered_at < view.end] if view.end else []
        conds += [runs.c.definition_id.in_(view.definitions)] if view.definitions else []
        conds += [runs.c.status.in_(view.statuses)] if view.statuses else []
        with ws.read() as conn:
            counted = {s: int(n) for s, n in conn.execute(
                sa.select(runs.c.status, sa.func.count()).where(*conds).group_by(runs.c.status))}
            assert run_pages.count_runs_by_status(conn, view) == counted
    assert counted or period == "within one day"


@pytest.mark.parametrize("period", FAILED_PERIODS)
def test_the_failed_items_groups_equal_the_failure_summaries_grouped(today: Workspace, period: str) -> None:
    """The Failed items page's groups come from the cause rollups' whole months and the summaries for the rest:
    equal to the summaries grouped, as the page read them before."""
    f, c = FAILED_PERIODS[period], run_failure_causes.c
    conds = [c.failed_items > 0, *([c.definition_id == f.definition] if f.definition else []),
             *([c.triggered_at >= f.start] if f.start else []), *([c.triggered_at < f.end] if f.end else [])]
    with today.read() as conn:
        grouped = [{"definition_id": d, "failure_cause": cause, "failure_class": cls, "items": int(items),
                    "runs": int(n)} for d, cause, cls, items, n in conn.execute(
            sa.select(c.definition_id, c.failure_cause, c.failure_class, sa.func.sum(c.failed_items), sa.func.count())
            .where(*conds).group_by(c.definition_id, c.failure_cause, c.failure_class))]
        assert count_failed_items_by_cause(conn, f) == sorted(
            grouped, key=lambda g: (-g["items"], g["definition_id"], g["failure_cause"]))
    assert bool(grouped) == (period != "the worked example's quarter")  # its failures all recovered


def test_the_kept_cause_rollups_equal_the_summaries_summed_and_a_long_cause_is_kept_whole(
        demo_today_path: str, tmp_path: Path) -> None:
    """The demo's failures as kept, then a cause far longer than any index entry may be (PostgreSQL's B-tree
    takes at most ~2,700 bytes): keyed by its digest, its text kept whole."""
    path = tmp_path / "ws.duckdb"
    shutil.copyfile(demo_today_path, path)
    w = Workspace(str(path))
    try:
        with w.read() as conn:
            kept = read_cause_rollups(conn)
            assert kept == recompute_cause_rollups(conn) and kept
        cause = "the ledger refused the posting " + "x" * 10_000
        with w.transaction() as tx:
            run = dict(tx.conn.execute(sa.select(runs).limit(1)).mappings().one())
            row = {"definition_id": run["definition_id"], "triggered_at": run["triggered_at"],
                   "failure_cause": cause, "failure_class": "deterministic", "failed_items": 3}
            apply_cause_change(tx, [], [row])
        with w.read() as conn:
            got = [r for r in read_cause_rollups(conn) if r[2] == cause]
            assert [(r[2], r[3]) for r in got] == [(cause, "deterministic")]
    finally:
        w.close()


def test_a_workspace_from_before_the_cause_rollups_gets_them_on_open(demo_today_path: str, tmp_path: Path) -> None:
    before = sa.Table("run_rollups", sa.MetaData(),
                      *[c._copy() for c in run_rollups.columns if c.name != rollups.FAILED_FIRST])

    def undo(conn: sa.Connection) -> None:  # as schema 14 left it: no cause rollups, no failed-attempts column
        conn.exec_driver_sql("DROP TABLE failure_cause_rollups")
        conn.exec_driver_sql("DROP TABLE run_rollups")
        before.create(conn)

    w = _reopened_as_schema(demo_today_path, tmp_path, 14, undo)
    try:
        with w.read() as conn:
            assert migrations.read_schema_version(conn) == migrations.SCHEMA_VERSION >= 15
            kept = read_cause_rollups(conn)
            assert kept == recompute_cause_rollups(conn) and kept
            days = read_rollup_tables(conn)
            assert days == recompute_rollups(conn)
            assert sum(m[rollups.FAILED_FIRST] for m in days[0].values()) == conn.execute(
                sa.text("SELECT count(*) FROM run_failure_accounts")).scalar_one() > 0
    finally:
        w.close()
