"""Pages in Chromium: how long each page of the app takes to draw, from navigation to its own content.

Run by hand (not part of pytest)::

    .venv/bin/python bench/bench_pages.py --repeat 10
    .venv/bin/python bench/bench_pages.py --repeat 10 --db /tmp/demo.duckdb   # copy this demo workspace
    .venv/bin/python bench/bench_pages.py --repeat 10 --against /tmp/before   # A/B: another checkout, in turn

``streamlit run app.py`` (``tests.browser.conftest.AppServer``, the live engine inside it, as shipped) serves
a private copy of the demo workspace (``--db``, or one built with ``python -m engine demo``), and Debian's
chromium (playwright, never a downloaded browser) opens:

- **Sign-in**: a new visitor (a fresh browser context: no cookie, nothing cached) opens the app's root;
  drawn = the sign-in form. Every round has its own new visitor.
- **Sign in**: that visitor submits the form as ``sigrid``; drawn = the Runs page with its table.
- then each page **by URL**, in one signed-in browser context (the first round's visitor; a full navigation
  each time: a new Streamlit session that resumes the sign-in from its cookie): Runs, a Run, a Run item,
  Failed items, Approvals, Automations, Quarterly analytics (its charts drawn) and straight back to it,
  Records, Audit log, Members. ``--cold-browser`` views them in each round's new visitor instead (nothing in
  the browser's caches: what someone opening the app in a new browser profile waits for).

"Drawn" is what a member sees, so it is never the load event (Streamlit renders after it): the script has
stopped running (``stApp``'s ``data-test-script-state`` is ``notRunning``: no "running" indicator), the page's
own heading is shown, and the page's own content is there — its table's cells (``st.dataframe`` draws on a
canvas whose cells are mirrored as ``[role=gridcell]``), its charts' SVG, its last element. The time is
chromium's own clock, ``performance.now()`` at the first animation frame where all of that holds, which
counts from the start of the navigation.

**first** is a view's first on a fresh server (the first sign-in form of the process; each page's first view,
in a browser that has not loaded it before); **p50 / p95 / max** are over ``--repeat`` later views (``--servers``
> 1: first is the median of that many fresh servers' first views, and the later views of all of them pool).
The server's own part (its script runs that fell inside the view, measured by ``bench/page_timing``) is
printed beside it. Each round's sign-in is a write (its audit entry), so each round's first Quarterly
analytics view computes its figures afresh, and the view straight after it finds them cached.

On a shared machine, compare with ``--against`` (e.g. ``git worktree add /tmp/before main``): each checkout
gets its own server and browsers, and their views alternate, so a busy moment costs both alike.

Nothing is appended anywhere: paste the printed table into ``bench/RESULTS.md`` with the conditions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.load_report import machine, percentile  # noqa: E402 - importable only after the path insert
from bench.load_workspace import copy_workspace  # noqa: E402 - likewise
from core.links import Link, item_link, run_link  # noqa: E402 - likewise
from tests.browser.conftest import CHROMIUM, CHROMIUM_FLAGS, AppServer  # noqa: E402 - likewise

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")  # Debian's chromium; never a download
MEMBER = "sigrid"
TIMEOUT_MS = 90_000
# A traceback on the page. (Not every red alert: an approval waiting past its due time is flagged in red.)
PROBLEMS = '[data-testid="stException"]'

# True (and chromium's clock) once the page is drawn: the script stopped, the heading shown, every text
# present, every chart on it drawn (Plotly's SVG or Vega-Lite's canvas there; at least as many as asked), and at least n
# elements matching each selector (whose text contains the given text, if any).
DRAWN = """(spec) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  const main = document.querySelector('[data-testid="stMain"]');
  if (!main) return false;
  if (![...main.querySelectorAll('h1')].some(h => h.textContent.trim() === spec.heading)) return false;
  const text = main.innerText;
  if (!spec.texts.every(t => text.includes(t))) return false;
  if (spec.any_text.length && !spec.any_text.some(t => text.includes(t))) return false;
  const charts = [...main.querySelectorAll('[data-testid="stPlotlyChart"], [data-testid="stVegaLiteChart"]')];
  const drawn = charts.filter(c => c.querySelector('.main-svg, canvas, svg.marks'));
  if (drawn.length < spec.charts || drawn.length < charts.length) return false;
  for (const [sel, n, has] of spec.selectors) {
    const found = [...main.querySelectorAll(sel)].filter(e => !has || e.textContent.includes(has));
    if (found.length < n) return false;
  }
  return performance.now();
}"""

SEEN = """() => ({state: document.querySelector('[data-testid="stApp"]')?.getAttribute('data-test-script-state'),
  headings: [...document.querySelectorAll('[data-testid="stMain"] h1')].map(h => h.textContent.trim()),
  text: (document.querySelector('[data-testid="stMain"]')?.innerText || '').slice(0, 400)})"""


@dataclass(frozen=True)
class PageSpec:
    """One page: where it is, and what of it must be drawn."""

    label: str
    path: str  # relative to the app's root, e.g. "run?id=RUN-000007"
    heading: str
    texts: tuple[str, ...] = ()  # every one must be shown
    any_text: tuple[str, ...] = ()  # one of them must be shown (a page whose content depends on the data)
    selectors: tuple[tuple[str, int, str], ...] = ()  # (css, at least n, whose text contains)
    charts: int = 0  # charts drawn (Plotly or Vega-Lite)


    def as_js(self) -> dict[str, Any]:
        return {"heading": self.heading, "texts": list(self.texts), "any_text": list(self.any_text),
                "charts": self.charts, "selectors": [list(s) for s in self.selectors]}


GRID = '[role="gridcell"]'
SIGN_IN = PageSpec("Sign-in", "", "Runledger", texts=("Member", "Password"),
                   selectors=(("button", 1, "Sign in"), ('input[type="password"]', 1, "")))


def _href(link: Link) -> str:
    return link.href.removeprefix("./")


def signed_in_pages(run_id: str, item_id: str) -> list[PageSpec]:
    """Every page of the navigation (and a run and an item, reached by link), each with its own content."""
    return [
        PageSpec("Runs", "", "Runs", selectors=((GRID, 1, "run?id="),)),
        PageSpec("Run", _href(run_link(run_id)), f"Run {run_id}", texts=("Action breakdown",
                                                                         "This run's audit entries"),
                 selectors=((GRID, 1, "item?id="),), charts=1),
        PageSpec("Run item", _href(item_link(item_id)), f"Item {item_id}", texts=("Attempts", "Audit entries",
                                                                                   "Open in the audit log"),
                 selectors=((GRID, 1, ""),)),
        PageSpec("Failed items", "failed_items", "Failed items",
                 any_text=("No failed items in this view", "By cause and definition")),
        PageSpec("Approvals", "approvals", "Approvals", texts=("Recent decisions",)),
        PageSpec("Automations", "automations", "Automations", selectors=((GRID, 1, "automations?id="),)),
        # Every chart it shows on arrival drawn (two to drill from, and one of the four more), the per-automation
        # table's cells (links to Runs) and the brief's button: all of it.
        PageSpec("Quarterly analytics", "analytics", "Quarterly analytics",
                 texts=("Per automation", "Expected against actual firing", "Audit committee brief"),
                 selectors=((GRID, 1, "period="), ("button", 1, "Generate the brief")), charts=2),
        # Straight back to it with nothing new in the workspace: its figures come from the cache.
        PageSpec("Quarterly analytics, again", "analytics", "Quarterly analytics",
                 texts=("Per automation", "Expected against actual firing", "Audit committee brief"),
                 selectors=((GRID, 1, "period="), ("button", 1, "Generate the brief")), charts=2),
        PageSpec("Records", "records", "Records", selectors=((GRID, 1, "records?"),)),
        PageSpec("Audit log", "audit_log", "Audit log", selectors=((GRID, 1, "seq="),)),
        PageSpec("Members", "members", "Members", texts=("What each role may do",), selectors=((GRID, 1, MEMBER),)),
    ]


def pick_run_and_item(ws: Path) -> tuple[str, str]:
    """The demo's largest run (the most items to list and chart) and its item with the most attempts — read
    before the server starts: DuckDB admits one process per file."""
    import sqlalchemy as sa

    from store.workspace import Workspace

    w = Workspace(str(ws))
    try:
        with w.read() as conn:
            run_id = conn.execute(sa.text(
                "SELECT run_id FROM runs ORDER BY subjects_matched DESC, run_id LIMIT 1")).scalar_one()
            item_id = conn.execute(sa.text(
                "SELECT i.item_id FROM run_items i LEFT JOIN item_attempts a ON a.item_id = i.item_id "
                "WHERE i.run_id = :r GROUP BY i.item_id ORDER BY count(a.item_id) DESC, i.item_id LIMIT 1"),
                {"r": run_id}).scalar_one()
    finally:
        w.close()
    return str(run_id), str(item_id)


# --- one server -----------------------------------------------------------------------------------------
@dataclass
class View:
    label: str
    first: bool
    drawn_s: float  # chromium's clock: navigation start → drawn
    wall_s: float  # this process's clock around the same (playwright's round trips included)
    server_s: float = 0.0  # the server's script runs inside the view
    start: float = 0.0
    end: float = 0.0


def _wait_drawn(page: Any, spec: PageSpec) -> float:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        handle = page.wait_for_function(DRAWN, arg=spec.as_js(), polling="raf", timeout=TIMEOUT_MS)
    except PlaywrightTimeout:
        seen = page.evaluate(SEEN)
        raise RuntimeError(f"{spec.label} ({page.url}) not drawn in {TIMEOUT_MS / 1000:.0f} s; the page shows "
                           f"{seen}") from None
    problems = page.locator(PROBLEMS)
    if problems.count():
        raise RuntimeError(f"{spec.label}: {' | '.join(problems.all_inner_texts())[:600]}")
    return float(handle.json_value()) / 1000


def _navigate(page: Any, url: str, spec: PageSpec, first: bool) -> View:
    start = time.time()
    page.goto(f"{url}/{spec.path}", wait_until="commit")
    drawn = _wait_drawn(page, spec)
    end = time.time()
    return View(spec.label, first, drawn, end - start, start=start, end=end)


def _sign_in(page: Any, runs: PageSpec, first: bool) -> View:
    """Submit the form already drawn; drawn = the Runs page (same document: chromium's clock from the click)."""
    page.get_by_label("Member", exact=True).fill(MEMBER)
    page.get_by_label("Password", exact=True).fill(MEMBER)
    start = time.time()
    clicked = float(page.evaluate("performance.now()")) / 1000
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(f"Signed in as {MEMBER}").wait_for(timeout=TIMEOUT_MS)
    drawn = _wait_drawn(page, runs)
    end = time.time()
    return View("Sign in (submit → Runs drawn)", first, drawn - clicked, end - start, start=start, end=end)


def _context(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    context.new_page().set_default_timeout(TIMEOUT_MS)
    return context


class Target:
    """One checkout of the app on a fresh server over a fresh copy of the workspace, with its own browsers:
    a new visitor each round, and the signed-in context that views the pages."""

    def __init__(self, root: Path, base: Path, tmp: Path, tag: str, env: dict[str, str], browser: Any,
                 cold_browser: bool) -> None:
        self.root, self.browser, self.cold_browser = root, browser, cold_browser
        ws = tmp / f"ws-{tag}.duckdb"
        copy_workspace(base, ws)
        self.pages = signed_in_pages(*pick_run_and_item(ws))
        self.runs_log = tmp / f"script-runs-{tag}.jsonl"
        self.runs_log.unlink(missing_ok=True)
        self.server = AppServer(ws, tmp / f"streamlit-{tag}.log", root=root, env={
            "RUNLEDGER_BENCH_SCRIPT_RUNS": str(self.runs_log),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "bench" / "page_timing"), os.environ.get("PYTHONPATH", "")]),
            **env})
        self.views: list[View] = []
        self.member: Any = None
        self.rss_mb = 0.0

    def visit(self, first: bool) -> None:
        """A new visitor: the sign-in form, then signing in (the first visitor goes on to view the pages)."""
        visitor = _context(self.browser)
        try:
            self.views.append(_navigate(visitor.pages[0], self.server.url, SIGN_IN, first))
            self.views.append(_sign_in(visitor.pages[0], self.pages[0], first))
            if self.member is None or self.cold_browser:
                if self.member is not None:
                    self.member.close()
                self.member, visitor = visitor, None
        finally:
            if visitor is not None:
                visitor.close()

    def view(self, spec: PageSpec, first: bool) -> View:
        self.views.append(_navigate(self.member.pages[0], self.server.url, spec, first))
        return self.views[-1]

    def close(self) -> None:
        from bench.load_report import peak_rss_mb

        try:
            self.rss_mb = peak_rss_mb(self.server.proc.pid)
            if self.member is not None:
                self.member.close()
        finally:
            self.server.stop()
        log = self.runs_log
        runs = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        for v in self.views:
            v.server_s = sum(r["end"] - r["start"] for r in runs if r["start"] >= v.start and r["end"] <= v.end)


