"""Analytics at scale: the analytics page's store time for a quarter and for all time on the 1 M-run /
20 M-item workspace, a warm chart export, and the audit committee brief for the demo quarter.

    .venv/bin/python bench/make_big_workspace.py --out /tmp/big.duckdb      # once, ~2 min, ~3.4 GB
    .venv/bin/python bench/bench_analytics.py --db /tmp/big.duckdb [--demo /tmp/demo.duckdb]
    .venv/bin/python bench/bench_analytics.py --db postgresql+psycopg://…    # bench/make_big_pg_workspace.py

Store time is the page's store calls exactly as ``build_analytics`` makes them (one read transaction);
"page build" adds the Polars shaping and the expected-firing check, i.e. everything the page computes
before it draws. Nothing is written to the big workspace (opened read-only). ``--demo`` times the brief
for the demo quarter on a copy of a seeded demo workspace (``python -m engine --db X demo``), in a fresh
process so the figure includes starting the chart export server (cold) — the brief is audited, hence the copy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_dashboard import describe_workspace, timed  # noqa: E402

UTC = dt.UTC


def store_calls(ws: Any, period: Any) -> None:
    """The store half of ``build_analytics``: the same queries in one read transaction."""
    from store.definitions import read_definitions
    from store.views import analytics as q
    from store.views.failures import read_failure_account

    f = q.AnalyticsFilter(period.start, period.end, period.definitions)
    with ws.read() as conn:
        ids = tuple(d["definition_id"] for d in read_definitions(conn))
        q.count_runs_and_items_by_week(conn, f)
        q.count_failures_by_cause(conn, f)
        q.count_runs_by_completion_bucket(conn, f)
        q.summarize_completion_times(conn, f)
        q.summarize_approvals(conn, f, dt.datetime.now(UTC))
        q.count_trigger_events(conn, f)
        q.read_version_history(conn, ids)
        q.read_enablement_changes(conn, ids)
        read_failure_account(conn, f)  # the integrity statement's account (issue 15), read by the page too


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True)
    p.add_argument("--demo", help="a seeded demo workspace, to time the brief for its quarter")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--no-charts", action="store_true", help="only the store time and the page build")
    a = p.parse_args()
    from core.periods import AnalyticsPeriod
    from reporting.analytics import build_analytics
    from store.views.analytics import read_run_time_range
    from store.workspace import Workspace

    ws = Workspace(a.db, read_only=True)
    with ws.read() as conn:
        first, last = read_run_time_range(conn)
    assert first and last, "the workspace has no runs"
    quarter = AnalyticsPeriod(dt.datetime(2026, 7, 1, tzinfo=UTC), dt.datetime(2026, 10, 1, tzinfo=UTC), "Q3 2026")
    all_time = AnalyticsPeriod(first, last + dt.timedelta(seconds=1), "all time")
    print(f"Date {dt.datetime.now(UTC):%Y-%m-%d %H:%M} UTC, workspace {describe_workspace(ws)}, "
          f"runs {first:%Y-%m-%d} … {last:%Y-%m-%d}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print("| analytics | p50 ms | p95 ms | max ms | target p95 |\n|---|---:|---:|---:|---:|")
    for label, period, target in (("a quarter", quarter, 150), ("all time", all_time, 500)):
        r = timed(lambda period=period: store_calls(ws, period), a.repeat)
        print(f"| store time, {label} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['max_ms']:.0f} | ≤ {target} |")
        r = timed(lambda period=period: build_analytics(ws, period), a.repeat)
        print(f"| page build (store + shaping), {label} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | "
              f"{r['max_ms']:.0f} | |", flush=True)
    print(f"Load average after: {os.getloadavg()[0]:.1f}")
    analytics = build_analytics(ws, quarter)
    print(f"\nQuarter figures: {analytics.totals}")
    if a.no_charts:
        ws.close()
        return

    from reporting.charts import CHARTS
    from reporting.exports import render_chart
    from reporting.provenance import Provenance

    prov = Provenance(a.db, quarter.label, generated_by="bench", chain_head="0" * 64)
    t = time.perf_counter()
    render_chart(CHARTS["outcome-trend"][1](analytics), "png", prov, "cold")
    cold = time.perf_counter() - t
    print("\n| chart export | format | p50 ms | p95 ms | max ms |\n|---|---|---:|---:|---:|")
    print(f"| outcome-trend (cold: starts the export server) | png | {cold * 1000:.0f} | | |")
    for name in ("outcome-trend", "failure-causes"):
        for fmt in ("png", "svg", "pdf"):
            fig = CHARTS[name][1](analytics)
            r = timed(lambda fig=fig, fmt=fmt, name=name: render_chart(fig, fmt, prov, name), 8)
            print(f"| {name} (warm) | {fmt} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['max_ms']:.0f} |")
    print(f"\nPeak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    ws.close()
    if a.demo:
        brief(a.demo)


def brief(demo: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "demo.duckdb"
        shutil.copyfile(demo, copy)
        out = Path(tmp) / "brief.pdf"
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "engine", "--db", str(copy), "brief", "--from", "2026-07-01",
                        "--to", "2026-09-30", "--out", str(out), "--as", "sigrid"], cwd=ROOT, check=True)
        took = time.perf_counter() - t
        print(f"\nBrief for the demo quarter (a fresh process: imports, cold export server, analytics, "
              f"integrity, charts, PDF): {took:.1f} s, {out.stat().st_size / 1024:.0f} KiB (target ≤ 15 s)")


if __name__ == "__main__":
    main()
