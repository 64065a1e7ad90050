"""A load-benchmark session in a real browser: one chromium context (its own cookies, so its own sign-in).

"Rendered" is what a member sees: Streamlit renders after the load event, so each wait is for the page's
heading, its last element and, where there is one, a grid cell of its table (``st.dataframe`` draws on a
canvas; ``[role="gridcell"]`` is its accessible mirror). An uncaught script error in the page is recorded.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from playwright.async_api import Browser, BrowserContext, Page
from playwright.async_api import Error as PlaywrightError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.load_flow import EXPECTED_ALERTS, Flow, InteractionFailed, Shared  # noqa: E402

PROBLEMS = '[data-testid="stException"], [data-testid="stAlertContentError"]'
# "Next page" is done when the First page button shows *and* the grid's first run changed (the old grid
# stays drawn for a moment after the button appears).
NEXT_PAGE_DONE = """(old) => {
  const m = document.querySelector('[data-testid="stMain"]');
  if (!m || ![...m.querySelectorAll('button')].some(b => b.innerText.includes('First page'))) return false;
  const c = [...m.querySelectorAll('[role="gridcell"]')].find(e => e.textContent.includes('run?id='));
  return !!c && c.textContent !== old;
}"""


class BrowserFlow(Flow):
    client = "browser"
    failures = (InteractionFailed, asyncio.TimeoutError, PlaywrightError)

    def __init__(self, n: int, url: str, shared: Shared, think: float, seed: int) -> None:
        super().__init__(n, url, shared, think, seed)
        self.context: BrowserContext | None = None
        self.page: Page

    async def start(self, browser: Browser) -> None:
        self.context = await browser.new_context(viewport={"width": 1440, "height": 1000})
        self.page = await self.context.new_page()
        self.page.set_default_timeout(self.shared.timeout * 1000)
        self.page.on("pageerror", lambda e: self.shared.page_errors.append(f"session {self.n}: {e}"))
        self.main = self.page.locator('[data-testid="stMain"]')

    async def close(self) -> None:
        if self.context is not None:
            await self.context.close()

    async def first_load(self) -> None:
        await self.page.goto(self.url, wait_until="commit")
        await self.page.get_by_role("button", name="Sign in").wait_for()
        await self.page.get_by_label("Member", exact=True).fill(self.member)
        await self.page.get_by_label("Password", exact=True).fill(self.member)

    async def submit_sign_in(self) -> None:
        await self.page.get_by_role("button", name="Sign in").click()
        await self.page.get_by_text(f"Signed in as {self.member}").wait_for()
        await self._runs_rendered()

    async def _runs_rendered(self) -> None:
        await self.main.get_by_role("heading", name="Runs", exact=True).wait_for()
        await self.main.locator('[role="gridcell"]', has_text="run?id=").first.wait_for(state="attached")

    async def open_runs(self) -> None:
        await self.page.locator('[data-testid="stSidebarNav"] a').first.click()
        await self._runs_rendered()

    async def next_page(self) -> None:
        first = await self.main.locator('[role="gridcell"]', has_text="run?id=").first.text_content()
        await self.main.get_by_role("button", name="Next page ▶").click()
        await self.page.wait_for_function(NEXT_PAGE_DONE, arg=first, polling=50)

    async def _run_rendered(self, run_id: str) -> None:
        await self.main.get_by_role("heading", name=f"Run {run_id}", exact=True).wait_for()
        await self.main.get_by_text("This run's audit entries").wait_for()  # the page's last element
        items = self.main.locator('[role="gridcell"]', has_text="item?id=").first
        await items.or_(self.main.get_by_text("No items with this outcome.")).first.wait_for(state="attached")

    async def open_run(self, run_id: str) -> None:
        await self.page.goto(f"{self.url}/run?id={run_id}", wait_until="commit")
        await self._run_rendered(run_id)

    async def open_item(self, item_id: str) -> None:
        await self.page.goto(f"{self.url}/item?id={item_id}", wait_until="commit")
        await self.main.get_by_role("heading", name=f"Item {item_id}", exact=True).wait_for()
        await self.main.get_by_text("Open in the audit log").wait_for()  # the page's last element

    async def back(self, run_id: str) -> None:
        await self.page.go_back(wait_until="commit")
        await self._run_rendered(run_id)

    async def ids_on_page(self, prefix: str) -> list[str]:
        try:
            texts = await self.main.locator('[role="gridcell"]', has_text=prefix).all_text_contents()
        except PlaywrightError:
            return []
        return [t.split("id=", 1)[1] for t in texts if "id=" in t]

    async def problems(self) -> str:
        try:
            texts = await self.page.locator(PROBLEMS).all_inner_texts()
        except PlaywrightError as exc:
            return f"could not read the page: {exc}"
        return " | ".join(t.strip()[:300] for t in texts if not t.startswith(EXPECTED_ALERTS))

    async def recover(self) -> None:
        try:
            await self.page.goto(self.url, wait_until="commit")
            await self._runs_rendered()
        except PlaywrightError:
            await asyncio.sleep(1)
