"""Every page, as drawn at 1440 × 1000 with the sidebar open: no table hides columns past its right edge
(the officer scrolled the Runs table sideways to find when a run completed), and no metric's label is cut
("Needing attenti…" on Quarterly analytics). Measured in the page itself — a table's scroll area as wide as
its content, a label's text as wide as its box — on the demo as ``make run`` leaves it, whose current
quarter holds a run with failures (the widest status, the failure tables, the retry plan)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from tests.browser.support import AppServer, screenshot, sign_in


@pytest.fixture(scope="module")
def today(demo_today_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppServer, str, str]]:
    """A server on a copy of the demo as of 2026-12-03, the run left with failures, and one of its items."""
    tmp = tmp_path_factory.mktemp("layout")
    ws = tmp / "ws.duckdb"
    shutil.copyfile(demo_today_path, ws)
    if Path(demo_today_path + ".wal").exists():
        shutil.copyfile(demo_today_path + ".wal", str(ws) + ".wal")
    with duckdb.connect(str(ws), read_only=True) as conn:
        run_id, item_id = conn.execute(
            "SELECT r.run_id, min(i.item_id) FROM runs r JOIN run_items i USING (run_id) "
            "WHERE r.status = 'completed-with-failures' AND i.outcome = 'failed' GROUP BY r.run_id").fetchone()
    server = AppServer(ws, tmp / "streamlit.log")
    yield server, run_id, item_id
    server.stop()


# Each page, the tables it shows once drawn (some after an expander is opened), and that expander.
def _pages(run_id: str, item_id: str) -> list[tuple[str, int, str | None]]:
    return [
        ("?period=quarter&quarter=2026-Q4", 1, None),  # Runs, with "⚠ completed-with-failures"
        (f"run?id={run_id}", 4, "Retry failed items"),
        (f"item?id={item_id}", 3, None),
        ("failed_items?period=all", 2, None),
        ("approvals", 1, "Recent decisions"),
        ("automations?id=kyc-weekly-review", 2, None),
        ("analytics?quarter=2026-Q3", 3, None),
        ("analytics?quarter=2026-Q4", 3, None),
        ("registers", 1, None),
        ("records", 1, None),
        ("audit_log", 1, None),
        ("members", 2, None),
        ("subject?kind=accounts&id=ACC-10060", 1, None),
    ]


_MEASURE = """() => {
  const main = document.querySelector('[data-testid="stMain"]');
  const cut = [], wide = [];
  for (const label of main.querySelectorAll('[data-testid="stMetricLabel"]')) {
    if ([label, ...label.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1)) cut.push(label.innerText);
  }
  // tables in a closed expander are not drawn until it opens; the ones in view are measured
  const tables = [...main.querySelectorAll('[data-testid="stDataFrame"]')]
    .filter(t => t.checkVisibility() && !t.closest('details:not([open])') && t.getBoundingClientRect().height > 0);
  for (const t of tables) {
    const s = t.querySelector('.dvn-scroller');
    if (s && s.clientWidth > 0 && s.scrollWidth > s.clientWidth + 1) {
      const header = [...t.querySelectorAll('[role="columnheader"]')].map(h => h.innerText).join(' | ');
      wide.push(`${header}: ${s.scrollWidth} px of content in ${s.clientWidth}`);
    }
  }
  const drawn = tables.filter(t => t.querySelector('.dvn-scroller')).length;
  return {cut, wide, tables: tables.length, drawn};
}"""


def _measured(page, tables: int) -> dict:  # noqa: ANN001
    """The page's measure once its ``tables`` are drawn and two readings 300 ms apart agree (a table is
    drawn, then sized)."""
    last: dict | None = None
    for _ in range(200):
        now = page.evaluate(_MEASURE)
        if now["tables"] >= tables and now["drawn"] == now["tables"] and now == last:
            return now
        last = now
        page.wait_for_timeout(300)
    raise AssertionError(f"{page.url} did not draw its {tables} tables: {json.dumps(last)}")


def test_no_page_cuts_a_column_or_a_metric_label(today: tuple[AppServer, str, str], page) -> None:  # noqa: ANN001
    server, run_id, item_id = today
    sign_in(page, server, "sigrid")
    problems = []
    for path, tables, expander in _pages(run_id, item_id):
        page.goto(f"{server.url}/{path}")
        main = page.locator('[data-testid="stMain"]')
        main.locator("h1").first.wait_for()
        if expander:
            main.get_by_text(expander).first.click()
        got = _measured(page, tables)
        problems += [f"{path}: table {w}" for w in got["wide"]]
        problems += [f"{path}: metric label {c!r} cut" for c in got["cut"]]
        if path.startswith("?"):
            screenshot(page, "layout-runs")
    assert not problems, "\n".join(problems)
