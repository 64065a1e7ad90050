"""A chart laid out for a file: margins measured from its own labels, so every static format is complete.

In a browser Plotly's ``automargin`` grows the margins until tick labels and titles fit. Kaleido's static
export does not (measured on kaleido 1.5: automation names drawn from x≈9 leftwards, out of the picture; a
y-axis title printed over the tick numbers; the x-axis title under the provenance footer). So a chart that
becomes a file passes through ``fit_layout``: every margin is computed here from the text it must hold,
measured with DejaVu Sans (the face the charts ask chromium for), automargin is switched off so that what
is computed is what is drawn, and the legend and the footer get places of their own. The tests read the
rendered files back to prove it.

The builders keep their figures for the page, where the browser's automargin works; long names are already
wrapped there (``wrap_label``), with the full name in the bar's hover and, where one had to be shortened, in
a note under the file's chart.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from reporting.fonts import fill_lines, text_width

TICK, AXIS_TITLE, LEGEND, FOOTER = 12.0, 14.0, 12.0, 9.0  # px: the charts' font, Plotly's title size (+2)
LINE = 1.3  # Plotly's line height for <br>-separated lines, in em
EDGE = 10.0  # px of white kept at every edge of the picture
GAP = 8.0  # px between neighbours: tick labels and their axis title, a title and the footer, …
X_STANDOFF = 5  # x tick labels below the axis: clear of the y axis's lowest label, which centres on it
Y_STANDOFF = 4  # y tick labels left of the axis: a name never touches its bar
TOP = 50.0  # the chart title's band (15 px title, as the builders lay it out)
LEGEND_X = 1.02  # the legend's left edge, in plot widths: just right of the plot
LEGEND_ROW, LEGEND_SYMBOL = 19.0, 40.0  # Plotly's legend entry height and the width before its text
LEGEND_SHARE = 0.3  # of the picture's width, at most, for a legend entry's text: longer names wrap
_TAG = re.compile(r"<[^>]+>")


# --- labels ------------------------------------------------------------------------------------------------
def _runs(line: str) -> list[tuple[str, bool, bool]]:
    """One label line as (text, bold, italic) runs: our markup is only <b> and <i>; the rest is escaped."""
    out, bold, italic = [], False, False
    for part in re.split(r"(<[^>]+>)", line):
        tag = part.lower()
        if tag in ("<b>", "</b>"):
            bold = tag == "<b>"
        elif tag in ("<i>", "</i>"):
            italic = tag == "<i>"
        elif part and not _TAG.fullmatch(part):
            out.append((html.unescape(part), bold, italic))
    return out


def label_lines(label: str) -> list[str]:
    return re.split(r"<br\s*/?>", str(label), flags=re.I)


def label_width(label: str, size: float = TICK) -> float:
    """The widest line of a Plotly label (``<br>`` breaks it, <b>/<i> change the face)."""
    return max((sum(text_width(t, size, b, i) for t, b, i in _runs(line)) for line in label_lines(label)),
               default=0.0)


def label_height(label: str, size: float = TICK) -> float:
    return len(label_lines(label)) * LINE * size


def _pieces(name: str) -> list[str]:
    """Break points a reader expects: after a hyphen, underscore or slash, or at a space."""
    return [p for p in re.split(r"(?<=[-_/ ])", name) if p]


def _fitting(text: str, max_px: float, size: float) -> int:
    """How many of ``text``'s first characters fit in ``max_px`` (at least one: a line always advances)."""
    k = 1
    while k < len(text) and text_width(text[: k + 1], size) <= max_px:
        k += 1
    return k


def wrap_label(name: str, max_px: float, max_lines: int = 2, size: float = TICK) -> str:
    """``name`` in at most ``max_lines`` lines of at most ``max_px`` (Plotly markup, each line escaped).

    Names break where they already break (kyc-weekly-│review); a piece wider than a line is cut by
    characters. What does not fit in ``max_lines`` ends in an ellipsis: callers show the full name
    elsewhere (the bar's hover, and a note under an exported chart: ``shortened_labels``)."""
    lines: list[str] = []
    current = ""
    for piece in _pieces(name):
        while text_width(piece, size) > max_px:  # a single piece wider than a line: cut it
            if current:
                lines.append(current)
                current = ""
            cut = _fitting(piece, max_px, size)
            lines.append(piece[:cut])
            piece = piece[cut:]
        if current and text_width(current + piece, size) > max_px:
            lines.append(current)
            current = ""
        current += piece
    if current:
        lines.append(current)
    lines = [line.rstrip() for line in lines] or [""]
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and text_width(last + "…", size) > max_px:
            last = last[:-1]
        lines = [*lines[:max_lines - 1], last.rstrip() + "…"]
    return "<br>".join(html.escape(line, quote=False) for line in lines)


