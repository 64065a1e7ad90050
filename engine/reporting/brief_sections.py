"""The brief's pages as reportlab flowables: title and provenance, headline figures, the integrity
statement, the automations, approvals and dismissals, the charts and the appendix of runs.

All text from the workspace (titles, subject names, causes, reasons) passes through ``text()``, which
escapes it, because reportlab's Paragraph parses a mini-markup: a subject called ``<b>x</b>`` or
``<a href=…>`` must print as those characters, never become formatting or a link.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Flowable, Image, KeepTogether, Paragraph, Spacer, Table, TableStyle

from engine.palette import OUTCOME_COLORS, STATUS_COLORS
from engine.reporting.brief_text import OUTCOME_WORDS, plural
from engine.reporting.integrity import IntegrityStatement
from engine.reporting.provenance import Provenance

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
INK, MUTED, RULE, SHADE = colors.HexColor("#1f2933"), colors.HexColor("#616e7c"), colors.HexColor("#cbd2d9"), \
    colors.HexColor("#f3f5f7")
PASS, FAIL, LINK = colors.HexColor(OUTCOME_COLORS["succeeded"]), colors.HexColor(OUTCOME_COLORS["failed"]), \
    colors.HexColor("#1f5fbf")
CONTENT_WIDTH = 170 * mm  # A4 (210 mm) less 20 mm margins


def register_fonts() -> tuple[str, str]:
    """DejaVu Sans (it has ✓, ✗, → and every accent a member's name may carry), else Helvetica."""
    if "DejaVuSans" in pdfmetrics.getRegisteredFontNames():
        return "DejaVuSans", "DejaVuSans-Bold"
    try:
        for name, file in (("DejaVuSans", "DejaVuSans.ttf"), ("DejaVuSans-Bold", "DejaVuSans-Bold.ttf"),
                           ("DejaVuSans-Oblique", "DejaVuSans-Oblique.ttf"),
                           ("DejaVuSans-BoldOblique", "DejaVuSans-BoldOblique.ttf")):
            pdfmetrics.registerFont(TTFont(name, str(FONT_DIR / file)))
    except Exception:  # noqa: BLE001 - a machine without DejaVu still gets a brief, in Helvetica
        return "Helvetica", "Helvetica-Bold"
    pdfmetrics.registerFontFamily("DejaVuSans", normal="DejaVuSans", bold="DejaVuSans-Bold",
                                  italic="DejaVuSans-Oblique", boldItalic="DejaVuSans-BoldOblique")
    return "DejaVuSans", "DejaVuSans-Bold"


FONT, BOLD = register_fonts()


def _style(name: str, size: float, leading: float, font: str = FONT, color: Any = INK,
           **kw: Any) -> ParagraphStyle:
    return ParagraphStyle(name, fontName=font, fontSize=size, leading=leading, textColor=color, **kw)


S = {
    "kicker": _style("kicker", 9, 12, BOLD, MUTED),
    "title": _style("title", 21, 26, BOLD, spaceAfter=2),
    "period": _style("period", 13, 17, color=MUTED, spaceAfter=10),
    "h1": _style("h1", 14, 18, BOLD, spaceBefore=12, spaceAfter=6, keepWithNext=1),
    "h2": _style("h2", 10.5, 14, BOLD, spaceBefore=8, spaceAfter=1, keepWithNext=1),
    "intro": _style("intro", 7.8, 10, color=MUTED, spaceAfter=2, keepWithNext=1),
    "body": _style("body", 9, 12.6, spaceAfter=5),
    "lead": _style("lead", 11, 15, BOLD, spaceBefore=4, spaceAfter=4),
    "meta": _style("meta", 7.8, 10, color=MUTED, spaceAfter=2),
    "cell": _style("cell", 7.4, 9.2),
    "small": _style("small", 7, 8.8),
    "smallnum": _style("smallnum", 7, 8.8, alignment=TA_RIGHT),
    "cellb": _style("cellb", 7.4, 9.2, BOLD),
    "num": _style("num", 7.4, 9.2, alignment=TA_RIGHT),
    "big": _style("big", 20, 24, BOLD),
    "label": _style("label", 7.8, 10, color=MUTED),
    "note": _style("note", 7.4, 9.4, color=MUTED),
}


def text(value: Any, style: str = "body") -> Paragraph:
    """Workspace text as a paragraph that prints literally (escaped)."""
    return Paragraph(escape("" if value is None else str(value)), S[style])


def markup(trusted: str, style: str = "body") -> Paragraph:
    """Markup composed here, with every workspace value inside it already escaped."""
    return Paragraph(trusted, S[style])


def link(href: str, label: str, style: str = "cell") -> Paragraph:
    return markup(f'<a href="{escape(href, {chr(34): "&quot;"})}" color="#{LINK.hexval()[2:]}"><u>'
                  f'{escape(label)}</u></a>', style)


def _grid(rows: list[list[Any]], widths: Sequence[float], extra: Sequence[tuple[Any, ...]] = (),
          header: bool = True) -> Table:
    t = Table(rows, colWidths=list(widths), repeatRows=1 if header else 0)
    style: list[tuple[Any, ...]] = [
        ("VALIGN", (0, 0), (-1, -1), "TOP"), ("FONT", (0, 0), (-1, -1), FONT, 7.4),
        ("TOPPADDING", (0, 0), (-1, -1), 2.2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2.2),
        ("LEFTPADDING", (0, 0), (-1, -1), 3), ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, RULE)]
    if header:
        style += [("BACKGROUND", (0, 0), (-1, 0), SHADE), ("LINEBELOW", (0, 0), (-1, 0), 0.8, INK)]
    t.setStyle(TableStyle(style + list(extra)))
    return t


