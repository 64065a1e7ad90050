"""The spec's workflows in a real browser, as sigrid and as viewer, against ``streamlit run`` on the demo
quarter plus the scenario of ``scenario.py`` (a completed-with-failures run, transient failures, two
rule changes awaiting approval, and a slow integration to cancel a run on).

The server holds the workspace (DuckDB admits one process), so every check reads what the page shows.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.browser.scenario import prepare
from tests.browser.support import AppServer, click_settled, screenshot, sign_in


@pytest.fixture(scope="module")
def server(demo_quarter_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    tmp = tmp_path_factory.mktemp("workflows")
    ws, defs = prepare(demo_quarter_path, tmp)
    s = AppServer(ws, tmp / "streamlit.log", env={"RUNLEDGER_DEFINITIONS": str(defs)}, gateway_latency=0.5)
    yield s
    s.stop()


def main(page):  # noqa: ANN001, ANN201
    return page.locator('[data-testid="stMain"]')


def cell_id(page, prefix: str) -> str:  # noqa: ANN001
    """The id in the first table cell linking to ``prefix`` (grid cells are an accessible, hidden mirror
    of the canvas: wait for them to be attached, and read their text)."""
    cell = main(page).locator('[role="gridcell"]', has_text=prefix).first
    cell.wait_for(state="attached")
    return (cell.text_content() or "").split("id=", 1)[1]


def open_run_of(page, server: AppServer, definition: str, status: str) -> str:  # noqa: ANN001
    """From the Runs page filtered to one definition and status, open the first run by its link."""
    sign_in(page, server, "sigrid", path=f"?definition={definition}&status={status}")
    run_id = cell_id(page, "run?id=")
    page.goto(f"{server.url}/run?id={run_id}")
    main(page).get_by_role("heading", name=f"Run {run_id}").wait_for()
    return run_id


def test_sigrid_filters_the_demo_quarter(server: AppServer, page) -> None:  # noqa: ANN001
    sign_in(page, server, "sigrid", path="?period=last_quarter")
    sign_in_url = page.url
    assert "period=last_quarter" in sign_in_url
    page.get_by_label("Period", exact=True).wait_for()
    runs_in_view = main(page).locator('[data-testid="stMetric"]').first
    assert runs_in_view.inner_text().split()[-1] == "59"  # the spec's quarter: 59 runs
    screenshot(page, "workflow-runs-last-quarter")


def test_a_completed_with_failures_run_and_its_failed_item(server: AppServer, page) -> None:  # noqa: ANN001
    sign_in(page, server, "sigrid", path="?status=completed-with-failures&status=failed")
    main(page).locator('[role="gridcell"]', has_text="completed-with-failures").first.wait_for(state="attached")
    screenshot(page, "workflow-runs-needing-attention")  # highlighted rows: look at it
    run_id = open_run_of(page, server, "risk-escalation", "completed-with-failures")
    main(page).get_by_text("completed-with-failures").first.wait_for()  # drawn after the heading: wait, not peek
    screenshot(page, "workflow-run-completed-with-failures")
    page.goto(f"{server.url}/run?id={run_id}&outcome=failed")
    item_id = cell_id(page, "item?id=")
    page.goto(f"{server.url}/item?id={item_id}")
    main(page).get_by_text("findings register refuses severity 'unrated'").first.wait_for()
    main(page).get_by_text("failed deterministically").first.wait_for()  # and why no retry
    screenshot(page, "workflow-failed-item-deterministic")


def test_sigrid_retries_transient_failures_and_sees_the_outcome_and_audit(server: AppServer, page) -> None:  # noqa: ANN001
    run_id = open_run_of(page, server, "evidence-chase", "completed-with-failures")
    main(page).get_by_text(re.compile(r"Retry failed items \(6 failed\)")).click()
    main(page).get_by_text("6 eligible for a retry").first.wait_for()
    screenshot(page, "workflow-retry-plan")
    click_settled(main(page).get_by_role("button", name="Retry 6 eligible items"))
    main(page).get_by_text("Retry finished: 6 succeeded").first.wait_for(timeout=60_000)
    screenshot(page, "workflow-retry-result")
    page.goto(f"{server.url}/item?id={run_id}-000001")
    main(page).get_by_text("succeeded").first.wait_for()
    main(page).locator('[role="gridcell"]', has_text="item.retried").first.wait_for(state="attached")
    screenshot(page, "workflow-retried-item-audit")


def test_sigrid_cancels_a_running_run(server: AppServer, page) -> None:  # noqa: ANN001
    sign_in(page, server, "sigrid", path="automations?id=slow-evidence")
    main(page).get_by_role("button", name="Run now").click()
    main(page).get_by_role("button", name=re.compile(r"^Yes, run it on \d+ accounts$")).click()  # confirmed
    started = main(page).get_by_text(re.compile(r"^Open RUN-\d+$"))
    started.wait_for()
    run_id = started.inner_text().removeprefix("Open ")
    page.goto(f"{server.url}/run?id={run_id}")
    main(page).get_by_text("Cancel this run").click()
    main(page).get_by_label("Reason (goes into the audit trail)").fill("Wrong recipients: stop it")
    main(page).get_by_text(f"Yes, cancel {run_id}").click()
    main(page).get_by_role("button", name="Cancel run").click()
    main(page).get_by_text("Cancel request recorded").first.wait_for()
    page.goto(f"{server.url}/run?id={run_id}")
    main(page).get_by_text("Cancel requested by member:sigrid").first.wait_for()
    main(page).get_by_text("cancelled").first.wait_for(timeout=60_000)
    page.goto(f"{server.url}/run?id={run_id}&outcome=skipped")
    main(page).locator('[role="gridcell"]', has_text="cancelled").first.wait_for(state="attached")  # skipped
    page.goto(f"{server.url}/run?id={run_id}")
    breakdown = main(page).locator('[data-testid="stDataFrame"]').nth(1)
    breakdown.wait_for()
    screenshot(page, "workflow-cancelled-run")
    # in-flight items finished and were recorded: some succeeded, the rest skipped, none left pending
    segments = main(page).locator('[data-testid="stButtonGroup"]').inner_text()
    assert "succeeded" in segments and "skipped" in segments and "pending" not in segments


def test_sigrid_approves_one_item_and_dismisses_another(server: AppServer, page) -> None:  # noqa: ANN001
    sign_in(page, server, "sigrid", path="approvals")
    approve = main(page).get_by_role("button", name="Approve")
    # The page's last element; .first because a rerun may briefly show the stale copy beside the new one.
    main(page).get_by_text("Recent decisions").first.wait_for()
    for _ in range(50):  # the rerun after sign-in may still be redrawing the cards: let the count settle
        before = approve.count()
        if before >= 2:
            break
        page.wait_for_timeout(200)
    assert before >= 2
    approve.first.click()
    main(page).get_by_text(re.compile(r"Approved RUN-\d+-\d+: the action ran")).first.wait_for()
    # The approval's rerun redraws the cards: a reason typed while it runs is lost with the card it was in.
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()
    for _ in range(50):
        if approve.count() == before - 1:
            break
        page.wait_for_timeout(200)
    reason = main(page).get_by_label("Reason to dismiss").first
    reason.fill("Not applicable to credit unions")
    reason.press("Tab")  # the value is the app's once the field loses focus (a rerun): let it finish
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()
    main(page).get_by_role("button", name="Dismiss").first.click()
    main(page).get_by_text(re.compile(r"Dismissed RUN-\d+-\d+")).first.wait_for()
    main(page).get_by_text("Recent decisions").first.wait_for()
    for _ in range(50):
        if approve.count() == before - 2:
            break
        page.wait_for_timeout(200)
    assert approve.count() == before - 2
    screenshot(page, "workflow-approvals")


def test_viewer_finds_retry_and_cancel_refused(server: AppServer, page) -> None:  # noqa: ANN001
    sign_in(page, server, "viewer", path="?definition=risk-escalation")
    run_id = cell_id(page, "run?id=")
    page.goto(f"{server.url}/item?id={run_id}-000002")  # the 'unrated' account: failed deterministically
    main(page).get_by_text("Not retryable").first.wait_for()
    sign_in(page, server, "viewer", path="failed_items")
    main(page).get_by_role("button", name="Plan a bulk retry").click()
    retry_all = main(page).get_by_role("button", name=re.compile(r"Retry all"))
    retry_all.wait_for()
    assert retry_all.is_disabled()
    main(page).get_by_text("Retrying needs the operator role").first.wait_for()
    screenshot(page, "workflow-viewer-refused")
