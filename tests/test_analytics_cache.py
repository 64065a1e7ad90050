"""The analytics page's cache (``ui.analytics_cache``) never shows an auditor stale figures: a committed change
is seen on the next view, and so is the passage of time (the firing check's expected fires), while views with
nothing new in between reuse one computation. Correctness only; speed is ``bench/bench_pages.py``'s.

DuckDB only, by nature: the cache is keyed on the workspace's change marker, which exists because this process
is a DuckDB file's one writer; a PostgreSQL workspace has none (other processes write it), so nothing is cached."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.links import PAGES
from core.periods import AnalyticsPeriod
from engine.authz import load_actor
from engine.commands import run_now
from reporting.analytics import Analytics, build_analytics
from store.workspace import Workspace
from tests.apptest_support import app_engine, open_app
from ui import analytics_cache
from ui.analytics_cache import analytics_view

UTC = dt.UTC
Q3 = AnalyticsPeriod(dt.datetime(2026, 7, 1, tzinfo=UTC), dt.datetime(2026, 10, 1, tzinfo=UTC),
                     "Q3 2026 (2026-07-01 to 2026-09-30)")


@pytest.fixture
def ws(demo_quarter_path: str, tmp_path: Path) -> Iterator[Workspace]:
    path = tmp_path / "ws.duckdb"
    shutil.copyfile(demo_quarter_path, path)
    w = Workspace(str(path))
    yield w
    w.close()


def at_instant(ws: Workspace, monkeypatch: pytest.MonkeyPatch, instant: dt.datetime) -> None:
    monkeypatch.setattr(ws, "now", lambda: instant)


def kyc_expected(view: analytics_cache.AnalyticsView) -> int:
    return next(c.expected for c in view.analytics.firing if c.definition_id == "kyc-weekly-review")


def test_views_with_nothing_new_share_one_computation(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    at_instant(ws, monkeypatch, dt.datetime(2026, 9, 30, 12, 0, 5, tzinfo=UTC))
    first = analytics_view(ws, Q3)
    at_instant(ws, monkeypatch, dt.datetime(2026, 9, 30, 12, 0, 55, tzinfo=UTC))  # the same minute
    assert analytics_view(ws, Q3) is first
    assert set(first.figures) == {"outcome-trend", "outcomes-by-automation", "firing", "failure-causes",
                                  "completion-time", "approvals"}


def test_a_committed_change_is_seen_on_the_next_view(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    noon = dt.datetime(2026, 9, 30, 12, 0, tzinfo=UTC)
    at_instant(ws, monkeypatch, noon)
    before = analytics_view(ws, Q3)
    from store.definitions import set_definition_enabled  # a change the firing check reads (audit log)

    at_instant(ws, monkeypatch, noon - dt.timedelta(hours=1))  # recorded as of 11:00, inside the period so far
    with ws.transaction() as tx:
        set_definition_enabled(tx, "kyc-weekly-review", False, "member:admin")
    at_instant(ws, monkeypatch, noon)  # the same minute as the first view: only the write can tell them apart
    after = analytics_view(ws, Q3)
    assert after is not before
    kyc = next(c for c in after.analytics.firing if c.definition_id == "kyc-weekly-review")
    assert any(s.end is None for s in kyc.disabled_spans)  # disabled since, as the record now says
    assert not any(s.end is None for s in next(
        c for c in before.analytics.firing if c.definition_id == "kyc-weekly-review").disabled_spans)


def test_time_passing_is_seen_without_any_write(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine that stopped firing changes nothing in the workspace: the expected fires must still grow."""
    monday_before_six = dt.datetime(2026, 9, 28, 5, 59, 30, tzinfo=UTC)  # kyc-weekly-review: "0 6 * * mon"
    at_instant(ws, monkeypatch, monday_before_six)
    before = analytics_view(ws, Q3)
    at_instant(ws, monkeypatch, monday_before_six + dt.timedelta(minutes=1))
    after = analytics_view(ws, Q3)
    assert kyc_expected(after) == kyc_expected(before) + 1
    for view, instant in ((before, monday_before_six), (after, monday_before_six + dt.timedelta(minutes=1))):
        fresh = build_analytics(ws, Q3, now=instant)
        assert [(c.definition_id, c.expected, c.actual) for c in view.analytics.firing] == \
            [(c.definition_id, c.expected, c.actual) for c in fresh.firing]
        assert view.analytics.per_definition.equals(fresh.per_definition)


