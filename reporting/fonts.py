"""DejaVu Sans, the one face of every report: the brief's PDF sets it, the charts ask chromium for it.

Both the brief and the chart layout measure text with it (reportlab's metrics of the font files), so a
margin or a footer is sized from the very glyphs that will be drawn, not from a guess per character.
"""

from __future__ import annotations

from pathlib import Path

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")


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
_ITALIC = {"DejaVuSans": "DejaVuSans-Oblique", "DejaVuSans-Bold": "DejaVuSans-BoldOblique",
           "Helvetica": "Helvetica-Oblique", "Helvetica-Bold": "Helvetica-BoldOblique"}


def text_width(text: str, size: float, bold: bool = False, italic: bool = False) -> float:
    """The advance width of one line of ``text`` at ``size`` (points for the PDF, pixels for a chart)."""
    face = BOLD if bold else FONT
    return pdfmetrics.stringWidth(text, _ITALIC[face] if italic else face, size)


def shorten_middle(text: str, room: float, size: float) -> str:
    """``text`` within ``room``, cut in its middle when it must be: a file name keeps its distinctive ends."""
    if text_width(text, size) <= room:
        return text
    keep = len(text)
    while keep > 8 and text_width(text[: keep // 2] + "…" + text[len(text) - (keep - keep // 2):], size) > room:
        keep -= 1
    return text[: keep // 2] + "…" + text[len(text) - (keep - keep // 2):]


def fill_lines(parts: list[str], room: float, size: float, joint: str = " · ") -> list[str]:
    """Parts joined by ``joint``, broken between parts wherever the next would not fit in ``room``; a part
    wider than a whole line is shortened in its middle (a line is never wider than ``room``)."""
    lines: list[str] = []
    for part in (shorten_middle(p, room, size) for p in parts):
        trial = f"{lines[-1]}{joint}{part}" if lines else part
        if lines and text_width(trial, size) <= room:
            lines[-1] = trial
        else:
            lines.append(part)
    return lines
