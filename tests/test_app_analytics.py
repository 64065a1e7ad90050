"""The analytics page with AppTest on the demo quarter: the period and definitions live in the URL, bad
params get a sentence (never a traceback), drill-downs link to Runs with the filters, viewers cannot export."""

from __future__ import annotations

import datetime as dt

from core.links import PAGES
from core.periods import PeriodChoice, resolve_period
from tests.apptest_support import open_app

PAGE = PAGES["analytics"][0]


def metrics(at) -> dict[str, str]:  # noqa: ANN001
    return {m.label: m.value for m in at.metric}


def param_list(at, key: str) -> list[str]:  # noqa: ANN001
    """AppTest gives a repeated query param as a list and a single one as a string."""
    value = at.query_params.get(key, [])
    return [value] if isinstance(value, str) else sorted(value)


def links(at) -> dict[str, str]:  # noqa: ANN001
    return {pl.proto.label: pl.proto.query_string for pl in at.get("page_link")}


def test_a_quarter_in_the_url_shows_its_figures_and_links_its_runs(app_workspace: str) -> None:
    at = open_app("sigrid", page=PAGE, params={"quarter": "2026-Q3"})
    assert not at.exception and not at.warning
    assert "Q3 2026 (2026-07-01 to 2026-09-30)" in [s.value for s in at.subheader]
    m = metrics(at)
    assert (m["Runs"], m["Items"], m["Actions invoked"], m["Skipped"]) == ("59", "691", "671", "20")
    assert links(at)["Open these 59 runs in Runs"] == "period=quarter&quarter=2026-Q3"  # the same period
    per = at.dataframe[0].value
    assert "./?definition=kyc-weekly-review&period=quarter&quarter=2026-Q3" in list(per["Automation"])  # its runs
    assert any("fired as expected" in s.value for s in at.success)


def test_the_drill_down_builds_the_runs_url(app_workspace: str) -> None:
    at = open_app("sigrid", page=PAGE, params={"quarter": "2026-Q3"})
    by_label = {s.label: s for s in at.selectbox}
    by_label["Automation"].select("kyc-weekly-review").run()
    by_label = {s.label: s for s in at.selectbox}
    by_label["Outcome"].select("skipped").run()
    by_label = {s.label: s for s in at.selectbox}
    by_label["Week"].select(dt.date(2026, 7, 13)).run()
    assert links(at)["Open these runs"] == ("definition=kyc-weekly-review&period=custom&from=2026-07-13"
                                            "&to=2026-07-19&outcome=skipped")


def test_definitions_narrow_the_page_and_stay_in_the_url(app_workspace: str) -> None:
    at = open_app("sigrid", page=PAGE, params={"quarter": "2026-Q3", "definition": "kyc-weekly-review"})
    assert metrics(at)["Runs"] == "13"
    assert param_list(at, "definition") == ["kyc-weekly-review"]
    at.multiselect[0].select("aml-monitor-failure").run()
    assert param_list(at, "definition") == ["aml-monitor-failure", "kyc-weekly-review"]
    assert metrics(at)["Runs"] == "36"


def test_custom_dates_and_the_default_period(app_workspace: str) -> None:
    at = open_app("sigrid", page=PAGE, params={"from": "2026-07-01", "to": "2026-07-31"})
    assert "2026-07-01 to 2026-07-31" in [s.value for s in at.subheader]
    at = open_app("sigrid", page=PAGE)
    label = resolve_period(PeriodChoice("last_quarter"), dt.datetime.now(dt.UTC).date()).label
    assert label in [s.value for s in at.subheader]


def test_bad_and_hostile_params_get_a_sentence_not_a_traceback(app_workspace: str) -> None:
    at = open_app("sigrid", page=PAGE, params={"quarter": "2026-Q9", "definition": "<script>alert(1)</script>",
                                               "period": "forever", "from": "yesterday"})
    assert not at.exception
    warnings = " ".join(w.value for w in at.warning)
    assert "not a quarter like 2026-Q3" in warnings and "Unknown definition" in warnings
    assert "Unknown period 'forever'" in warnings and "'from=yesterday' is not a date" in warnings


def test_a_viewer_sees_exports_disabled_with_the_reason(app_workspace: str) -> None:
    at = open_app("viewer", page=PAGE, params={"quarter": "2026-Q3"})
    brief = next(b for b in at.button if b.label == "Generate the brief (PDF)")
    assert brief.disabled and "Exports need the auditor or operator role" in brief.help
    assert all(d.disabled for d in at.get("download_button"))
    at = open_app("auditor", page=PAGE, params={"quarter": "2026-Q3"})
    assert not next(b for b in at.button if b.label == "Generate the brief (PDF)").disabled