def _head(*labels: str) -> list[Paragraph]:
    return [text(label, "cellb") for label in labels]


# --- title page -------------------------------------------------------------------------------------------
def title_block(prov: Provenance, limited_to: list[str] | None = None) -> list[Flowable]:
    """Title, period and provenance; a brief limited to some automations says so before any figure."""
    rows = [[text(k, "label"), text(v, "cell")] for k, v in prov.items() if k != "Generated by"]
    out: list[Flowable] = [text("RUNLEDGER · AUDIT COMMITTEE BRIEF", "kicker"),
                           text("Automation activity and its integrity", "title"), text(prov.period, "period")]
    if limited_to:
        out.append(markup(f'<font color="#b35c00">Limited to {escape(plural(len(limited_to), "automation"))}: '
                          f'{escape(", ".join(limited_to))}. Figures for other automations are not '
                          'included.</font>', "lead"))
    return out + [_grid(rows, [38 * mm, CONTENT_WIDTH - 38 * mm], header=False), Spacer(1, 6 * mm)]


def headline_block(totals: dict[str, int], statement: IntegrityStatement, period_word: str) -> list[Flowable]:
    ok = statement.passed
    figures = [(f"{totals['runs']:,}", "runs"), (f"{totals['actions_invoked']:,}", "actions invoked"),
               (f"{totals['items']:,}", "run items"),
               ("0", "unintended consequences") if ok else
               (f"{len(statement.failed)}", "integrity checks failed")]
    cells = [[markup(escape(n), "big") for n, _ in figures], [text(label, "label") for _, label in figures]]
    box = Table(cells, colWidths=[CONTENT_WIDTH / 4] * 4)
    box.setStyle(TableStyle([
        ("BOX", (0, 0), (-1, -1), 0.6, RULE), ("LINEAFTER", (0, 0), (-2, -1), 0.6, RULE),
        ("BACKGROUND", (0, 0), (-1, -1), SHADE), ("TOPPADDING", (0, 0), (-1, 0), 7),
        ("BOTTOMPADDING", (0, 1), (-1, 1), 7), ("LEFTPADDING", (0, 0), (-1, -1), 8),
        ("TEXTCOLOR", (3, 0), (3, 0), PASS if ok else FAIL),
        ("BACKGROUND", (3, 0), (3, -1), colors.HexColor("#e8f3ea" if ok else "#fbe9e9"))]))
    sentence = (f"{plural(totals['runs'], 'run')} across {period_word}, "
                f"{plural(totals['actions_invoked'], 'action')} invoked, {statement.headline()}.")
    outcome_cells = [[text(OUTCOME_WORDS[o], "label") for o in OUTCOME_WORDS],
                     [markup(f'<font color="{OUTCOME_COLORS[o]}">■</font> {totals[o]:,}', "lead")
                      for o in OUTCOME_WORDS]]
    outcomes = Table(outcome_cells, colWidths=[CONTENT_WIDTH / 5] * 5)
    outcomes.setStyle(TableStyle([("LEFTPADDING", (0, 0), (-1, -1), 8), ("TOPPADDING", (0, 0), (-1, -1), 1),
                                  ("BOTTOMPADDING", (0, 0), (-1, -1), 1)]))
    return [box, Spacer(1, 4 * mm), text(sentence, "lead"),
            text(f"Item outcomes across the {plural(totals['items'], 'item')}:", "meta"), outcomes,
            Spacer(1, 3 * mm)]