def run_servers(roots: list[Path], base: Path, tmp: Path, n: int, repeat: int, env: dict[str, str], browser: Any,
                cold_browser: bool, only: tuple[str, ...] = ()) -> list[Target]:
    """Fresh servers, one per checkout, viewed in turn — the order alternating view by view, so that a busy
    moment of a shared machine falls on both alike: the first views, then ``repeat`` rounds of every view."""
    targets: list[Target] = []
    try:
        for i, root in enumerate(roots):
            targets.append(Target(root, base, tmp, f"{n}-{i}", env, browser, cold_browser))
        for r in range(repeat + 1):
            first = r == 0
            order = targets if r % 2 == 0 else targets[::-1]
            for t in order:
                t.visit(first)
            chosen = [p for p in targets[0].pages if not only or any(o.lower() in p.label.lower() for o in only)]
            for i, spec in enumerate(chosen):
                for t in (order if i % 2 == 0 else order[::-1]):
                    t.view(spec, first)
            for t in targets:
                print(f"{t.root.name} server {n}, round {r}: " + ", ".join(
                    f"{v.label.split(' (')[0]} {v.drawn_s:.2f}" for v in t.views[-len(chosen) - 2:]), file=sys.stderr)
    finally:
        for t in targets:
            t.close()
    return targets


