"""Dashboard store time at scale: p50/p95 of the store calls behind each page, the app's peak RSS while
serving them, and a warm browser load of the Runs page.

    .venv/bin/python bench/make_big_workspace.py --out /tmp/big.duckdb      # once, ~2 min, ~3.4 GB
    .venv/bin/python bench/bench_dashboard.py --db /tmp/big.duckdb [--browser]
    .venv/bin/python bench/bench_dashboard.py --db postgresql+psycopg://…    # bench/make_big_pg_workspace.py

Store calls are the very functions the pages call, timed in this process on a read-only copy of the
workload (nothing is written). ``--browser`` also starts ``streamlit run`` on the workspace (engine not
live, so the benchmark writes nothing), signs in with playwright and times warm loads of the Runs page
until its grid shows, then reads the server's peak RSS.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.load_report import peak_rss_mb  # noqa: E402


def describe_workspace(ws: Any) -> str:
    """Where the workspace is and how big: a DuckDB file's size, or the PostgreSQL database's."""
    if ws.is_duckdb:
        return f"{ws.shown} ({os.path.getsize(ws.path) / 2**30:.1f} GiB)"
    with ws.read() as conn:
        size, version = conn.exec_driver_sql(
            "SELECT pg_database_size(current_database()), current_setting('server_version')").one()
    return f"{ws.shown} (PostgreSQL {version}, {size / 2**30:.1f} GiB)"


def timed(fn: Callable[[], Any], repeat: int) -> dict[str, float]:
    fn()  # warm: the first call pays for plan caches and the buffer pool
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return {"p50_ms": statistics.median(samples), "p95_ms": samples[max(0, int(len(samples) * 0.95) - 1)],
            "max_ms": samples[-1]}


def store_cases(ws: Any) -> list[tuple[str, Callable[[], Any]]]:
    """(label, call) for each page's store work; imported late so a missing function names itself."""
    from bench.dashboard_cases import cases
    return cases(ws)


def browser_load(db: str, loads: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    from tests.browser.support import CHROMIUM, CHROMIUM_FLAGS, AppServer, sign_in

    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    server = AppServer(Path(db), tmp / "bench-dashboard-streamlit.log", env={"RUNLEDGER_ENGINE_LIVE": "0"})
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(60_000)
            sign_in(page, server, "sigrid")
            samples = []
            for _ in range(loads):
                t = time.perf_counter()
                page.goto(f"{server.url}/runs")
                page.locator('[role="gridcell"]').first.wait_for(state="attached")
                samples.append(time.perf_counter() - t)
            browser.close()
        rss = peak_rss_mb(server.proc.pid)
    finally:
        server.stop()
    return {"first_s": samples[0], "warm_p50_s": statistics.median(samples[1:]), "warm_max_s": max(samples[1:]),
            "server_peak_rss_mb": rss}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True)
    p.add_argument("--repeat", type=int, default=40)
    p.add_argument("--browser", action="store_true")
    p.add_argument("--loads", type=int, default=6)
    a = p.parse_args()
    from store.workspace import Workspace

    ws = Workspace(a.db, read_only=True)
    print(f"Date {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, workspace {describe_workspace(ws)}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| store call | p50 ms | p95 ms | max ms |\n|---|---:|---:|---:|")
    for label, fn in store_cases(ws):
        r = timed(fn, a.repeat)
        print(f"| {label} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['max_ms']:.1f} |", flush=True)
    print(f"Load average after: {os.getloadavg()[0]:.1f}")
    print(f"\nPeak RSS of this process (store calls): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    ws.close()
    if a.browser:
        print(browser_load(a.db, a.loads))


if __name__ == "__main__":
    main()
