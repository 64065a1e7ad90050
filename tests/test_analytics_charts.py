"""The Quarterly analytics page's Vega-Lite charts (ui/analytics_charts.py) say what the analytics say: every
item of the period once, each week's bar inside the period and stacked without gaps, each automation's stack
its items; a click's selection read back whatever form Streamlit hands it in."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest

from core.periods import AnalyticsPeriod
from reporting.analytics import Analytics, build_analytics
from store.workspace import Workspace
from ui import analytics_charts as ac

UTC = dt.UTC
Q3 = AnalyticsPeriod(dt.datetime(2026, 7, 1, tzinfo=UTC), dt.datetime(2026, 10, 1, tzinfo=UTC), "Q3 2026")


@pytest.fixture(scope="module")
def q3(demo_today_path: str) -> Analytics:
    ws = Workspace(demo_today_path, read_only=True)
    try:
        return build_analytics(ws, Q3, dt.datetime(2026, 12, 3, 12, tzinfo=UTC))
    finally:
        ws.close()


def _rows(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec["data"]["values"])


def test_the_weekly_chart_holds_every_item_once_inside_the_period(q3: Analytics) -> None:
    chart = ac.outcome_trend(q3)
    assert chart is not None
    rows = _rows(chart.to_dict())
    assert sum(r["items"] for r in rows) == int(q3.weekly_outcomes["items"].sum()) > 0
    start, end = Q3.start.timestamp() * 1000, Q3.end.timestamp() * 1000
    assert all(start <= r["from"] < r["to"] <= end for r in rows)
    for week in {r["week"] for r in rows}:  # each week's stack starts at 0 and has no gap
        stack = sorted((r["y0"], r["y1"]) for r in rows if r["week"] == week)
        assert stack[0][0] == 0 and all(a[1] == b[0] for a, b in zip(stack, stack[1:], strict=False))
    assert all(r["description"] == f"week of {r['week']}: {r['items']:,} items {r['outcome']}" for r in rows)


def test_each_automations_stack_is_its_items(q3: Analytics) -> None:
    chart = ac.outcomes_by_automation(q3)
    assert chart is not None
    rows = _rows(chart.to_dict())
    for d in q3.per_definition.iter_rows(named=True):
        mine = [r for r in rows if r["definition_id"] == d["definition_id"]]
        assert max(r["x1"] for r in mine) == sum(r["items"] for r in mine) == d["items"]


def test_a_period_without_items_draws_no_chart(demo_today_path: str) -> None:
    ws = Workspace(demo_today_path, read_only=True)
    try:
        empty = build_analytics(ws, AnalyticsPeriod(dt.datetime(2020, 1, 1, tzinfo=UTC),
                                                    dt.datetime(2020, 4, 1, tzinfo=UTC), "Q1 2020"))
    finally:
        ws.close()
    assert [build(empty) for build in ac.PAGE_CHARTS.values()] == [None, None, None]


def test_a_click_is_read_from_either_form_of_the_selection() -> None:
    pick = {"definition_id": "kyc-weekly-review", "outcome": "skipped"}
    assert ac.picked(SimpleNamespace(selection={ac.PICK: [pick]})) == pick
    assert ac.picked(SimpleNamespace(selection=SimpleNamespace(**{ac.PICK: [pick]}))) == pick
    assert ac.picked(SimpleNamespace(selection={ac.PICK: []})) is None
    assert ac.picked(None) is None
