"""The audit committee brief: one PDF that tells a period's automation activity and proves its integrity.

It is the spec's third workflow carried to the end: the headline ("59 runs across the quarter, … actions
invoked, 0 unintended consequences"), the integrity statement that gives that last figure its meaning,
one section per automation told as the spec's worked example tells it, approvals and dismissals with
their reasons, the charts, and an appendix linking every run to its audit-grade page. Making it is a
member action: ``export`` is checked first and the file's SHA-256 is audited last (``brief.exported``).
Every page carries the provenance in its footer; the PDF's document info carries it too.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
import polars as pl
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, PageBreak, SimpleDocTemplate

from core.base_url import LinkBase, resolve_base_url
from core.links import run_link
from core.periods import AnalyticsPeriod
from core.roles import Actor
from reporting import brief_sections as sec
from reporting.analytics import Analytics, build_analytics
from reporting.brief_footer import canvas_with_footer
from reporting.brief_text import AutomationFacts, automation_sentences, duration, group_skips
from reporting.chart_layout import fit_layout
from reporting.charts import CHARTS
from reporting.exports import MIME, ExportedFile, chart_renderer, embed_chart_provenance
from reporting.integrity import IntegrityStatement, build_integrity_statement
from reporting.provenance import Provenance, begin_export, record_export
from reporting.remote import REMOTE_PREFIXES, RemoteSummary, summarize_remote
from store.views import brief as bq
from store.views.analytics import AnalyticsFilter, read_approval_decisions
from store.workspace import Workspace

Progress = Callable[[float, str], object]  # what it returns is ignored (a progress bar returns itself)
BRIEF_CHARTS = ("outcomes-by-automation", "outcome-trend", "failure-causes", "firing", "approvals")
CHART_WIDTH_PX = 780  # printed 170 mm wide: the charts' 12 px text comes out at about 7 pt
APPENDIX_LIMIT = 5_000  # beyond this the appendix says how many more there are and links the Runs page
APPROVALS_LIMIT = 500


def brief_file_name(period: AnalyticsPeriod) -> str:
    return f"runledger-brief-{period.start:%Y%m%d}-{period.last_day:%Y%m%d}.pdf"


@dataclass
class BriefData:
    """Everything the pages print, read before any layout so that layout reads nothing."""

    period: AnalyticsPeriod
    provenance: Provenance
    analytics: Analytics
    statement: IntegrityStatement
    automations: list[AutomationFacts]
    decisions: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    charts: list[tuple[str, bytes, int]]  # (title, PNG, height in px at CHART_WIDTH_PX)
    links: LinkBase
    remote: list[RemoteSummary] = field(default_factory=list)  # what remote systems answered, per integration

    @property
    def base_url(self) -> str:
        return self.links.url

    def run_href(self, run_id: str) -> str:
        return self.base_url + run_link(run_id).href


def _say(progress: Progress | None) -> Progress:
    """A progress reporter that never goes backwards (a bar that jumps back reads as a restart)."""
    last = [0.0]

    def say(fraction: float, message: str) -> None:
        last[0] = max(last[0], min(1.0, fraction))
        if progress is not None:
            progress(last[0], message)
    return say


def generate_brief(ws: Workspace, actor: Actor, period: AnalyticsPeriod, progress: Progress | None = None,
                   base_url: str | None = None) -> ExportedFile:
    """Build the brief for ``period``; raises ``NotAuthorized`` (audited) when ``actor`` may not export.

    ``base_url`` is where the app that asks is served (the Analytics page passes its own address); without
    it the links use ``RUNLEDGER_BASE_URL`` or, unset, the default, and the provenance says which."""
    say = _say(progress)
    say(0.0, "Checking the export permission")
    name = brief_file_name(period)
    prov = begin_export(ws, actor, "brief", name, period.label, period.filters())
    say(0.05, "Reading the period's runs, items and outcomes")
    analytics = build_analytics(ws, period)
    f = AnalyticsFilter(period.start, period.end, period.definitions)
    with ws.read() as conn:
        shapes = {r["definition_id"]: r for r in bq.summarize_run_shapes(conn, f)}
        statuses = bq.count_runs_by_status(conn, f)
        kinds = bq.count_items_by_subject_kind(conn, f)
        skips = group_skips(bq.count_skips_by_reason(conn, f))
        retries = bq.count_retries_by_actor(conn, f)
        decisions = read_approval_decisions(conn, f, limit=APPROVALS_LIMIT)
        runs = bq.read_period_runs(conn, f, limit=APPENDIX_LIMIT)
        remote = summarize_remote(bq.read_remote_attempts(conn, f, REMOTE_PREFIXES))
    say(0.2, "Checking integrity and verifying the audit chain")
    statement = build_integrity_statement(ws, period)
    automations = [_automation(row, analytics, shapes, statuses, kinds, skips, retries, decisions, statement)
                   for row in analytics.per_definition.to_dicts()]
    charts = []
    wanted = [c for c in BRIEF_CHARTS if c in CHARTS]
    for i, key in enumerate(wanted):
        title = CHARTS[key][0]
        say(0.3 + 0.45 * i / len(wanted), f"Rendering chart {i + 1} of {len(wanted)}: {title}")
        fig = print_chart(key, analytics)
        if fig is None:  # no failures, no approvals, all zeros: the text says so instead
            continue
        png = chart_renderer.render(fig, "png", width=CHART_WIDTH_PX)
        charts.append((title, png, int(fig.layout.height)))
    say(0.8, "Laying out the PDF")
    data = BriefData(period, prov, analytics, statement, automations, decisions, runs, charts,
                     resolve_base_url(base_url), remote)
    content = render_pdf(data)
    say(0.95, "Recording the export in the audit log")
    digest = record_export(ws, actor, "brief", name, "pdf", content, prov)
    say(1.0, f"Brief ready: {len(content):,} bytes")
    return ExportedFile(name, MIME["pdf"], content, digest)


def _automation(row: dict[str, Any], a: Analytics, shapes: dict[str, dict[str, Any]],
                statuses: list[dict[str, Any]], kinds: list[dict[str, Any]],
                skips: dict[str, list[tuple[str, int]]], retries: list[dict[str, Any]],
                decisions: list[dict[str, Any]], statement: IntegrityStatement) -> AutomationFacts:
    """One automation's facts, picked out of the period-wide aggregates."""
    d_id = row["definition_id"]
    shape = shapes.get(d_id, {})
    own_kinds = sorted((k for k in kinds if k["definition_id"] == d_id), key=lambda k: -k["items"])
    completion = a.completion_times.filter(pl.col("definition_id") == d_id).to_dicts()
    return AutomationFacts(
        definition_id=d_id, title=row["title"], row=row,
        firing=next((c for c in a.firing if c.definition_id == d_id), None),
        min_subjects=int(shape.get("min_subjects") or 0), max_subjects=int(shape.get("max_subjects") or 0),
        versions=(int(shape["min_version"]), int(shape["max_version"])) if shape else None,
        subject_kind=own_kinds[0]["subject_kind"] if own_kinds else "",
        statuses={s["status"]: int(s["runs"]) for s in statuses if s["definition_id"] == d_id},
        skips=skips.get(d_id, []),
        causes=a.failure_causes.filter(pl.col("definition_id") == d_id).to_dicts(),
        retries=[(r["actor"], int(r["retries"]), int(r["items"])) for r in retries if r["definition_id"] == d_id],
        records={m: n for (d, m), n in statement.facts.records_by_definition_module.items() if d == d_id},
        decisions=[x for x in decisions if x["definition_id"] == d_id],
        completion=completion[0] if completion else None)


