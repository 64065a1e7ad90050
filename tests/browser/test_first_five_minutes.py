"""A new user's first minutes with the demo, as ``make run`` leaves it on 2026-12-03: sign in, find the run
that needs attention, see how many items failed, retry them, and read why the one that cannot be retried
is refused — all in a real browser against ``streamlit run`` (the product's named workflow)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from pypdf import PdfReader

from tests.browser.support import AppServer, click_settled, download_brief, screenshot, sign_in


@pytest.fixture(scope="module")
def server(demo_today_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    tmp = tmp_path_factory.mktemp("first-minutes")
    ws = tmp / "ws.duckdb"
    shutil.copyfile(demo_today_path, ws)
    if Path(demo_today_path + ".wal").exists():
        shutil.copyfile(demo_today_path + ".wal", str(ws) + ".wal")
    s = AppServer(ws, tmp / "streamlit.log")
    yield s
    s.stop()


def main(page):  # noqa: ANN001, ANN201
    return page.locator('[data-testid="stMain"]')


def test_a_new_user_retries_the_demos_failed_items(server: AppServer, page) -> None:  # noqa: ANN001
    sign_in(page, server, "sigrid")
    main(page).get_by_text("completed-with-failures 1").first.wait_for()  # the Runs page says one needs a look
    page.goto(f"{server.url}/?status=completed-with-failures")
    cell = main(page).locator('[role="gridcell"]', has_text="run?id=").first
    cell.wait_for(state="attached")
    run_id = (cell.text_content() or "").split("id=", 1)[1]
    screenshot(page, "first-minutes-runs")
    page.goto(f"{server.url}/run?id={run_id}")
    main(page).get_by_text("13 items failed at least once: 13 still failed (13 open, 0 dispositioned)").first.wait_for()
    main(page).get_by_text(re.compile(r"Retry failed items \(13 failed\)")).click()
    main(page).get_by_text("12 eligible for a retry").first.wait_for()
    screenshot(page, "first-minutes-retry-plan")
    click_settled(main(page).get_by_role("button", name="Retry 12 eligible items"))
    main(page).get_by_text("Retry finished: 12 succeeded").first.wait_for(timeout=60_000)
    screenshot(page, "first-minutes-retried")
    # the one that failed deterministically says why a retry is refused
    page.goto(f"{server.url}/run?id={run_id}&outcome=failed")
    cell = main(page).locator('[role="gridcell"]', has_text="item?id=").first
    cell.wait_for(state="attached")
    page.goto(f"{server.url}/item?id={(cell.text_content() or '').split('id=', 1)[1]}")
    main(page).get_by_text("resolved to nothing").first.wait_for()
    main(page).get_by_text("failed deterministically").first.wait_for()
    screenshot(page, "first-minutes-deterministic")


def test_the_failure_that_cannot_be_retried_is_waived_and_the_brief_says_so(server: AppServer,
                                                                            page) -> None:  # noqa: ANN001
    """After the retries above, the deterministic failure stays: an approver waives it on its Run item page,
    and the quarter's Analytics page and the brief's integrity statement count it as dispositioned (issue
    15). Sigrid retried the others; this one she did not (its retry was refused), so four eyes allow her."""
    sign_in(page, server, "sigrid", "?status=completed-with-failures")
    cell = main(page).locator('[role="gridcell"]', has_text="run?id=").first
    cell.wait_for(state="attached")
    run_id = (cell.text_content() or "").split("id=", 1)[1]
    page.goto(f"{server.url}/run?id={run_id}&outcome=failed")
    cell = main(page).locator('[role="gridcell"]', has_text="item?id=").first
    cell.wait_for(state="attached")
    item_id = (cell.text_content() or "").split("id=", 1)[1]
    page.goto(f"{server.url}/item?id={item_id}")
    main(page).get_by_text("failed deterministically").first.wait_for()
    main(page).get_by_text("Disposition this failure").first.click()
    main(page).get_by_label("Reason (required)").fill("The account was closed before the review; nothing to do")
    main(page).get_by_label("Reason (required)").press("Enter")
    main(page).get_by_role("button", name="Record the disposition").click()
    main(page).get_by_text("Dispositioned as waived; the outcome stays failed.").first.wait_for(timeout=30_000)
    screenshot(page, "first-minutes-waived")
    page.goto(f"{server.url}/analytics?quarter=2026-Q4")
    waived = re.compile(r"recovered or dispositioned: .*1 dispositioned \(1 waived\)")
    main(page).get_by_text(waived).first.wait_for(timeout=60_000)
    reader = PdfReader(BytesIO(download_brief(page)))
    text = " ".join(" ".join(p.extract_text() for p in reader.pages).split())
    assert waived.search(text), text[:3000]
    screenshot(page, "first-minutes-waived-brief")
