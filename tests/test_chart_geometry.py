"""Every exported chart and every page of the brief is a complete picture, judged from the files themselves.

Each of the six charts is exported in PNG, SVG and PDF through the real, audited export path over the demo
quarter, and once more with every automation renamed to a 60-character name (the names a real workspace
has). Then, read back (``tests/geometry_support.py``): every text of an SVG and a PDF lies inside the picture
and overlaps no other (so no label is cut, no axis title sits on tick numbers, nothing collides with the
provenance footer); the edges of a PNG, and of a PDF drawn to pixels, are background only; the three formats
have the same size. The brief's pages get the same check (and nothing may enter the footer band), its
charts too, its footer keeps "by <member>", and the weekly chart's time axis is the period.

The files are written to ``tests/artifacts/geometry/`` (ignored by git) for looking at.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from pypdf import PdfReader
from reportlab.lib.units import mm

from cli.main import EXIT_OK, main
from core.periods import period_from_dates
from engine.authz import load_actor
from reporting.analytics import Analytics, build_analytics
from reporting.charts import CHARTS
from reporting.exports import export_chart, render_chart
from reporting.provenance import Provenance
from store.workspace import Workspace
from tests.geometry_support import Box, overlapping_pairs, pdf_pages, png_border_ink, png_size, svg_text_boxes

pytestmark = pytest.mark.slow  # every chart rendered through chromium in three formats

Q3 = period_from_dates(dt.date(2026, 7, 1), dt.date(2026, 9, 30))
FORMATS = ("png", "svg", "pdf")
VARIANTS = ("demo", "long-names")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "geometry"
LONG_WORKSPACE = "compliance-evidence-retail-banking-2026.duckdb"
BODY_BOTTOM, FOOTER_RULE = 20 * mm, 15 * mm  # the brief's frame ends at 20 mm; its footer rule is at 15 mm


def long_name(definition_id: str) -> str:
    return f"{definition_id}-for-the-retail-banking-division-in-emea"


def long_named(a: Analytics) -> Analytics:
    """The same figures under long automation names, in every frame and firing check."""
    def rename(df: pl.DataFrame) -> pl.DataFrame:
        if "definition_id" not in df.columns:
            return df
        return df.with_columns(pl.col("definition_id").map_elements(long_name, return_dtype=pl.String))
    frames = {f.name: rename(getattr(a, f.name)) for f in dataclasses.fields(a)
              if isinstance(getattr(a, f.name), pl.DataFrame)}
    return dataclasses.replace(a, **frames, firing=[dataclasses.replace(c, definition_id=long_name(c.definition_id))
                                                    for c in a.firing])


def copy_demo(demo_quarter_path: str, folder: Path, name: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(demo_quarter_path, folder / name)
    return str(folder / name)


@pytest.fixture(scope="module")
def analytics(demo_quarter_path: str, tmp_path_factory: pytest.TempPathFactory) -> Analytics:
    ws = Workspace(copy_demo(demo_quarter_path, tmp_path_factory.mktemp("geometry"), "ws.duckdb"))
    try:
        return build_analytics(ws, Q3)
    finally:
        ws.close()


@pytest.fixture(scope="module")
def files(demo_quarter_path: str, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], bytes]:
    """(variant, chart, format) → the file: the demo's through ``export_chart`` (authorized, audited), the
    long names through ``render_chart`` (the same rendering, without an audit entry per file)."""
    folder = tmp_path_factory.mktemp("exports")
    ws = Workspace(copy_demo(demo_quarter_path, folder, LONG_WORKSPACE))
    out: dict[tuple[str, str, str], bytes] = {}
    try:
        a, actor = build_analytics(ws, Q3), load_actor(ws, "sigrid")
        long_a = long_named(a)
        prov = Provenance(str(folder / LONG_WORKSPACE), Q3.label, Q3.filters(), ws.now(), "sigrid", 1, "0" * 64)
        for chart, (title, build) in CHARTS.items():
            for fmt in FORMATS:
                out["demo", chart, fmt] = export_chart(ws, actor, a, chart, fmt).content
                out["long-names", chart, fmt] = render_chart(build(long_a), fmt, prov, title)
    finally:
        ws.close()
    for (variant, chart, fmt), content in out.items():
        (ARTIFACTS / variant).mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / variant / f"{chart}.{fmt}").write_bytes(content)
    return out


def pdf_as_png(pdf: bytes, dpi: int = 144) -> bytes:
    """The PDF drawn to pixels by poppler, as a reader's viewer would show it (clipping included)."""
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "in.pdf"
        source.write_bytes(pdf)
        subprocess.run(["pdftoppm", "-r", str(dpi), "-png", "-singlefile", str(source), str(Path(folder) / "out")],
                       check=True, capture_output=True)
        return (Path(folder) / "out.png").read_bytes()


