"""A subject's story as a file: CSV or PDF, each stating its provenance, made through the audited export path
(``begin_export``: the member needs ``export``; ``record_export``: ``subject.exported`` with the file's SHA-256).
"""

from __future__ import annotations

import io
import re
from xml.sax.saxutils import escape

import polars as pl
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import LongTable, Paragraph, SimpleDocTemplate, Spacer, TableStyle

from core.roles import Actor
from reporting.exports import ExportedFile, ExportRefused, render_table
from reporting.fonts import BOLD, FONT
from reporting.provenance import Provenance, begin_export, record_export
from store.views.subject_story import read_subject_story
from store.workspace import Workspace

STORY_FORMATS = ("csv", "pdf")
_MIME = {"csv": "text/csv", "pdf": "application/pdf"}
COLUMNS = {"at": "When (UTC)", "what": "What", "detail": "Detail", "run_id": "Run", "item_id": "Item", "by": "By"}


def story_frame(ws: Workspace, kind: str, subject_id: str) -> tuple[pl.DataFrame, bool]:
    """The story as a table (oldest first), and whether it was cut at the item limit."""
    with ws.read() as conn:
        entries, cut = read_subject_story(conn, kind, subject_id)
    frame = pl.DataFrame([{**e, "at": e["at"].strftime("%Y-%m-%d %H:%M:%S") if e["at"] else ""} for e in entries],
                         schema={c: pl.String for c in COLUMNS})
    return frame, cut


def story_file_name(kind: str, subject_id: str, fmt: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", subject_id)[:80]
    return f"runledger-subject-{kind}-{safe}.{fmt}"


def export_subject_story(ws: Workspace, actor: Actor, kind: str, subject_id: str, fmt: str) -> ExportedFile:
    if fmt not in STORY_FORMATS:
        raise ExportRefused(f"a subject's story exports as {', '.join(STORY_FORMATS)}, not {fmt!r}")
    name = story_file_name(kind, subject_id, fmt)
    prov = begin_export(ws, actor, "subject", name, "all time", {"register": kind, "subject": subject_id})
    frame, cut = story_frame(ws, kind, subject_id)
    title = f"The story of {kind} {subject_id}" + (" (its first items only)" if cut else "")
    content = (render_table(frame.rename(COLUMNS), "csv", prov, title) if fmt == "csv"
               else _pdf(frame, prov, title))
    return ExportedFile(name, _MIME[fmt], content, record_export(ws, actor, "subject", name, fmt, content, prov))


def _pdf(frame: pl.DataFrame, prov: Provenance, title: str) -> bytes:
    body = ParagraphStyle("body", fontName=FONT, fontSize=8, leading=10)
    head = ParagraphStyle("head", parent=body, fontName=BOLD)
    big = ParagraphStyle("title", parent=body, fontName=BOLD, fontSize=15, leading=19)
    out = [Paragraph(escape(title), big), Spacer(1, 3 * mm)]
    out += [Paragraph(f"<b>{escape(k)}:</b> {escape(str(v))}", body) for k, v in prov.items()]
    out.append(Spacer(1, 4 * mm))
    rows = [[Paragraph(escape(label), head) for label in COLUMNS.values()]]
    rows += [[Paragraph(escape(str(r[c] or "")), body) for c in COLUMNS] for r in frame.iter_rows(named=True)]
    if len(rows) == 1:
        rows.append([Paragraph("Nothing was recorded about this subject.", body), "", "", "", "", ""])
    widths = [30 * mm, 38 * mm, 105 * mm, 26 * mm, 34 * mm, 34 * mm]
    table = LongTable(rows, colWidths=widths, repeatRows=1)
    table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.3, colors.HexColor("#c8ccd2")),
                               ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef0f3")),
                               ("VALIGN", (0, 0), (-1, -1), "TOP")]))
    out.append(table)
    buf = io.BytesIO()

    def footer(canvas, doc) -> None:  # noqa: ANN001 - reportlab's callback
        canvas.setFont(FONT, 7)
        canvas.drawString(12 * mm, 8 * mm, prov.one_line()[:170])
        canvas.drawRightString(landscape(A4)[0] - 12 * mm, 8 * mm, f"Page {doc.page}")

    doc = SimpleDocTemplate(buf, pagesize=landscape(A4), leftMargin=12 * mm, rightMargin=12 * mm,
                            topMargin=12 * mm, bottomMargin=15 * mm, title=title, author=prov.generated_by,
                            subject=f"{prov.filters}", creator="Runledger")
    doc.build(out, onFirstPage=footer, onLaterPages=footer)
    return buf.getvalue()
