"""What every load-benchmark session does, whatever drives it (a real browser or Streamlit's protocol).

A session signs in as a demo member, then loops until told to stop: open Runs (the sidebar), next page,
open a run (by its URL, as a run link opens in a new tab), open one of its items (by URL), back. The run is
one the session sees on the Runs page — or, once the big run exists, that run, half of the time, while it
executes (its page then refreshes its figures every 2 s, as a member watching it sees them). The item is
one the run's page lists. Between two interactions the member reads for ``--think`` seconds (±50%).

Each interaction is timed from the action to the page's content rendered and checked: an exception box,
an error alert (other than a run's own "Run-level failure" fact), a page the app did not expect or a
timeout counts as an error. ``load_browser`` and ``load_protocol`` say what "rendered" means for each.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

MEMBERS = ("sigrid", "auditor", "admin", "viewer")
EXPECTED_ALERTS = ("Run-level failure",)  # a demo run that failed as a whole says so: that is content
BIG = "the 100k run"


class InteractionFailed(Exception):
    """The page did not come as expected (the message says how); the interaction is an error."""


@dataclass
class Sample:
    """One timed interaction; ``error`` is empty when it rendered cleanly."""

    session: int
    client: str  # "browser" or "protocol"
    kind: str
    start: float
    end: float
    error: str = ""
    target: str = ""  # BIG when it was on the big run


@dataclass
class Shared:
    """What the sessions share: samples, the big run's id once the scout has seen it, the stop flag."""

    control: Path
    timeout: float
    samples: list[Sample] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    big_run: str | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)


class Flow:
    """The member's loop; a driver subclass supplies the interactions and what is on the page."""

    client = "?"
    failures: tuple[type[BaseException], ...] = (InteractionFailed, asyncio.TimeoutError)

    def __init__(self, n: int, url: str, shared: Shared, think: float, seed: int) -> None:
        self.n, self.url, self.shared, self.think_s = n, url, shared, think
        self.member = MEMBERS[n % len(MEMBERS)]
        self.rng = random.Random(seed * 1000 + n)

    # --- supplied by a driver ---------------------------------------------------------------------------
    async def first_load(self) -> None: ...
    async def submit_sign_in(self) -> None: ...
    async def open_runs(self) -> None: ...
    async def next_page(self) -> None: ...
    async def open_run(self, run_id: str) -> None: ...
    async def open_item(self, item_id: str) -> None: ...
    async def back(self, run_id: str) -> None: ...
    async def ids_on_page(self, prefix: str) -> list[str]: ...  # "run?id=" or "item?id=" links shown
    async def problems(self) -> str: ...  # errors shown on the page, "" when none
    async def recover(self) -> None: ...  # after a failure: a fresh load of the app (not timed)
    async def close(self) -> None: ...

    # --- the loop -----------------------------------------------------------------------------------------
    async def timed(self, kind: str, action: Callable[[], Awaitable[None]], target: str = "") -> bool:
        t0 = time.time()
        error = ""
        try:
            await asyncio.wait_for(action(), self.shared.timeout)
        except self.failures as exc:
            error = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:240]}"
        t1 = time.time()
        if not error:
            error = await self.problems()
        self.shared.samples.append(Sample(self.n, self.client, kind, t0, t1, error, target))
        return not error

    async def think(self) -> None:
        try:
            await asyncio.wait_for(self.shared.stop.wait(), self.think_s * self.rng.uniform(0.5, 1.5))
        except TimeoutError:
            pass

    async def sign_in(self) -> bool:
        return await self.timed("first load", self.first_load) and await self.timed("sign in", self.submit_sign_in)

    async def loop(self) -> None:
        """Runs → next page → a run → one of its items → back, with a pause between, until told to stop.

        Each session first waits a random part of one loop, so that twenty sessions are spread over the
        five steps rather than all opening a run in the same second."""
        stop = self.shared.stop
        try:
            await asyncio.wait_for(stop.wait(), self.rng.uniform(0, 5 * self.think_s))
        except TimeoutError:
            pass
        while not stop.is_set():
            if not await self.timed("runs", self.open_runs):
                await self.recover()
                continue
            await self.think()
            if stop.is_set() or not await self.timed("next page", self.next_page):
                continue
            await self.think()
            seen, big = await self.ids_on_page("run?id="), self.shared.big_run
            run_id = big if big and self.rng.random() < 0.5 else (self.rng.choice(seen) if seen else None)
            if stop.is_set() or run_id is None:
                continue
            label = BIG if run_id == big else ""
            if not await self.timed("open run", lambda run_id=run_id: self.open_run(run_id), label):
                await self.recover()
                continue
            await self.think()
            items = await self.ids_on_page("item?id=")
            if stop.is_set() or not items:
                continue
            item_id = self.rng.choice(items)
            if not await self.timed("open item", lambda item_id=item_id: self.open_item(item_id), label):
                await self.recover()
                continue
            await self.think()
            if stop.is_set():
                continue
            if not await self.timed("back", lambda run_id=run_id: self.back(run_id), label):
                await self.recover()
                continue
            await self.think()
