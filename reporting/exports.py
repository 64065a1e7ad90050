"""Chart and table exports, each carrying its provenance and each audited.

Charts render through kaleido with Debian's chromium. A cold render starts a browser (~3.5 s or more);
one export server is kept alive for the process, so a warm render costs ~0.2 s. Provenance is both
visible (a footer line on the chart, header lines in a CSV, a sheet in a workbook) and embedded (PNG
text chunks, SVG metadata, PDF document info, Parquet schema metadata), so it survives being pasted.
"""

from __future__ import annotations

import atexit
import io
import json
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import plotly.graph_objects as go
import polars as pl

from core.roles import Actor
from reporting.analytics import Analytics
from reporting.charts import CHARTS, with_provenance
from reporting.provenance import Provenance, begin_export, record_export
from store.workspace import Workspace

CHART_FORMATS = ("png", "svg", "pdf")
TABLE_FORMATS = ("csv", "xlsx", "parquet")
MIME = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf", "csv": "text/csv",
        "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "parquet": "application/vnd.apache.parquet", "zip": "application/zip"}


class ExportRefused(ValueError):
    """An unknown chart, table or format: the message lists what exists."""


@dataclass(frozen=True)
class ExportedFile:
    file_name: str
    mime: str
    content: bytes
    sha256: str


# --- charts ----------------------------------------------------------------------------------------------
EXPORT_WIDTH_PX = 1000  # every exported chart; the brief prints its own at brief.CHART_WIDTH_PX


async def _print_pdf_edge_to_edge(tab: Any) -> str:
    """Kaleido 1.5 prints its PDF with 0.1 in margins on a page the size of the figure, so chromium shrinks
    the figure into the smaller printable area and pushes its last 7 pt off the page (the provenance footer
    with it). Printing with no margins gives a page that is exactly the figure, as the PNG and SVG are."""
    from kaleido._kaleido_tab import _devtools_utils as devtools

    response = await tab.send_command("Page.printToPDF", params={
        "printBackground": True, "marginTop": 0, "marginBottom": 0, "marginLeft": 0, "marginRight": 0,
        "preferCSSPageSize": True, "pageRanges": "1"})
    devtools._raise_error(response)
    return response.get("result", {}).get("data")