def assert_text_fits(boxes: list[Box], bounds: tuple[float, float, float, float], what: str) -> None:
    outside = [str(b) for b in boxes if not b.inside(*bounds)]
    assert not outside, f"{what}: text outside the picture {bounds}: {outside}"
    overlaps = [f"{a} ✕ {b}" for a, b in overlapping_pairs(boxes)]
    assert not overlaps, f"{what}: texts overlap: {overlaps}"


CASES = [(v, c) for v in VARIANTS for c in CHARTS]


# --- every chart, every format ----------------------------------------------------------------------------
@pytest.mark.parametrize("variant,chart", CASES, ids=[f"{v}-{c}" for v, c in CASES])
def test_svg_text_lies_inside_the_picture_and_apart(files: dict[Any, bytes], variant: str, chart: str) -> None:
    view, boxes = svg_text_boxes(files[variant, chart, "svg"])
    assert boxes, "the SVG has no text"
    assert_text_fits(boxes, view, f"{variant} {chart}.svg")


@pytest.mark.parametrize("variant,chart", CASES, ids=[f"{v}-{c}" for v, c in CASES])
def test_pdf_text_lies_inside_the_page_and_apart(files: dict[Any, bytes], variant: str, chart: str) -> None:
    [page] = pdf_pages(files[variant, chart, "pdf"])
    assert page.runs, "the PDF has no text"
    assert_text_fits(page.runs, page.media_box, f"{variant} {chart}.pdf")
    assert png_border_ink(pdf_as_png(files[variant, chart, "pdf"])) == [], "drawn across the PDF's edge"


@pytest.mark.parametrize("variant,chart", CASES, ids=[f"{v}-{c}" for v, c in CASES])
def test_png_edges_are_background_and_every_format_has_the_same_size(files: dict[Any, bytes], variant: str,
                                                                     chart: str) -> None:
    png = files[variant, chart, "png"]
    assert png_border_ink(png) == [], "something is drawn across the picture's edge: it is cut"
    (x0, y0, x1, y1), _ = svg_text_boxes(files[variant, chart, "svg"])
    assert png_size(png) == (2 * (x1 - x0), 2 * (y1 - y0))  # the PNG is drawn at scale 2
    [page] = pdf_pages(files[variant, chart, "pdf"])
    assert page.media_box == pytest.approx((0, 0, 0.75 * (x1 - x0), 0.75 * (y1 - y0)), abs=1)  # px → pt


@pytest.mark.parametrize("chart", list(CHARTS))
def test_a_chart_of_an_empty_period_is_complete_too(demo_quarter_path: str, tmp_path: Path, chart: str) -> None:
    ws = Workspace(copy_demo(demo_quarter_path, tmp_path, "ws.duckdb"))
    try:
        winter = period_from_dates(dt.date(2025, 1, 1), dt.date(2025, 3, 31))
        a = build_analytics(ws, winter)
        prov = Provenance(str(ws.path), winter.label, winter.filters(), ws.now(), "sigrid", 1, "0" * 64)
    finally:
        ws.close()
    title, build = CHARTS[chart]
    view, boxes = svg_text_boxes(render_chart(build(a), "svg", prov, title))
    assert_text_fits(boxes, view, f"empty {chart}.svg")
    assert png_border_ink(render_chart(build(a), "png", prov, title)) == []


def svg_texts(svg: bytes) -> list[str]:
    return [b.text for b in svg_text_boxes(svg)[1]]


def test_the_weekly_axis_starts_and_ends_with_the_period(files: dict[Any, bytes], analytics: Analytics) -> None:
    labels = [t for t in svg_texts(files["demo", "outcome-trend", "svg"]) if re.fullmatch(r"\d\d [A-Z][a-z]{2}", t)]
    assert labels[0] == "01 Jul" and labels[-1] == "30 Sep", labels
    fig = CHARTS["outcome-trend"][1](analytics)
    assert [dt.datetime.fromisoformat(str(v)) for v in fig.layout.xaxis.range] == [Q3.start, Q3.end]
    for bar in fig.data:  # each week's bar is drawn over that week's days inside the period only
        for week, offset, width in zip(bar.x, bar.offset, bar.width, strict=True):
            left = week + dt.timedelta(milliseconds=offset)
            assert Q3.start <= left and left + dt.timedelta(milliseconds=width) <= Q3.end


@pytest.mark.parametrize("chart", ["outcomes-by-automation", "firing", "approvals"])
def test_automation_names_are_printed_whole_or_spelled_out_under_the_chart(files: dict[Any, bytes],
                                                                          analytics: Analytics, chart: str) -> None:
    ids = sorted(set(analytics.approvals["definition_id"]) if chart == "approvals"
                 else set(analytics.per_definition["definition_id"]))
    demo = "".join(svg_texts(files["demo", chart, "svg"]))
    assert all(d in demo for d in ids), "a demo name is shortened: they fit wrapped"
    long = svg_texts(files["long-names", chart, "svg"])
    note = " ".join(t for t in long if not t.startswith("Runledger ·"))
    assert all(f"= {long_name(d)}" in note or long_name(d) in "".join(long) for d in ids)