# --- the report -----------------------------------------------------------------------------------------
def table(targets: list[Target]) -> str:
    """One checkout's views (of every server it had), page by page."""
    views = [v for t in targets for v in t.views]
    lines = ["| page | first s | p50 s | p95 s | max s | server p50 s | n |", "|---|---:|---:|---:|---:|---:|---:|"]
    for label in dict.fromkeys(v.label for v in views):
        firsts = [v.drawn_s for v in views if v.label == label and v.first]
        warm = sorted(v.drawn_s for v in views if v.label == label and not v.first)
        server = sorted(v.server_s for v in views if v.label == label and not v.first)
        first = statistics.median(firsts) if firsts else float("nan")
        lines.append(f"| {label} | {first:.2f} | {percentile(warm, .5):.2f} | {percentile(warm, .95):.2f} | "
                     f"{(warm[-1] if warm else float('nan')):.2f} | {percentile(server, .5):.2f} | {len(warm)} |")
    return "\n".join(lines)


def _describe(root: Path) -> str:
    out = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%h %s"], capture_output=True, text=True,
                         check=False)  # not a checkout: said so below
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    changes = " (with uncommitted changes)" if dirty else ""
    return f"{root} at {out.stdout.strip()[:90] or '(not a git checkout)'}{changes}"