def name_ticks(fig: go.Figure, axis: str, names: Sequence[str], max_px: float, max_lines: int = 2) -> None:
    """Category ticks that print wrapped names while the data (and a click on a bar) keeps the real one."""
    update = fig.update_xaxes if axis == "x" else fig.update_yaxes
    update(tickmode="array", tickvals=list(names), ticktext=[wrap_label(n, max_px, max_lines) for n in names])


def printed(label: str) -> str:
    """A label's text as one line: a line that ended at a hyphen joins the next without a space."""
    lines = [html.unescape(_TAG.sub("", line)) for line in label_lines(label)]
    return "".join(line if i == len(lines) - 1 or line.endswith(("-", "_", "/")) else line + " "
                   for i, line in enumerate(lines))


def shortened_labels(fig: go.Figure) -> list[tuple[str, str]]:
    """(printed, full) for every tick label that ends in an ellipsis: they are spelled out under the chart."""
    out = []
    for ax in (fig.layout.xaxis, fig.layout.yaxis):
        for val, txt in zip(ax.tickvals or (), ax.ticktext or (), strict=True):
            if str(txt).endswith("…"):
                out.append((printed(str(txt)), str(val)))
    return out


# --- what each axis prints ---------------------------------------------------------------------------------
def _traces(fig: go.Figure) -> list[Any]:
    return [t for t in fig.data if t.visible is not False]


def _values(fig: go.Figure, axis: str) -> list[Any]:
    return [v for t in _traces(fig) for v in (getattr(t, axis, None) or ())]


def _categorical(fig: go.Figure, axis: str) -> bool:
    ax = fig.layout[f"{axis}axis"]
    return ax.type == "category" or any(isinstance(v, str) for v in _values(fig, axis))


def _numeric_extent(fig: go.Figure, axis: str) -> float:
    """The largest bar end along ``axis`` (stacked bars add up per category)."""
    other = "y" if axis == "x" else "x"
    if fig.layout.barmode in ("stack", "relative"):
        sums: dict[Any, float] = {}
        for t in _traces(fig):
            for k, v in zip(getattr(t, other, None) or (), getattr(t, axis, None) or (), strict=True):
                sums[k] = sums.get(k, 0.0) + max(float(v or 0), 0.0)
        return max(sums.values(), default=0.0)
    return max((float(v or 0) for v in _values(fig, axis)), default=0.0)


def tick_labels(fig: go.Figure, axis: str) -> list[str]:
    """The labels Plotly will print on ``axis``: given ticks, categories, or the widest numbers it may pick
    (counts: Plotly's autorange ends about 5 % past the largest bar, so a tick can carry that many digits)."""
    ax = fig.layout[f"{axis}axis"]
    if ax.visible is False:
        return []
    if ax.ticktext:
        return [str(t) for t in ax.ticktext]
    if _categorical(fig, axis):
        return list(dict.fromkeys(str(v) for v in (ax.categoryarray or _values(fig, axis))))
    top = _numeric_extent(fig, axis) * 1.06 + 1
    return ["0", f"{int(top):,}" if ax.tickformat == ",d" else str(int(top))]


def _title(fig: go.Figure, axis: str) -> str:
    ax = fig.layout[f"{axis}axis"]
    return str(ax.title.text) if ax.visible is not False and ax.title and ax.title.text else ""


def _legend_names(fig: go.Figure) -> list[str]:
    shown = [t for t in _traces(fig) if t.showlegend is not False and t.name]
    if fig.layout.showlegend is False or (fig.layout.showlegend is None and len(shown) < 2):
        return []
    return [str(t.name) for t in shown]


