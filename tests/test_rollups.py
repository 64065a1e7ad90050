"""The analytics read closed runs from rollups kept by the transaction that closes a run (store/rollups.py):
every figure equals the one ``runs`` gives directly, for whole and partial days, for any definitions, and
the kept tables equal a recount after every kind of change (the fault and kill harnesses check the same
after crashes: tests/faults/invariants.py).

DuckDB's demo quarter here; PostgreSQL answers alike (tests/test_read_models.py) and keeps them alike under
many workers (tests/faults/test_fleet_kills.py)."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from store import migrations, rollups
from store.portable import quantile_cont, seconds_between
from store.rollups import read_rollup_tables, recompute_rollups
from store.run_counts import COLUMN_OUTCOME, COUNT_COLUMNS
from store.schema import runs
from store.views import analytics as av
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


def test_a_workspace_from_before_the_rollups_gets_them_on_open(demo_quarter_path: str, tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    shutil.copyfile(demo_quarter_path, path)
    w = Workspace(str(path))
    with w.transaction() as tx:  # as schema 12 left it: no rollup tables
        tx.conn.exec_driver_sql("DROP TABLE run_rollups")
        tx.conn.exec_driver_sql("DROP TABLE run_duration_rollups")
        tx.conn.exec_driver_sql("UPDATE schema_meta SET value = '12' WHERE key = 'schema_version'")
    w.close()
    w = Workspace(str(path))
    try:
        with w.read() as conn:
            assert migrations.read_schema_version(conn) == migrations.SCHEMA_VERSION >= 13
            kept = read_rollup_tables(conn)
            assert kept == recompute_rollups(conn) and kept[0] and kept[1]
    finally:
        w.close()
