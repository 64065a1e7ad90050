"""Hostile text — HTML, script, markdown links and spreadsheet formulas — in a subject's name and in a failure
cause, run through the real engine, stays inert: literal text on the Run, Run item, Failed items, Approvals,
Records and Runs pages, formula-guarded in CSV and XLSX, and printed literally in the brief with no link."""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pypdf import PdfReader
from streamlit.runtime.pages_manager import PagesManager

from core.links import PAGES
from core.periods import period_from_dates
from engine.actioners.base import ActionContext, ActionRequest, DeterministicFailure
from engine.authz import load_actor
from reporting.analytics import build_analytics
from reporting.charts import failure_causes
from reporting.exports import export_table
from store.subjects import insert_subjects
from store.workspace import Workspace
from tests import apptest_support
from tests.apptest_support import open_app
from tests.bad_input.test_hostile_urls import assert_inert
from tests.support import WrappedActioner, build_engine, finding_definition

NAME = "<img src=x onerror=alert(1)> **BOLD** [click](http://evil.example)"
CAUSE = ('=HYPERLINK("http://evil.example","click") <a href="http://evil.example">link</a> <b>bold</b> '
         "**B** [y](http://evil.example)")
JULY = period_from_dates(dt.date(2026, 7, 1), dt.date(2026, 7, 31))


class RefusesTheHostileOne(WrappedActioner):
    """The findings register refuses ACC-EVIL with a cause that looks like markup and a formula."""

    def before(self, req: ActionRequest, ctx: ActionContext) -> None:
        if req.subject_id == "ACC-EVIL":
            raise DeterministicFailure(CAUSE)


@pytest.fixture(scope="module")
def hostile_workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two hostile accounts (one refused with the hostile cause, one whose finding carries the name), run by
    the engine; a second automation waits for approval on them. Closed, so each test copies it."""
    folder = tmp_path_factory.mktemp("hostile")
    defs = {"d": finding_definition("d"), "a": finding_definition("a", approval=True)}
    engine = build_engine(folder, defs, accounts=1, actioners={"findings.create": RefusesTheHostileOne()})
    with engine.ws.transaction() as tx:
        insert_subjects(tx, "accounts", [
            {"account_id": acc, "name": NAME, "manager": "m.one", "status": "active",
             "kyc_review_due": dt.date(2026, 7, 1), "risk_rating": "low"} for acc in ("ACC-EVIL", "ACC-EVIL2")])
    [run_d] = engine.fire("d")
    [run_a] = engine.fire("a")
    with engine.ws.read() as conn:
        rows = conn.execute(sa.text("SELECT run_id, subject_id, item_id, outcome, failure_cause, record_ref "
                                    "FROM run_items ORDER BY item_id")).mappings().all()
    engine.shutdown()
    engine.ws.close()
    items = {(r["run_id"], r["subject_id"]): dict(r) for r in rows}
    failed, made = items[(run_d, "ACC-EVIL")], items[(run_d, "ACC-EVIL2")]
    assert (failed["outcome"], failed["failure_cause"]) == ("failed", CAUSE)
    assert made["outcome"] == "succeeded" and made["record_ref"].startswith("findings:")
    assert items[(run_a, "ACC-EVIL")]["outcome"] == "awaiting-approval"
    return {"path": folder / "ws.duckdb", "definitions": folder / "definitions", "run": run_d,
            "failed": failed["item_id"], "made": made["item_id"], "record": made["record_ref"].split(":", 1)[1]}


@pytest.fixture
def workspace(hostile_workspace: dict[str, Any], tmp_path: Path) -> str:
    db = tmp_path / "ws.duckdb"
    db.write_bytes(hostile_workspace["path"].read_bytes())
    wal = Path(f"{hostile_workspace['path']}.wal")
    if wal.exists():
        Path(f"{db}.wal").write_bytes(wal.read_bytes())
    return str(db)


@pytest.fixture
def app(workspace: str, hostile_workspace: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The app over the hostile workspace, as ``apptest_support.app_workspace`` opens the demo."""
    from ui.runtime import open_engine

    monkeypatch.setenv("RUNLEDGER_DB", workspace)
    monkeypatch.setenv("RUNLEDGER_DEFINITIONS", str(hostile_workspace["definitions"]))
    monkeypatch.setenv("RUNLEDGER_ENGINE_LIVE", "0")
    monkeypatch.setenv("RUNLEDGER_INTAKE_PORT", "off")
    monkeypatch.setattr(PagesManager, "__init__", apptest_support._navigation_only)
    open_engine.clear()
    yield workspace
    open_engine.clear()


