"""The quarter's analytics in a real browser: the demo quarter's figures, a drill-down into Runs, a chart
and a table downloaded (each audited), the brief generated and downloaded, and a viewer kept from exporting.
"""

from __future__ import annotations

import zipfile
from io import BytesIO
from pathlib import Path

from pypdf import PdfReader

from tests.browser.support import AppServer, download_brief, screenshot, sign_in

Q3 = "analytics?quarter=2026-Q3"


def main(page):  # noqa: ANN001, ANN201
    return page.locator('[data-testid="stMain"]')


def open_menu(button) -> None:  # noqa: ANN001
    """Open a popover from the middle of the screen: anchored to its button, a popover opened at the
    viewport's bottom edge lays its buttons outside the viewport, where no click reaches them."""
    button.evaluate("e => e.scrollIntoView({block: 'center'})")
    button.click()


def test_the_demo_quarter_and_a_drill_down_into_runs(app_server: AppServer, page) -> None:  # noqa: ANN001
    sign_in(page, app_server, "sigrid", Q3)
    m = main(page)
    m.get_by_text("Q3 2026 (2026-07-01 to 2026-09-30)").first.wait_for()
    metric = m.locator('[data-testid="stMetric"]', has_text="Actions invoked")
    assert "671" in (metric.text_content() or "")
    assert "59" in (m.locator('[data-testid="stMetric"]', has_text="Runs").first.text_content() or "")
    m.get_by_text("Every automation fired as expected in this period.").first.wait_for()
    screenshot(page, "analytics-q3")
    m.get_by_role("link", name="Open these 59 runs in Runs").click()
    page.wait_for_url("**/?*period=quarter*")  # the same period: the quarter stays a quarter
    assert "quarter=2026-Q3" in page.url
    runs = main(page).locator('[data-testid="stMetric"]', has_text="Runs in view")
    runs.wait_for()
    assert "59" in (runs.text_content() or "")
    screenshot(page, "analytics-drill-down-runs")


def test_a_clicked_bar_opens_its_runs(app_server: AppServer, page) -> None:  # noqa: ANN001
    """The charts a reader sees first drill down on a click: an automation's skipped bar opens that automation's
    runs with skipped items; a week's bar that week's runs. Each bar says what it counts to a screen reader."""
    sign_in(page, app_server, "sigrid", Q3)
    m = main(page)
    bar = m.locator('[data-testid="stVegaLiteChart"] path[aria-label="kyc-weekly-review: 12 items skipped"]')
    bar.wait_for(state="attached")
    bar.scroll_into_view_if_needed()
    bar.click(force=True)  # a path in the chart's SVG: its own box, wherever the chart is drawn
    page.wait_for_url("**/?*definition=kyc-weekly-review*")
    assert "outcome=skipped" in page.url and "quarter=2026-Q3" in page.url, page.url
    main(page).locator('[data-testid="stMetric"]', has_text="Runs in view").wait_for()
    screenshot(page, "analytics-bar-clicked-runs")
    sign_in(page, app_server, "sigrid", Q3)
    week = main(page).locator('[data-testid="stVegaLiteChart"] '
                              'path[aria-label="week of 2026-07-13: 74 items succeeded"]')
    week.wait_for(state="attached")
    week.scroll_into_view_if_needed()
    week.click(force=True)
    page.wait_for_url("**/?*from=2026-07-13*")
    assert "to=2026-07-19" in page.url and "outcome=succeeded" in page.url, page.url


def test_a_chart_and_a_table_download_with_provenance(app_server: AppServer, page, tmp_path: Path) -> None:  # noqa: ANN001
    sign_in(page, app_server, "sigrid", Q3)
    m = main(page)
    m.get_by_text("Q3 2026 (2026-07-01 to 2026-09-30)").first.wait_for()
    open_menu(m.get_by_role("button", name="Export chart").first)
    with page.expect_download(timeout=90_000) as dl:  # the first export starts the chart export server
        page.get_by_role("button", name="PNG", exact=True).click()
    png = Path(dl.value.path()).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and b"Runledger-Provenance" in png
    page.keyboard.press("Escape")
    open_menu(m.get_by_role("button", name="Export table").first)
    with page.expect_download() as dl:
        page.get_by_role("button", name="Excel (XLSX)").click()
    with zipfile.ZipFile(BytesIO(Path(dl.value.path()).read_bytes())) as z:
        assert any("sheet" in n for n in z.namelist())
    assert dl.value.suggested_filename == "runledger-per-automation-20260701-20260930.xlsx"
    screenshot(page, "analytics-export")


def test_the_brief_is_generated_and_downloaded(app_server: AppServer, page) -> None:  # noqa: ANN001
    sign_in(page, app_server, "sigrid", Q3)
    pdf = download_brief(page)
    assert pdf.startswith(b"%PDF")
    # Its run links open this very app, at the address the browser used (not the localhost default).
    reader = PdfReader(BytesIO(pdf))
    links = [str(a.get_object().get("/A", {}).get("/URI", "")) for p in reader.pages for a in p.get("/Annots") or []]
    runs = [u for u in links if "run?id=RUN-" in u]
    assert runs and all(u.startswith(f"{app_server.url}/run?id=RUN-") for u in runs), runs[:3]
    assert f"Links point to {app_server.url}/, the address the app was served at." in \
        " ".join(reader.pages[0].extract_text().split())
    screenshot(page, "analytics-brief")


def test_a_viewer_cannot_export(app_server: AppServer, page) -> None:  # noqa: ANN001
    sign_in(page, app_server, "viewer", Q3)
    m = main(page)
    m.get_by_text("Q3 2026 (2026-07-01 to 2026-09-30)").first.wait_for()
    assert m.get_by_role("button", name="Generate the brief (PDF)").is_disabled()
    assert m.get_by_role("button", name="Export chart").first.is_disabled()
    screenshot(page, "analytics-viewer")