def test_the_footer_is_the_lowest_text_and_the_legend_stays_above_it(files: dict[Any, bytes]) -> None:
    for chart in CHARTS:
        _, boxes = svg_text_boxes(files["demo", chart, "svg"])
        [footer] = [b for b in boxes if b.text.startswith("Runledger · ")]
        assert "by sigrid" in footer.text
        assert all(b.y1 <= footer.y0 for b in boxes if b is not footer), chart


# --- the brief ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def briefs(demo_quarter_path: str, tmp_path_factory: pytest.TempPathFactory,
           monkeypatch_module: pytest.MonkeyPatch) -> dict[str, bytes]:
    """The quarter's brief, and one limited to three automations in a workspace with a long name, both
    made by the CLI without RUNLEDGER_BASE_URL (so their links assume the default, and say so)."""
    monkeypatch_module.delenv("RUNLEDGER_BASE_URL", raising=False)
    folder = tmp_path_factory.mktemp("briefs")
    path = copy_demo(demo_quarter_path, folder, LONG_WORKSPACE)
    out = {}
    limited = ["--definition", "aml-monitor-failure", "--definition", "kyc-weekly-review",
               "--definition", "post-incident-review-check"]
    for name, extra in (("quarter", []), ("limited", limited)):
        target = folder / f"{name}.pdf"
        code = main(["--db", path, "brief", "--from", "2026-07-01", "--to", "2026-09-30", *extra, "--out",
                     str(target), "--as", "sigrid"], out=lambda _: None)
        assert code == EXIT_OK
        out[name] = target.read_bytes()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"brief-{name}.pdf").write_bytes(out[name])
    return out


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.mark.parametrize("name", ["quarter", "limited"])
def test_every_brief_page_keeps_its_text_inside_and_out_of_the_footer_band(briefs: dict[str, bytes],
                                                                           name: str) -> None:
    for n, page in enumerate(pdf_pages(briefs[name]), start=1):
        assert_text_fits(page.runs, page.media_box, f"brief {name}, page {n}")
        crossing = [str(r) for r in page.runs if r.y0 < BODY_BOTTOM - 0.5 and r.y1 > FOOTER_RULE]
        assert not crossing, f"page {n}: text between the body and the footer: {crossing}"
        low = [str(i) for i in page.images if i.y0 < BODY_BOTTOM - 0.5]
        assert not low, f"page {n}: a chart reaches into the footer band: {low}"


@pytest.mark.parametrize("name", ["quarter", "limited"])
def test_every_footer_names_the_member_and_is_not_cut(briefs: dict[str, bytes], name: str) -> None:
    pages = pdf_pages(briefs[name])
    for n, page in enumerate(pages, start=1):
        footer = " ".join(r.text for r in sorted(page.runs, key=lambda r: -r.y0) if r.y1 <= FOOTER_RULE)
        assert "…" not in footer, f"page {n}: the footer is shortened: {footer}"
        assert "UTC by sigrid" in footer and f"Page {n} of {len(pages)}" in footer, footer
        assert LONG_WORKSPACE in footer and "2026-07-01 to 2026-09-30 (Q3 2026)" in footer, footer
        assert re.search(r"Audit chain head: entry \d+, [0-9a-f]{64}", footer), footer


def test_the_brief_charts_are_complete_pictures(briefs: dict[str, bytes]) -> None:
    images = [img for page in PdfReader(io.BytesIO(briefs["quarter"])).pages for img in page.images]
    assert len(images) == 5
    for img in images:
        buf = io.BytesIO()
        img.image.convert("RGB").save(buf, format="PNG")
        assert png_border_ink(buf.getvalue()) == [], f"{img.name}: cut at the edge"


@pytest.mark.parametrize("variant,chart", CASES, ids=[f"{v}-{c}" for v, c in CASES])
def test_the_brief_charts_text_lies_inside_and_apart(analytics: Analytics, variant: str, chart: str) -> None:
    """The figure the brief prints, drawn as SVG at the brief's width (its PNG has the same layout)."""
    from reporting.brief import CHART_WIDTH_PX, print_chart
    from reporting.exports import chart_renderer

    fig = print_chart(chart, analytics if variant == "demo" else long_named(analytics))
    if fig is None:  # the brief leaves out a chart with nothing to plot
        return
    view, boxes = svg_text_boxes(chart_renderer.render(fig, "svg", width=CHART_WIDTH_PX))
    assert_text_fits(boxes, view, f"brief's {variant} {chart}")


def test_a_brief_without_runledger_base_url_says_its_links_assume_the_default(briefs: dict[str, bytes]) -> None:
    reader = PdfReader(io.BytesIO(briefs["quarter"]))
    first = " ".join(reader.pages[0].extract_text().split())
    note = "Links assume the default http://localhost:8501/ because RUNLEDGER_BASE_URL was not set."
    assert note in first
    assert reader.metadata is not None and reader.metadata["/RunledgerLinks"] == note
    assert note in str(reader.metadata.get("/Keywords"))