class _ChartRenderer:
    """One kaleido export server per process, started on first use and serialised by a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = False

    def render(self, fig: go.Figure, fmt: str, width: int = EXPORT_WIDTH_PX) -> bytes:
        import kaleido

        with self._lock:
            if not self._started:
                self._print_pdf_without_margins()
                kaleido.start_sync_server(silence_warnings=True)
                atexit.register(kaleido.stop_sync_server, silence_warnings=True)
                self._started = True
            height = int(fig.layout.height or 420)
            opts = {"format": fmt, "width": width, "height": height, "scale": 2 if fmt == "png" else 1}
            return bytes(kaleido.calc_fig_sync(fig, opts=opts))

    @staticmethod
    def _print_pdf_without_margins() -> None:
        """Swap kaleido's PDF print step for one without margins (see ``_print_pdf_edge_to_edge``). It is a
        private function of the pinned kaleido: if a new version moves it, fail loudly rather than cut PDFs."""
        from kaleido._kaleido_tab import _devtools_utils as devtools

        if not callable(getattr(devtools, "print_pdf", None)):
            raise RuntimeError("kaleido changed: its print_pdf step is gone; re-check PDF margins (exports.py)")
        devtools.print_pdf = _print_pdf_edge_to_edge


chart_renderer = _ChartRenderer()


def _png_text_chunk(keyword: str, text: str) -> bytes:
    data = keyword.encode("latin-1") + b"\x00" + text.encode("latin-1", "replace")
    return struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))


def embed_chart_provenance(content: bytes, fmt: str, provenance: Provenance, title: str,
                           extra: dict[str, str] | None = None) -> bytes:
    """The provenance inside the file; ``extra`` adds PDF document-info entries (the brief's links)."""
    meta = json.dumps(provenance.as_dict(), sort_keys=True)
    if fmt == "png":  # text chunks right after IHDR (8-byte signature + 25-byte IHDR chunk)
        head, tail = content[:33], content[33:]
        return head + _png_text_chunk("Title", title) + _png_text_chunk("Software", "Runledger") + \
            _png_text_chunk("Comment", provenance.one_line()) + _png_text_chunk("Runledger-Provenance", meta) + tail
    if fmt == "svg":
        text = content.decode("utf-8")
        at = text.index(">", text.index("<svg")) + 1
        block = (f"<metadata><runledger-provenance xmlns=\"urn:runledger:provenance\">{escape(meta)}"
                 f"</runledger-provenance></metadata><!-- {escape(provenance.one_line())} -->")
        return (text[:at] + block + text[at:]).encode("utf-8")
    if fmt == "pdf":
        from pypdf import PdfReader, PdfWriter

        writer = PdfWriter(clone_from=PdfReader(io.BytesIO(content)))
        writer.add_metadata({"/Title": title, "/Creator": "Runledger", "/Subject": provenance.one_line(),
                             "/RunledgerProvenance": meta, **(extra or {})})
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()
    raise ExportRefused(f"charts export as {', '.join(CHART_FORMATS)}, not {fmt!r}")


def render_chart(fig: go.Figure, fmt: str, provenance: Provenance, title: str) -> bytes:
    """The file a member downloads: laid out for its width (``chart_layout``), footer and metadata added."""
    static = with_provenance(fig, provenance, EXPORT_WIDTH_PX)
    return embed_chart_provenance(chart_renderer.render(static, fmt, EXPORT_WIDTH_PX), fmt, provenance, title)


# --- tables ----------------------------------------------------------------------------------------------
TABLES: dict[str, tuple[str, Callable[[Analytics], pl.DataFrame]]] = {
    "per-automation": ("Runs, items and outcomes per automation", lambda a: a.per_definition),
    "firing": ("Expected against actual firing", lambda a: a.firing_frame()),
    "weekly-outcomes": ("Item outcomes by week", lambda a: a.weekly_outcomes),
    "failure-causes": ("Failure causes", lambda a: a.failure_causes),
    "completion-times": ("Time from trigger to completion", lambda a: a.completion_times),
    "approvals": ("Approvals by decision", lambda a: a.approvals),
}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _inert_for_spreadsheets(df: pl.DataFrame) -> pl.DataFrame:
    """Text that a spreadsheet would run as a formula (``=HYPERLINK(…)`` in a subject name) gets a leading
    apostrophe, the usual guard: the value still reads the same, and nothing executes."""
    exprs = [pl.when(pl.any_horizontal(*[pl.col(c).str.starts_with(p) for p in _FORMULA_START]))
             .then(pl.lit("'") + pl.col(c)).otherwise(pl.col(c)).alias(c)
             for c, t in df.schema.items() if t == pl.String]
    return df.with_columns(exprs) if exprs else df


def render_table(df: pl.DataFrame, fmt: str, provenance: Provenance, title: str) -> bytes:
    meta = json.dumps(provenance.as_dict(), sort_keys=True)
    if fmt == "csv":
        header = "".join(f"# {k}: {v}\n" for k, v in [("Table", title), *provenance.items()])
        return (header + _inert_for_spreadsheets(df).write_csv()).encode("utf-8")
    if fmt == "xlsx":
        import xlsxwriter

        buf = io.BytesIO()
        with xlsxwriter.Workbook(buf, {"remove_timezone": True}) as wb:
            _inert_for_spreadsheets(df).write_excel(workbook=wb, worksheet="data", autofit=True)
            sheet = wb.add_worksheet("provenance")
            for i, (k, v) in enumerate([("Table", title), *provenance.items()]):
                sheet.write_string(i, 0, k)
                sheet.write_string(i, 1, str(v))
            sheet.set_column(0, 0, 22)
            sheet.set_column(1, 1, 100)
            wb.set_properties({"title": title, "subject": provenance.period, "author": provenance.generated_by,
                               "company": "Runledger", "comments": meta})
        return buf.getvalue()
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = df.to_arrow()
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               b"runledger.provenance": meta.encode(),
                                               b"runledger.table": title.encode()})
        buf = io.BytesIO()
        pq.write_table(table, buf)
        return buf.getvalue()
    raise ExportRefused(f"tables export as {', '.join(TABLE_FORMATS)}, not {fmt!r}")


# --- audited exports -------------------------------------------------------------------------------------
def export_file_name(what: str, a: Analytics, fmt: str) -> str:
    """``runledger-outcome-trend-20260701-20260930.png``: what, which days, which format."""
    return f"runledger-{what}-{a.period.start:%Y%m%d}-{a.period.last_day:%Y%m%d}.{fmt}"


def _export(ws: Workspace, actor: Actor, analytics: Analytics, kind: str, what: str, fmt: str,
            registry: dict[str, tuple[str, Callable[[Analytics], Any]]], formats: tuple[str, ...],
            render: Callable[[Any, str, Provenance, str], bytes]) -> ExportedFile:
    """One audited export: check the name and format, authorize (``begin_export``), render, record."""
    if what not in registry:
        raise ExportRefused(f"there is no {kind} {what!r}; the {kind}s are: {', '.join(registry)}")
    if fmt not in formats:
        raise ExportRefused(f"{kind}s export as {', '.join(formats)}, not {fmt!r}")
    title, build = registry[what]
    name = export_file_name(what, analytics, fmt)
    prov = begin_export(ws, actor, kind, name, analytics.period.label, analytics.period.filters())
    content = render(build(analytics), fmt, prov, title)
    return ExportedFile(name, MIME[fmt], content, record_export(ws, actor, kind, name, fmt, content, prov))


def export_chart(ws: Workspace, actor: Actor, analytics: Analytics, chart: str, fmt: str) -> ExportedFile:
    """Render one analytics chart as PNG, SVG or PDF; the member needs ``export``; the file is audited."""
    return _export(ws, actor, analytics, "chart", chart, fmt, CHARTS, CHART_FORMATS, render_chart)


def export_table(ws: Workspace, actor: Actor, analytics: Analytics, table: str, fmt: str) -> ExportedFile:
    """Write one analytics table as CSV, XLSX or Parquet; the member needs ``export``; the file is audited."""
    return _export(ws, actor, analytics, "table", table, fmt, TABLES, TABLE_FORMATS, render_table)