def integrity_glance(statement: IntegrityStatement) -> list[Flowable]:
    """The claims and their verdicts on the first page; the counts follow in the integrity statement."""
    rows = []
    extra: list[tuple[Any, ...]] = []
    for i, claim in enumerate(statement.claims):
        rows.append([text(claim.claim, "cell"), markup(f"<b>{'PASS' if claim.passed else 'FAIL'}</b>", "cell")])
        extra.append(("TEXTCOLOR", (1, i), (1, i), PASS if claim.passed else FAIL))
    return [text("Integrity at a glance", "h2"),
            text("The claims behind the headline figure; each claim's counts are in the integrity statement "
                 "that follows.", "intro"),
            _grid(rows, [CONTENT_WIDTH - 22 * mm, 22 * mm], extra, header=False)]


def reading_guide(base_url: str) -> list[Flowable]:
    lines = [
        ("Run", "one execution of an automation, caused by one trigger (a schedule, a workspace event or an "
                "integration signal)."),
        ("Run item", "one action on one subject within a run (an account, a supplier, an incident …)."),
        ("Actions invoked", "items whose action was handed to the owning module at least once (succeeded, "
                            "failed or replayed). Skipped items, dismissed approvals and items still awaiting "
                            "approval are not counted; a retry of the same item is not counted again."),
        ("Unintended consequence", "a downstream record or action the integrity checks below find should not "
                                   "exist: untraced, executed twice, taken although the condition did not "
                                   "hold, or taken without a required approval."),
        ("Trail", f"every run id in this brief links to its audit-grade page ({base_url}run?id=…); the "
                  "appendix lists every run of the period."),
    ]
    rows = [[text(k, "cellb"), text(v, "cell")] for k, v in lines]
    return [text("How to read this brief", "h2"), _grid(rows, [34 * mm, CONTENT_WIDTH - 34 * mm], header=False)]


# --- integrity --------------------------------------------------------------------------------------------
def integrity_block(statement: IntegrityStatement) -> list[Flowable]:
    rows: list[list[Any]] = [_head("Claim and what was counted", "Count", "Result")]
    extra: list[tuple[Any, ...]] = []
    for claim in statement.claims:
        r = len(rows)
        rows.append([text(claim.claim, "cellb"), "", markup(
            f'<b>{"PASS" if claim.passed else "FAIL"}</b>', "cell")])
        extra += [("BACKGROUND", (0, r), (-1, r), SHADE), ("SPAN", (0, r), (1, r)),
                  ("TEXTCOLOR", (2, r), (2, r), PASS if claim.passed else FAIL)]
        for fact in claim.facts:
            mark = "" if not fact.violation else ("✓ none" if fact.ok else f"✗ {fact.count:,}")
            colour = PASS if fact.ok else FAIL
            rows.append([text(fact.text, "cell"), text(f"{fact.count:,}", "num"),
                         markup(f'<font color="#{colour.hexval()[2:]}">{escape(mark)}</font>', "cell")])
        if claim.scope_note:
            rows.append([text(claim.scope_note, "note"), "", ""])
            extra.append(("SPAN", (0, len(rows) - 1), (-1, len(rows) - 1)))
    verdict = ("Every check passes: 0 unintended consequences." if statement.passed else
               f"{len(statement.failed)} of {len(statement.claims)} checks FAILED ({statement.violations:,} "
               "counts contradict them; one record can contradict several checks), so this brief cannot "
               "state that there were no unintended consequences.")
    return [text("Integrity statement", "h1"),
            text("Counted in SQL over the period's runs, items, attempts, approvals and the owning modules' "
                 "records at the moment this brief was generated. A claim passes when every count marked "
                 "in the Result column is zero; counts without a mark are context.", "body"),
            _grid(rows, [CONTENT_WIDTH - 44 * mm, 20 * mm, 24 * mm], extra),
            Spacer(1, 2 * mm), markup(f'<font color="#{(PASS if statement.passed else FAIL).hexval()[2:]}">'
                                      f'{escape(verdict)}</font>', "lead")]


# --- automations ------------------------------------------------------------------------------------------
def overview_table(per_definition: list[dict[str, Any]], expected: dict[str, int]) -> Table:
    cols = ["succeeded", "failed", "skipped", "awaiting-approval", "idempotent-replay"]
    rows: list[list[Any]] = [_head("Automation", "Runs", "Expected", "Items", "Actions", "Succeeded", "Failed",
                                   "Skipped", "Awaiting approval", "Replayed")]
    for d in per_definition:
        exp = expected.get(d["definition_id"])
        rows.append([text(d["title"], "cell"), text(f"{d['runs']:,}", "num"),
                     text("—" if exp is None else f"{exp:,}", "num"), text(f"{d['items']:,}", "num"),
                     text(f"{d['actions_invoked']:,}", "num"), *[text(f"{d[c]:,}", "num") for c in cols]])
    tot = {k: sum(int(d[k]) for d in per_definition) for k in ("runs", "items", "actions_invoked", *cols)}
    rows.append([text("All automations", "cellb"), text(f"{tot['runs']:,}", "num"), "",
                 text(f"{tot['items']:,}", "num"), text(f"{tot['actions_invoked']:,}", "num"),
                 *[text(f"{tot[c]:,}", "num") for c in cols]])
    w = [10.5, 16, 11, 13.5, 18.5, 12, 15, 16, 16]
    return _grid(rows, [CONTENT_WIDTH - sum(w) * mm, *(x * mm for x in w)],
                 [("LINEABOVE", (0, -1), (-1, -1), 0.8, INK)])


