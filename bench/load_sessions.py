"""The load generator of ``bench_load.py``: N sessions browsing the app at once, timed per interaction.

``--browsers K`` of them are real browser sessions (``load_browser``: one chromium, a context each); the
other N − K speak Streamlit's protocol (``load_protocol``). Both do the same thing (``load_flow``). All of
them run on one asyncio loop in this process, which ``bench_load.py`` starts on its own so it can nice it
and count its CPU (chromium's included) apart from the server's.

The coordinator talks through files in ``--control``: this process writes ``ready`` once every session
has signed in (or given up); reads ``fired`` (the big run has been asked for: the scout finds its id and
writes ``big_run``) and ``watch`` (the scout then writes ``done`` once the run has ended); stops at
``stop``; and writes ``result.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.load_flow import Flow, Shared  # noqa: E402
from bench.load_protocol import ProtocolFlow, scout  # noqa: E402
from bench.load_workspace import DEFINITION_ID  # noqa: E402


async def run_session(flow: Flow, shared: Shared, ready: list[int], total: int, stagger: float,
                      browser: Any = None) -> None:
    try:
        await asyncio.sleep(flow.n * stagger)  # members do not all arrive in the same instant
        if browser is not None:
            await flow.start(browser)  # type: ignore[attr-defined]
        try:
            signed = await flow.sign_in()
        finally:  # signed in or not: the coordinator must not wait for a session that gave up
            ready.append(flow.n)
            if len(ready) == total:
                (shared.control / "ready").write_text(json.dumps({"at": time.time()}))
        if signed:
            await flow.loop()
    finally:
        await flow.close()


async def watch_stop(shared: Shared) -> None:
    while not (shared.control / "stop").exists():
        await asyncio.sleep(0.2)
    shared.stop.set()


async def main_async(a: argparse.Namespace) -> dict[str, Any]:
    shared = Shared(Path(a.control), a.timeout)
    ready: list[int] = []
    watcher = asyncio.create_task(watch_stop(shared))
    flows: list[Flow] = [ProtocolFlow(n, a.url, shared, a.think, a.seed) for n in range(a.browsers, a.sessions)]
    tasks = [asyncio.create_task(run_session(f, shared, ready, a.sessions, a.stagger)) for f in flows]
    if a.scout:
        tasks.append(asyncio.create_task(scout(a.url, shared, DEFINITION_ID, eager=a.sessions > 0)))
    if not a.sessions:
        (shared.control / "ready").write_text(json.dumps({"at": time.time()}))
    browser_count = min(a.browsers, a.sessions)
    if browser_count:
        from playwright.async_api import async_playwright

        from bench.load_browser import BrowserFlow
        from tests.browser.support import CHROMIUM, CHROMIUM_FLAGS

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            tasks += [asyncio.create_task(run_session(BrowserFlow(n, a.url, shared, a.think, a.seed), shared,
                                                      ready, a.sessions, a.stagger, browser))
                      for n in range(browser_count)]
            results = await asyncio.gather(*tasks, return_exceptions=True)
            await browser.close()
    else:
        results = await asyncio.gather(*tasks, return_exceptions=True)
    watcher.cancel()
    crashed = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    return {"samples": [asdict(s) for s in shared.samples], "page_errors": shared.page_errors,
            "session_crashes": crashed, "big_run": shared.big_run}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--control", required=True, help="folder of ready/fired/stop files and result.json")
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--browsers", type=int, default=0, help="how many of the sessions are real browsers")
    p.add_argument("--think", type=float, default=2.0, help="mean pause between interactions, seconds")
    p.add_argument("--timeout", type=float, default=30.0, help="an interaction slower than this is an error")
    p.add_argument("--stagger", type=float, default=0.25, help="seconds between sessions' arrivals")
    p.add_argument("--scout", action="store_true",
                   help="find the big run's id once it is fired (with no sessions: once asked), and watch it "
                   "until it has ended when asked")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    result = asyncio.run(main_async(a))
    (Path(a.control) / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