# --- the layout --------------------------------------------------------------------------------------------
def fit_layout(fig: go.Figure, width: int, footer: str | None = None) -> go.Figure:
    """A copy of ``fig`` laid out for a ``width`` px picture, with ``footer`` (the provenance) under it."""
    out = go.Figure(fig)
    plot_h = float(out.layout.height or 380) - TOP - float(out.layout.margin.b or 10)
    xl, yl = tick_labels(out, "x"), tick_labels(out, "y")
    x_title, y_title = _title(out, "x"), _title(out, "y")
    # A legend entry wider than its share of the picture wraps (at most 4 lines, then shortened).
    legend_notes = []
    room = LEGEND_SHARE * width
    for trace in _traces(out):
        if trace.name and str(trace.name) in _legend_names(out) and label_width(str(trace.name)) > room:
            full = str(trace.name)
            trace.name = wrap_label(full, room, 4, LEGEND)
            if trace.name.endswith("…"):
                legend_notes.append((printed(trace.name), full))
    legend = _legend_names(out)

    # Left: the y tick labels, then (rotated) their title.
    y_depth = max((label_width(s) for s in yl), default=0.0)
    left = EDGE + (LINE * AXIS_TITLE + GAP if y_title else 0.0) + y_depth + (Y_STANDOFF + GAP if yl else 0.0)
    # Right: the legend, or half the last x label where it may centre on the plot's edge.
    legend_w = LEGEND_SYMBOL + max((label_width(n, LEGEND) for n in legend), default=0.0) + GAP
    overhang = label_width(xl[-1]) / 2 if xl and not _categorical(out, "x") else 0.0
    right = EDGE + max(overhang, 0.0)
    if legend:  # the legend starts LEGEND_X plot widths from the plot's left: solve for the margin
        right = (legend_w + EDGE + (LEGEND_X - 1) * (width - left)) / LEGEND_X
    plot_w = width - left - right

    # x categories share the plot's width: wrap each to its slot, shorten only what still cannot fit.
    if xl and _categorical(out, "x"):
        vals = list(out.layout.xaxis.tickvals or xl)
        slot = plot_w / max(len(xl), 1) - GAP
        names = [str(v) for v in vals]  # category values and tickvals are data, not markup
        out.update_xaxes(tickmode="array", tickvals=vals, ticktext=[wrap_label(n, slot, 3) for n in names])
        xl = list(out.layout.xaxis.ticktext)
    notes = [f"{s} = {f}" for s, f in shortened_labels(out) + legend_notes]

    # Bottom: x tick labels, their title, the note, the footer (both broken at their " · " joints).
    foot = fill_lines(footer.split(" · "), width - 2 * EDGE, FOOTER) if footer else []
    note_lines = fill_lines([f"Shortened above: {notes[0]}", *notes[1:]], width - 2 * EDGE, FOOTER) if notes else []
    x_depth = max((label_height(s) for s in xl), default=0.0)
    bottom = (EDGE + (x_depth + X_STANDOFF + GAP / 2 if xl else 0.0) + (LINE * AXIS_TITLE + GAP if x_title else 0.0)
              + (len(note_lines) * LINE * FOOTER + GAP if note_lines else 0.0)
              + (len(foot) * LINE * FOOTER + GAP if foot else 0.0))

    # Height: what the builder asked for, and never less than the rows of labels or the legend need.
    if yl and _categorical(out, "y"):
        plot_h = max(plot_h, len(yl) * (max(label_height(s) for s in yl) + GAP))
    if legend:
        plot_h = max(plot_h, sum(max(LEGEND_ROW, label_height(n, LEGEND) + GAP / 2) for n in legend) + 2 * GAP)
    height = round(TOP + plot_h + bottom)

    out.update_layout(width=width, height=height, margin=dict(l=left, r=right, t=TOP, b=bottom, autoexpand=False),
                      legend=dict(orientation="v", x=LEGEND_X, y=1, xanchor="left", yanchor="top"))
    out.update_xaxes(automargin=False, tickangle=0, ticklabelstandoff=X_STANDOFF, title_standoff=GAP / 2)
    out.update_yaxes(automargin=False, ticklabelstandoff=Y_STANDOFF, title_standoff=GAP)
    below = 0.0  # the footer sits on the picture's bottom edge, the note just above it
    for lines, color in ((foot, "#616e7c"), (note_lines, "#616e7c")):
        if lines:
            out.add_annotation(text="<br>".join(html.escape(s, quote=False) for s in lines), showarrow=False,
                               xref="paper", yref="paper", x=0, y=0, xanchor="left", yanchor="bottom", align="left",
                               xshift=EDGE - left, yshift=EDGE - bottom + below, font=dict(size=FOOTER, color=color))
            below += len(lines) * LINE * FOOTER + GAP
    return out