def test_workspaces_never_share_an_entry(ws: Workspace, demo_quarter_path: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    other_path = tmp_path / "other.duckdb"
    shutil.copyfile(demo_quarter_path, other_path)
    other = Workspace(str(other_path))
    try:
        instant = dt.datetime(2026, 9, 30, 12, 0, tzinfo=UTC)
        at_instant(ws, monkeypatch, instant)
        at_instant(other, monkeypatch, instant)
        assert ws.change_marker() != other.change_marker()  # both at 0 commits, yet apart
        assert analytics_view(ws, Q3) is not analytics_view(other, Q3)
    finally:
        other.close()


def test_a_workspace_without_a_marker_is_never_cached(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ws, "change_marker", lambda: None)  # as where other processes write too
    at_instant(ws, monkeypatch, dt.datetime(2026, 9, 30, 12, 0, tzinfo=UTC))
    assert analytics_view(ws, Q3) is not analytics_view(ws, Q3)


def test_the_marker_moves_with_committed_writes_only(ws: Workspace) -> None:
    start = ws.change_marker()
    with ws.read() as conn:
        conn.exec_driver_sql("SELECT count(*) FROM runs").all()
    with ws.transaction() as tx:  # looked, found nothing to do (the engine's poll for due retries)
        tx.conn.exec_driver_sql("SELECT count(*) FROM run_items WHERE outcome = 'failed'").all()
    assert ws.change_marker() == start
    with pytest.raises(RuntimeError):
        with ws.transaction() as tx:
            tx.conn.exec_driver_sql("UPDATE definitions SET enabled = NOT enabled")
            raise RuntimeError("rolled back")
    assert ws.change_marker() == start
    marks = [start]
    with ws.transaction() as tx:  # a write with no audit entry of its own still counts
        tx.conn.exec_driver_sql("UPDATE definitions SET updated_at = updated_at")
    marks.append(ws.change_marker())
    with ws.transaction() as tx:  # so does anything through the native connection
        tx.raw.execute("SELECT 1").fetchall()
    marks.append(ws.change_marker())
    with ws.transaction() as tx:
        tx.audit("member:admin", "test.noted", "test", "1")
    marks.append(ws.change_marker())
    assert len(set(marks)) == 4


def test_the_page_shows_a_new_run_at_once(app_workspace: str,  # noqa: F811 - the fixture imported above
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The page as an auditor uses it: viewed, a run happens, viewed again — the run is counted, while a rerun
    with nothing new computes nothing."""
    calls: list[AnalyticsPeriod] = []
    real = analytics_cache.build_analytics

    def counted(ws: Workspace, period: AnalyticsPeriod, now: dt.datetime | None = None) -> Analytics:
        calls.append(period)
        return real(ws, period, now)

    monkeypatch.setattr(analytics_cache, "build_analytics", counted)
    today = dt.datetime.now(UTC).date()
    params = {"from": (today - dt.timedelta(days=7)).isoformat(), "to": (today + dt.timedelta(days=1)).isoformat()}
    at = open_app("sigrid", page=PAGES["analytics"][0], params=params)
    engine = app_engine()
    frozen = engine.ws.now()  # the minute stays put: only the run can make the page recompute
    monkeypatch.setattr(engine.ws, "now", lambda: frozen)
    at.run()
    runs_before = int(next(m.value for m in at.metric if m.label == "Runs").replace(",", ""))
    computed = len(calls)
    at.run()
    assert len(calls) == computed  # nothing new: the cached figures
    made = run_now(engine, load_actor(engine.ws, "sigrid"), "kyc-weekly-review")
    assert made
    at.run()
    assert not at.exception
    assert int(next(m.value for m in at.metric if m.label == "Runs").replace(",", "")) == runs_before + 1
    assert len(calls) == computed + 1
