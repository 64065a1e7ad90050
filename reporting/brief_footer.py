"""The brief's running footer and header: provenance on every page, never cut.

The footer names the workspace, the period, the filters, when and by whom, and the audit chain's head.
It used to be one line shortened with an ellipsis to fit, so a long workspace name or a brief limited to a
few automations lost its end — "by <member>" first. Now it breaks between its parts onto a second line;
only when that is still not enough are the filters (listed in full on the first page) summarised, and a
workspace name too long for a line is shortened in its middle, keeping its distinctive ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas

from reporting import brief_sections as sec
from reporting.fonts import fill_lines, shorten_middle
from reporting.provenance import Provenance

SIZE, LEADING = 6.6, 8.2  # pt
RULE_Y, FIRST_Y = 15 * mm, 11.5 * mm  # the rule above the footer band, and its first line's baseline
PAGE_LABEL_ROOM = 60.0  # pt kept at the right of the first line for "Page N of M"
MAX_LINES = 2  # provenance lines; the audit chain head has its own line under them


def footer_lines(prov: Provenance, room: float) -> list[str]:
    """The provenance in at most ``MAX_LINES`` lines of ``room`` pt, the member always named."""
    filters = "; ".join(f"{k}: {v}" for k, v in prov.filters.items())
    who = f"generated {prov.generated_at:%Y-%m-%d %H:%M} UTC by {prov.generated_by}"
    workspace = shorten_middle(Path(prov.workspace).name, room / 2, SIZE)
    for shown in ((filters, "filters as on page 1") if filters else ("",)):
        lines = fill_lines(["Runledger", workspace, prov.period, *([shown] if shown else []), who], room, SIZE)
        if len(lines) <= MAX_LINES:
            return lines
    return [shorten_middle(line, room, SIZE) for line in lines[: MAX_LINES - 1]] + [who]


def canvas_with_footer(prov: Provenance) -> type[Canvas]:
    """A canvas that holds its pages until the end, so every footer can say "page N of M"."""
    width, height = A4
    lines = footer_lines(prov, width - 40 * mm - PAGE_LABEL_ROOM)
    chain = f"Audit chain head: entry {prov.chain_seq}, {prov.chain_head}"
    who = f"generated {prov.generated_at:%Y-%m-%d %H:%M} UTC by {prov.generated_by}"

    class FooterCanvas(Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:  # noqa: N802 - reportlab's name
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            for state in self._pages:
                self.__dict__.update(state)
                self._decorate(len(self._pages))
                super().showPage()
            super().save()

        def _decorate(self, total: int) -> None:
            self.saveState()
            self.setStrokeColor(sec.RULE)
            self.setLineWidth(0.4)
            self.line(20 * mm, RULE_Y, width - 20 * mm, RULE_Y)
            self.setFillColor(sec.MUTED)
            self.setFont(sec.FONT, SIZE)
            self.drawRightString(width - 20 * mm, FIRST_Y, f"Page {self._pageNumber} of {total}")
            for i, line in enumerate([*lines, chain]):
                self.drawString(20 * mm, FIRST_Y - i * LEADING, line)
            if self._pageNumber > 1:
                self.drawString(20 * mm, height - 11 * mm, f"Audit committee brief · {prov.period}")
                self.drawRightString(width - 20 * mm, height - 11 * mm, who)
            self.restoreState()

    return FooterCanvas