# --- layout -----------------------------------------------------------------------------------------------
def _story(data: BriefData) -> list[Flowable]:
    a, st = data.analytics, data.statement
    totals = a.totals
    word = "the quarter" if "(Q" in data.period.label else "the period"
    titles = {r["definition_id"]: r["title"] for r in a.per_definition.to_dicts()}
    limited = [titles.get(d, d) for d in data.period.definitions] if data.period.definitions else None
    story: list[Flowable] = [*sec.title_block(data.provenance, limited, data.links.note()),
                             *sec.headline_block(totals, st, word),
                             *sec.integrity_glance(st), *sec.reading_guide(data.base_url), PageBreak(),
                             *sec.integrity_block(st), PageBreak()]

    story += [sec.text("Automations", "h1"),
              sec.text("Runs, items and outcomes of each automation in the period. Expected runs come from each "
                       "automation's trigger: its schedule, or the events and signals received.", "body"),
              sec.overview_table(a.per_definition.to_dicts(), {c.definition_id: c.expected for c in a.firing})]
    for auto in data.automations:
        meta = auto.definition_id
        if auto.versions:
            low, high = auto.versions
            meta += f" · version {low}" if low == high else f" · versions {low} to {high}"
        if auto.firing is not None:
            meta += f" · trigger: {auto.firing.trigger}"
        story.append(sec.automation_block(auto.title, meta, automation_sentences(auto)))
    if a.failure_causes.height:
        story += [sec.text("Failure causes", "h2"),
                  sec.text("Every failed attempt in the period, grouped by cause, including those a retry later "
                           "recovered.", "intro"),
                  sec.causes_table(a.failure_causes.to_dicts(), titles)]
    if data.remote:
        story += [sec.text("Remote systems", "h2"),
                  sec.text("Every attempt of the period's items that reached a remote system, and what it answered. "
                           "Each request carried its item's idempotency key; each attempt's status, headers and "
                           "body digest are in its run's evidence bundle.", "intro"),
                  sec.remote_table(data.remote)]
    story += [sec.text("Approvals and dismissals", "h2")]
    if data.decisions:
        more = " (the first " + f"{APPROVALS_LIMIT:,})" if len(data.decisions) >= APPROVALS_LIMIT else ""
        story += [sec.text(f"Every item of the period's runs that needed approval{more}, with the decision, who "
                           "made it and why.", "intro"),
                  sec.approvals_table(data.decisions, titles, data.run_href, _waited)]
    else:
        story.append(sec.text("No item of the period's runs needed approval.", "body"))

    if data.charts:
        story += [PageBreak(), sec.text("Charts", "h1")]
        for _title, png, height in data.charts:
            story += [sec.chart_image(png, CHART_WIDTH_PX, height)]
    story += [PageBreak(), sec.text("Appendix: every run of the period", "h1"),
              sec.text(f"Each run id links to the run's audit-grade page ({data.base_url}run?id=RUN-…): its "
                       "trigger, items, attempts, records and audit entries.", "intro")]
    if totals["runs"] > len(data.runs):
        story.append(sec.text(f"The first {len(data.runs):,} of {totals['runs']:,} runs are listed; the Runs "
                              "page filtered to this period lists them all.", "meta"))
    story.append(sec.runs_table(data.runs, data.run_href) if data.runs else sec.text("No runs in this period."))
    return story