def automation_block(title: str, meta: str, sentences: list[str]) -> Flowable:
    return KeepTogether([text(title, "h2"), text(meta, "meta"), text(" ".join(sentences), "body")])


def causes_table(causes: list[dict[str, Any]], titles: dict[str, str]) -> Table:
    rows: list[list[Any]] = [_head("Automation", "Cause (first clause)", "Class", "Failed attempts", "Items",
                                   "Recovered", "Still failed")]
    for c in causes:
        rows.append([text(titles.get(c["definition_id"], c["definition_id"]), "cell"),
                     text(c["failure_cause"], "cell"), text(c["failure_class"], "cell"),
                     text(f"{c['attempts']:,}", "num"), text(f"{c['items']:,}", "num"), text(f"{c['recovered']:,}", "num"),
                     text(f"{c['still_failed']:,}", "num")])
    return _grid(rows, [x * mm for x in (30, 60, 17, 17, 12, 18, 16)])


def approvals_table(decisions: list[dict[str, Any]], titles: dict[str, str], run_href: Any,
                    waited: Any) -> Table:
    rows: list[list[Any]] = [_head("Run", "Automation", "Subject", "Decision", "By", "Decided (UTC)", "Waited",
                                   "Reason")]
    for d in decisions:
        decided = f"{d['decided_at']:%Y-%m-%d %H:%M}" if d["decided_at"] else "—"
        rows.append([link(run_href(d["run_id"]), d["run_id"]),
                     text(titles.get(d["definition_id"], d["definition_id"]), "cell"),
                     text(d["subject_label"], "cell"), text(d["decision"] or "still open", "cell"),
                     text((d["decided_by"] or "—").removeprefix("member:"), "cell"), text(decided, "cell"),
                     text(waited(d), "cell"), text(d["reason"] or "—", "cell")])
    return _grid(rows, [x * mm for x in (19.5, 25, 29, 16, 14, 19, 13, 34.5)])


# --- charts and appendix ----------------------------------------------------------------------------------
def chart_image(png: bytes, width_px: int, height_px: int, max_height: float = 105 * mm) -> Image:
    w = CONTENT_WIDTH
    h = w * height_px / width_px
    if h > max_height:
        w, h = w * max_height / h, max_height
    return Image(io.BytesIO(png), width=w, height=h)


def runs_table(run_rows: list[dict[str, Any]], run_href: Any) -> Table:
    rows: list[list[Any]] = [_head("Run", "Automation", "Ver.", "Trigger", "Triggered (UTC)", "Status", "Items",
                                   "Actions")]
    extra: list[tuple[Any, ...]] = []
    for i, r in enumerate(run_rows, start=1):
        trigger = _trigger_words(r)
        rows.append([link(run_href(r["run_id"]), r["run_id"], "small"), text(r["definition_id"], "small"),
                     text(f"v{r['definition_version']}", "small"), text(trigger, "small"),
                     text(f"{r['triggered_at']:%Y-%m-%d %H:%M}", "small"),
                     markup(f'<font color="{STATUS_COLORS.get(r["status"], "#1f2933")}">■</font> '
                            f'{escape(r["status"])}', "small"),
                     text(f"{r['items']:,}", "smallnum"), text(f"{r['actions_invoked']:,}", "smallnum")])
        if i % 2 == 0:
            extra.append(("BACKGROUND", (0, i), (-1, i), colors.HexColor("#fafbfc")))
    return _grid(rows, [x * mm for x in (19.5, 38.5, 8.5, 34, 26, 19, 10.5, 14)], extra)


def _trigger_words(run: dict[str, Any]) -> str:
    """What fired the run, in the fewest words: the event's type names the event (incident.closed)."""
    kind = run["trigger_kind"]
    if kind == "event" and run.get("event_type"):
        return str(run["event_type"])
    if kind == "manual":
        return f"run now · {str(run['trigger_source']).removeprefix('member:')}"
    return kind if kind == "schedule" else f"{kind} · {run['trigger_source']}"