def literal_texts(at: Any) -> list[str]:
    """Strings shown as text: st.text, st.code and every dataframe cell."""
    out = [str(t.value) for t in at.text] + [str(c.value) for c in at.code]
    for frame in at.dataframe:
        out += [str(v) for v in frame.value.astype(str).to_numpy().ravel()]
    return out


def test_every_page_shows_the_hostile_text_literally(app: str, hostile_workspace: dict[str, Any]) -> None:
    h = hostile_workspace
    views = {
        "run": (PAGES["run"][0], {"id": h["run"]}, [NAME, CAUSE]),
        "failed item": (PAGES["item"][0], {"id": h["failed"]}, [CAUSE]),
        "item with a record": (PAGES["item"][0], {"id": h["made"]}, [f"Finding for {NAME}"]),
        "failed items": (PAGES["failed"][0], {}, [NAME, CAUSE]),
        "approvals": (PAGES["approvals"][0], {}, []),
        "finding": (PAGES["records"][0], {"module": "findings", "id": h["record"]}, [f"Finding for {NAME}"]),
        "subject": (PAGES["records"][0], {"register": "accounts", "id": "ACC-EVIL"}, [NAME]),
        "subject story": (PAGES["subject"][0], {"kind": "accounts", "id": "ACC-EVIL"}, [NAME]),
        "runs": (PAGES["runs"][0], {}, []),
        "audit": (PAGES["audit"][0], {}, []),
        "analytics": (PAGES["analytics"][0], {"from": "2026-07-01", "to": "2026-07-31"}, [CAUSE]),
    }
    for view, (page, params, shown) in views.items():
        at = open_app("sigrid", page=page, params=params)
        assert_inert(at)  # no exception; no markdown element holds the markup unescaped
        texts = literal_texts(at)
        for value in shown:
            assert any(value in t for t in texts), f"{view}: {value!r} is not shown as text"
        if view == "failed item":
            assert CAUSE in [t.value for t in at.text]
        if view == "approvals":  # the subject's name heads each card, escaped
            assert any(m.value.startswith("**\\<img src\\=x onerror\\=alert\\(1\\)\\> \\*\\*BOLD\\*\\* "
                                          "\\[click\\]\\(http\\://evil\\.example\\)**") for m in at.markdown)


def test_the_failure_cause_chart_labels_are_literal(workspace: str) -> None:
    """Plotly reads <a href>, <b> and <br> in labels as markup: a cause's own tags must come out as text."""
    ws = Workspace(workspace)
    try:
        fig = failure_causes(build_analytics(ws, JULY))
    finally:
        ws.close()
    labels = " ".join(str(y) for trace in fig.data for y in (trace.y if trace.y is not None else []))
    assert "&lt;a" in labels and "&lt;b&gt;bold&lt;/b&gt;" in labels
    assert not re.search(r"<a\b|<b>", labels)  # only our own <br> and <i> remain as tags


def test_exports_are_inert(workspace: str) -> None:
    ws = Workspace(workspace)
    try:
        auditor = load_actor(ws, "auditor")
        analytics = build_analytics(ws, JULY)
        csv = export_table(ws, auditor, analytics, "failure-causes", "csv").content.decode()
        xlsx = export_table(ws, auditor, analytics, "failure-causes", "xlsx").content
    finally:
        ws.close()
    guarded = "'" + CAUSE
    data = [line for line in csv.splitlines() if not line.startswith("# ")]
    assert any(guarded.replace('"', '""') in line for line in data), data
    assert not any(re.search(r'(^|,)"?=', line) for line in data)  # no cell starts a formula
    with zipfile.ZipFile(io.BytesIO(xlsx)) as z:
        sheets = {n: z.read(n).decode() for n in z.namelist() if n.startswith("xl/")}
    assert not any("<f>" in text for text in sheets.values())  # no formula cell anywhere
    strings = sheets["xl/sharedStrings.xml"]
    assert "'=HYPERLINK(&quot;http://evil.example&quot;" in strings or "'=HYPERLINK(\"http://evil.example\"" in strings


@pytest.mark.slow  # the brief renders its charts through chromium
def test_the_brief_prints_it_literally_without_a_link(workspace: str) -> None:
    from reporting.brief import generate_brief

    ws = Workspace(workspace)
    try:
        made = generate_brief(ws, load_actor(ws, "auditor"), JULY, base_url="https://runledger.example/app")
    finally:
        ws.close()
    reader = PdfReader(io.BytesIO(made.content))
    text = "".join("".join(p.extract_text() for p in reader.pages).split())
    assert "".join(CAUSE.split()) in text
    uris = [str(a.get_object().get("/A", {}).get("/URI", "")) for page in reader.pages
            for a in page.get("/Annots") or []]
    assert uris and not any("evil.example" in u for u in uris)
