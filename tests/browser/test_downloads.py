"""Every download goes through the audited export path, or is not offered (a real browser, as a viewer
and as an auditor): Streamlit's own table toolbar must not offer "Download as CSV", which would hand any
member a file with no permission check, no provenance and no audit entry."""

from __future__ import annotations

import pytest

from tests.browser.support import AppServer, screenshot, sign_in

PAGES_WITH_TABLES = ["", "automations", "audit_log", "analytics?period=quarter&quarter=2026-Q3"]


def _toolbar_labels(page, table) -> list[str]:  # noqa: ANN001
    """The labels of the toolbar a table shows under the pointer."""
    table.hover()
    toolbar = table.locator('[data-testid="stElementToolbar"]')
    toolbar.wait_for()
    page.wait_for_timeout(200)  # the toolbar's buttons fade in
    return [b.get_attribute("aria-label") or b.inner_text() for b in toolbar.locator("button").all()]


@pytest.mark.parametrize("member", ["viewer", "auditor"])
def test_no_table_offers_its_own_download(app_server: AppServer, page, member: str) -> None:  # noqa: ANN001
    for path in PAGES_WITH_TABLES:
        sign_in(page, app_server, member, path=path)
        table = page.locator('[data-testid="stMain"] [data-testid="stDataFrame"]').first
        table.wait_for()
        labels = _toolbar_labels(page, table)
        assert labels, f"{path or 'runs'}: the table toolbar did not show"  # it did show: the check is real
        assert not [lbl for lbl in labels if "download" in lbl.lower()], (path, labels)
    screenshot(page, f"downloads-table-toolbar-{member}")


def test_a_viewer_cannot_open_an_export(app_server: AppServer, page) -> None:  # noqa: ANN001
    sign_in(page, app_server, "viewer", path="analytics?period=quarter&quarter=2026-Q3")
    exports = page.get_by_role("button", name="Export table")
    exports.first.wait_for()
    assert exports.count() >= 1 and all(b.is_disabled() for b in exports.all())
    charts = page.get_by_role("button", name="Export chart")
    charts.first.wait_for()  # drawn with the charts, after the tables' controls: wait, never peek
    assert charts.count() >= 1 and all(b.is_disabled() for b in charts.all())
    brief = page.get_by_role("button", name="Generate the brief (PDF)")
    brief.wait_for()
    assert brief.is_disabled()


@pytest.mark.parametrize("member", ["viewer", "auditor"])
def test_no_chart_offers_its_own_download(app_server: AppServer, page, member: str) -> None:  # noqa: ANN001
    """Streamlit's toolbar on a Vega-Lite chart offers "Download as PNG" and "Copy Vega-Lite spec" (its data on the
    clipboard): neither is offered; the chart's toolbar itself still shows (fullscreen, its data as a table)."""
    sign_in(page, app_server, member, path="analytics?period=quarter&quarter=2026-Q3")
    charts = page.locator('[data-testid="stMain"] [data-testid="stVegaLiteChart"]')
    charts.first.wait_for()
    assert charts.count() >= 3
    for i in range(charts.count()):
        chart = charts.nth(i)
        chart.scroll_into_view_if_needed()
        chart.hover()
        toolbar = page.locator('[data-testid="stElementToolbar"]').filter(
            has=page.get_by_role("button", name="Show data"))
        toolbar.first.wait_for()
        page.wait_for_timeout(200)  # the toolbar's buttons fade in
        labels = [b.get_attribute("aria-label") or b.inner_text() for b in toolbar.locator("button").all()
                  if b.is_visible()]
        assert "Fullscreen" in labels, labels  # the toolbar did show: the check is real
        assert not [lbl for lbl in labels if "download" in lbl.lower() or "copy" in lbl.lower()], labels
    screenshot(page, f"downloads-chart-toolbar-{member}")
