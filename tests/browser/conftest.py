"""The browser tests' fixtures: a ``streamlit run`` server per module on a private copy of the demo
quarter, one chromium for the session, a fresh page per test. Helpers are in ``tests.browser.support``."""

from __future__ import annotations

import shutil
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.browser.support import ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS, AppServer


@pytest.fixture(scope="module")
def app_server(demo_quarter_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """One server per test module, on a private copy of the demo quarter (tests in a module share it)."""
    tmp = tmp_path_factory.mktemp("browser")
    ws = tmp / "ws.duckdb"
    shutil.copyfile(demo_quarter_path, ws)
    if Path(demo_quarter_path + ".wal").exists():
        shutil.copyfile(demo_quarter_path + ".wal", str(ws) + ".wal")
    server = AppServer(ws, tmp / "streamlit.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/install-browser.sh` (make test does)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})  # type: ignore[attr-defined]
    p = context.new_page()
    p.set_default_timeout(30_000)
    yield p
    context.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every browser test is slow: a ``streamlit run`` server and chromium."""
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.slow)


def _servers(value: object) -> list[AppServer]:
    if isinstance(value, AppServer):
        return [value]
    if isinstance(value, (tuple, list)):
        return [s for v in value for s in _servers(v)]
    return []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, None]:
    """A browser test that fails says what the page showed and what its server logged, in the failure's report
    (CI keeps only the log), and leaves a screenshot beside the others: a timeout alone says nothing."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    funcargs = getattr(item, "funcargs", {})
    if report.when != "call" or not report.failed or "page" not in funcargs:
        return
    page = funcargs["page"]
    try:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"FAILED-{item.name}.png"), full_page=True)
        report.sections.append(("page at failure", f"{page.url}\n{page.locator('body').inner_text(timeout=5_000)}"))
    except Exception as exc:  # noqa: BLE001 — the page may be gone; the failure itself is what matters
        report.sections.append(("page at failure", f"not readable: {exc!r}"))
    for server in {id(s): s for v in funcargs.values() for s in _servers(v)}.values():
        report.sections.append((f"server log {server.url}", server.output()[-4_000:]))