def build_demo(path: Path) -> None:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "engine", "--db", str(path), "demo"], cwd=ROOT, check=True,
                   capture_output=True, text=True)
    print(f"demo workspace built in {time.perf_counter() - t:.0f} s", file=sys.stderr)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=10, help="warm views of every page after the first (default 10)")
    p.add_argument("--servers", type=int, default=1, help="fresh servers, each with its own first views")
    p.add_argument("--db", help="a demo workspace to copy (default: build one with `python -m engine demo`)")
    p.add_argument("--server-env", nargs="*", default=[], metavar="KEY=VALUE",
                   help="experiments only: environment of the app's server (printed with the results)")
    p.add_argument("--cold-browser", action="store_true",
                   help="view the pages in each round's new visitor context (nothing cached in the browser) "
                   "instead of in one signed-in context")
    p.add_argument("--against", nargs="*", default=[], metavar="CHECKOUT",
                   help="other checkouts of the app (e.g. a worktree of main), each on its own server, viewed in "
                   "turn with this one: before/after on the same machine at the same moments")
    p.add_argument("--pages", nargs="*", default=[], metavar="TEXT",
                   help="only the pages whose label contains one of these (the sign-in is always measured)")
    p.add_argument("--keep", help="keep workspaces and logs in this folder (default: a temporary one)")
    a = p.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = Path(a.keep or tempfile.mkdtemp(prefix="runledger-pages-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        base = tmp / "base.duckdb"
        if a.db:
            copy_workspace(Path(a.db), base)
        else:
            build_demo(base)
        load_before = os.getloadavg()
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        roots = [ROOT, *(Path(x).resolve() for x in a.against)]
        env = dict(kv.split("=", 1) for kv in a.server_env)
        by_root: dict[Path, list[Target]] = {r: [] for r in roots}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
            try:
                for n in range(a.servers):
                    for t in run_servers(roots, base, tmp, n, a.repeat, env, browser, a.cold_browser, tuple(a.pages)):
                        by_root[t.root].append(t)
            finally:
                browser.close()
        load_after = os.getloadavg()
        print(f"`.venv/bin/python bench/bench_pages.py {' '.join(sys.argv[1:])}`\n")
        print(f"Date: {started}  Machine: {machine()}")
        print(f"Load average (1, 5, 15 min) before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
              f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}; {a.servers} server(s) per "
              f"checkout × {a.repeat} later views"
              f"{' (pages in a new browser context each round)' if a.cold_browser else ''}"
              f"; server environment {' '.join(a.server_env) or 'as shipped'}"
              f"{'; checkouts interleaved view by view' if len(roots) > 1 else ''}.")
        for root, targets in by_root.items():
            print(f"\n{_describe(root)}; server peak RSS {max(t.rss_mb for t in targets):.0f} MB\n")
            print(table(targets))
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