def _plots_something(fig: go.Figure) -> bool:
    """Whether any trace has a non-zero number (an all-zero bar chart tells the reader nothing)."""
    for trace in fig.data:
        for values in (getattr(trace, "x", None), getattr(trace, "y", None)):
            if values is not None and any(isinstance(v, (int, float)) and not isinstance(v, bool) and v
                                          for v in values):
                return True
    return False


def print_chart(key: str, analytics: Analytics) -> go.Figure | None:
    """A chart as the brief prints it: laid out for CHART_WIDTH_PX (margins from its labels, the legend at
    the right; ``chart_layout``), or None when it would plot nothing. A log axis labelled at every minor
    tick is noise on paper, so it is labelled at the powers of ten only."""
    fig = CHARTS[key][1](analytics)
    if not _plots_something(fig):
        return None
    if fig.layout.xaxis.type == "log":
        fig.update_xaxes(dtick=1)
    return fit_layout(fig, CHART_WIDTH_PX)


def _waited(d: dict[str, Any]) -> str:
    if d["decided_at"] is None:
        return "open"
    return duration((d["decided_at"] - d["opened_at"]).total_seconds())


def render_pdf(data: BriefData) -> bytes:
    """Lay the story out on A4; provenance in the document info, on the first page and in every footer."""
    prov = data.provenance
    title = f"Audit committee brief — {prov.period}"
    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=20 * mm, rightMargin=20 * mm, topMargin=17 * mm,
                            bottomMargin=20 * mm, title=title, author=prov.generated_by, subject=prov.one_line(),
                            creator="Runledger",
                            keywords=[f"{k}: {v}" for k, v in prov.items()] + [f"Links: {data.links.note()}"])
    doc.build(_story(data), canvasmaker=canvas_with_footer(prov))
    return embed_chart_provenance(buf.getvalue(), "pdf", prov, title,
                                  extra={"/RunledgerLinks": data.links.note(), "/RunledgerBaseURL": data.links.url})
