"""Where the text of a rendered chart or PDF page really is: boxes read from the files themselves.

The chart tests judge the files a member downloads, not the figure objects that made them, because the
renderer (kaleido's chromium) decides positions the figure only asks for: a margin too small for its
labels is silently overrun. So:

- SVG: every ``<text>`` is placed by walking its ancestors' transforms (translate, rotate, scale, matrix)
  and its own x/y/dy and ``<tspan>`` lines; its width is measured with the DejaVu font files the renderer
  uses (Pillow), its height is the em box (0.78 em above the baseline, 0.22 em below: DejaVu's capitals
  and descenders), so two lines 1.3 em apart never count as overlapping while two labels drawn on top of
  each other always do.
- PDF: pdfminer.six gives each character's box from the font's own metrics; characters are grouped
  into the runs the producer drew (same baseline, adjacent), and a run is the unit that may not overlap
  another.
- PNG: the outermost rows and columns must be the background colour: anything drawn there was cut.
"""

from __future__ import annotations

import io
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
SVG_NS = "{http://www.w3.org/2000/svg}"
ASCENT, DESCENT = 0.78, 0.22  # of the em, for a box that holds capitals and descenders
Matrix = tuple[float, float, float, float, float, float]  # a, b, c, d, e, f as in SVG's matrix()
IDENTITY: Matrix = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)


@dataclass(frozen=True)
class Box:
    text: str
    x0: float
    y0: float
    x1: float
    y1: float

    def inside(self, x0: float, y0: float, x1: float, y1: float, tolerance: float = 0.5) -> bool:
        return (self.x0 >= x0 - tolerance and self.y0 >= y0 - tolerance and self.x1 <= x1 + tolerance
                and self.y1 <= y1 + tolerance)

    def overlaps(self, other: Box, tolerance: float = 0.5) -> bool:
        """Intersecting by more than ``tolerance`` in both directions (touching is not overlapping)."""
        return (min(self.x1, other.x1) - max(self.x0, other.x0) > tolerance
                and min(self.y1, other.y1) - max(self.y0, other.y0) > tolerance)

    def __str__(self) -> str:
        return f"{self.text!r} at ({self.x0:.1f}, {self.y0:.1f})–({self.x1:.1f}, {self.y1:.1f})"


def overlapping_pairs(boxes: list[Box], tolerance: float = 0.5) -> list[tuple[Box, Box]]:
    return [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b, tolerance)]


# --- SVG --------------------------------------------------------------------------------------------------
@cache
def _font(bold: bool, italic: bool, size: float) -> ImageFont.FreeTypeFont:
    name = "DejaVuSans" + ("-Bold" if bold else "") + ("Oblique" if italic and bold else "-Oblique" if italic
                                                       else "")
    # Pillow measures in whole pixels of the size given: measure at 10× and scale back for sub-pixel sizes.
    return ImageFont.truetype(str(FONT_DIR / f"{name}.ttf"), size=round(size * 10))


def text_width(text: str, size: float, bold: bool = False, italic: bool = False) -> float:
    return _font(bold, italic, size).getlength(text) / 10


def _multiply(m: Matrix, n: Matrix) -> Matrix:
    """m · n: apply n first, then m."""
    a, b, c, d, e, f = m
    a2, b2, c2, d2, e2, f2 = n
    return (a * a2 + c * b2, b * a2 + d * b2, a * c2 + c * d2, b * c2 + d * d2, a * e2 + c * f2 + e,
            b * e2 + d * f2 + f)


def _apply(m: Matrix, x: float, y: float) -> tuple[float, float]:
    a, b, c, d, e, f = m
    return a * x + c * y + e, b * x + d * y + f


def parse_transform(value: str | None) -> Matrix:
    """SVG's transform list, e.g. ``translate(0,123)translate(0,-15.6)`` or ``rotate(-90,-28,210)``."""
    m = IDENTITY
    for name, args in re.findall(r"(\w+)\s*\(([^)]*)\)", value or ""):
        v = [float(x) for x in re.split(r"[\s,]+", args.strip()) if x]
        if name == "translate":
            step: Matrix = (1, 0, 0, 1, v[0], v[1] if len(v) > 1 else 0.0)
        elif name == "scale":
            step = (v[0], 0, 0, v[1] if len(v) > 1 else v[0], 0, 0)
        elif name == "rotate":
            r = math.radians(v[0])
            cx, cy = (v[1], v[2]) if len(v) == 3 else (0.0, 0.0)
            step = _multiply(_multiply((1, 0, 0, 1, cx, cy), (math.cos(r), math.sin(r), -math.sin(r),
                                                               math.cos(r), 0, 0)), (1, 0, 0, 1, -cx, -cy))
        elif name == "matrix":
            step = (v[0], v[1], v[2], v[3], v[4], v[5])
        else:
            raise ValueError(f"unexpected SVG transform {name}({args})")
        m = _multiply(m, step)
    return m


def _style(el: ET.Element, inherited: dict[str, str]) -> dict[str, str]:
    out = dict(inherited)
    for part in (el.get("style") or "").split(";"):
        if ":" in part:
            k, v = part.split(":", 1)
            out[k.strip()] = v.strip()
    for attr in ("font-size", "font-weight", "font-style", "text-anchor", "opacity", "display", "visibility"):
        if el.get(attr) is not None:
            out[attr] = el.get(attr, "")
    return out


def _px(value: str | None, em: float) -> float:
    if not value:
        return 0.0
    value = value.strip().split()[0].split(",")[0]
    if value.endswith("em"):
        return float(value[:-2]) * em
    return float(value.removesuffix("px"))


def _hidden(style: dict[str, str]) -> bool:
    return (style.get("display") == "none" or style.get("visibility") == "hidden"
            or float(style.get("opacity", "1") or 1) == 0.0)


def _segments(el: ET.Element, style: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    """The text of one line as (text, style) runs, in document order."""
    out = [(el.text or "", style)] if el.text else []
    for child in el:
        out += _segments(child, _style(child, style))
        if child.tail:
            out.append((child.tail, style))
    return out


def _line_box(text_runs: list[tuple[str, dict[str, str]]], x: float, y: float, anchor: str,
              m: Matrix) -> Box | None:
    content = "".join(t for t, _ in text_runs)
    if not content.strip():
        return None
    width, size = 0.0, 0.0
    for t, st in text_runs:
        s = _px(st.get("font-size", "12px"), 12)
        size = max(size, s)
        width += text_width(t, s, bold=st.get("font-weight") in ("bold", "700"),
                            italic=st.get("font-style") == "italic")
    x0 = x - {"start": 0.0, "middle": width / 2, "end": width}.get(anchor, 0.0)
    corners = [_apply(m, cx, cy) for cx in (x0, x0 + width) for cy in (y - ASCENT * size, y + DESCENT * size)]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    return Box(content, min(xs), min(ys), max(xs), max(ys))


def svg_text_boxes(svg: bytes) -> tuple[tuple[float, float, float, float], list[Box]]:
    """The viewBox and one box per drawn line of text."""
    root = ET.fromstring(svg)
    view = tuple(float(v) for v in (root.get("viewBox") or f"0 0 {root.get('width')} {root.get('height')}")
                 .split())
    boxes: list[Box] = []

    def walk(el: ET.Element, m: Matrix, style: dict[str, str]) -> None:
        style = _style(el, style)
        if _hidden(style) or el.tag in (f"{SVG_NS}defs", f"{SVG_NS}metadata", f"{SVG_NS}clipPath"):
            return
        m = _multiply(m, parse_transform(el.get("transform")))
        if el.tag != f"{SVG_NS}text":
            for child in el:
                walk(child, m, style)
            return
        em = _px(style.get("font-size", "12px"), 12)
        x, y = _px(el.get("x"), em), _px(el.get("y"), em) + _px(el.get("dy"), em)
        anchor = style.get("text-anchor", "start")
        lines = [c for c in el if c.tag == f"{SVG_NS}tspan" and "line" in (c.get("class") or "")]
        if not lines:
            box = _line_box(_segments(el, style), x, y, anchor, m)
            boxes.extend([box] if box else [])
            return
        for line in lines:
            line_style = _style(line, style)
            lx = _px(line.get("x"), em) if line.get("x") is not None else x
            ly = (_px(line.get("y"), em) if line.get("y") is not None else y) + _px(line.get("dy"), em)
            box = _line_box(_segments(line, line_style), lx, ly, anchor, m)
            boxes.extend([box] if box else [])

    walk(root, IDENTITY, {})
    return (view[0], view[1], view[0] + view[2], view[1] + view[3]), boxes


# --- PDF --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PdfPage:
    media_box: tuple[float, float, float, float]
    runs: list[Box]  # in PDF coordinates: y grows upwards
    images: list[Box]  # placed images (their names as text)


def pdf_pages(pdf: bytes) -> list[PdfPage]:
    """Each page's text as runs of characters the producer drew together, and its placed images."""
    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LAParams, LTChar, LTImage, LTPage

    pages = []
    for page in extract_pages(io.BytesIO(pdf), laparams=LAParams(all_texts=True)):
        assert isinstance(page, LTPage)
        found = list(_leaves(page, (LTChar, LTImage)))
        images = [Box(o.name, o.x0, o.y0, o.x1, o.y1) for o in found if isinstance(o, LTImage)]
        chars = [o for o in found if isinstance(o, LTChar)]
        pages.append(PdfPage(tuple(page.bbox), _runs(chars), images))  # type: ignore[arg-type]
    return pages


def _leaves(obj: object, kinds: tuple[type, ...]) -> Iterator[object]:
    """Every object of ``kinds`` in pdfminer's layout tree, in drawing order."""
    if isinstance(obj, kinds):
        yield obj
    if hasattr(obj, "__iter__") and not isinstance(obj, kinds[0]):
        for child in obj:  # type: ignore[attr-defined]
            yield from _leaves(child, kinds)


def _runs(chars: list[object]) -> list[Box]:
    """Characters in drawing order join a run while each starts where the last ended on the same baseline
    (a word gap allowed); a jump starts a new run. Drawn text is then compared run against run."""
    runs: list[Box] = []
    cur: list[object] = []

    def close() -> None:
        if cur:
            text = "".join(c.get_text() for c in cur)  # type: ignore[attr-defined]
            if text.strip():
                runs.append(Box(text, min(c.x0 for c in cur), min(c.y0 for c in cur),  # type: ignore[attr-defined]
                                max(c.x1 for c in cur), max(c.y1 for c in cur)))  # type: ignore[attr-defined]
            cur.clear()

    for ch in chars:
        if cur:
            last = cur[-1]
            size = max(last.size, 1.0)  # type: ignore[attr-defined]
            if getattr(ch, "upright", True):
                same_line = abs(ch.y0 - last.y0) < 0.2 * size  # type: ignore[attr-defined]
                gap = ch.x0 - last.x1  # type: ignore[attr-defined]
            else:  # a rotated axis title runs along y, upwards or downwards
                same_line = abs(ch.x0 - last.x0) < 0.2 * size  # type: ignore[attr-defined]
                gap = max(ch.y0 - last.y1, last.y0 - ch.y1)  # type: ignore[attr-defined]
            if not (same_line and -0.2 * size < gap < 0.6 * size):
                close()
        cur.append(ch)
    close()
    return runs


# --- PNG --------------------------------------------------------------------------------------------------
def png_size(png: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(png)) as im:
        return im.size


def png_border_ink(png: bytes, depth: int = 2) -> list[str]:
    """Where the outermost ``depth`` rows or columns differ from the background (the top-left pixel)."""
    with Image.open(io.BytesIO(png)) as im:
        rgb = im.convert("RGB")
        w, h = rgb.size
        background = rgb.getpixel((0, 0))
        found = []
        for name, box in (("top", (0, 0, w, depth)), ("bottom", (0, h - depth, w, h)),
                          ("left", (0, 0, depth, h)), ("right", (w - depth, 0, w, h))):
            strip = rgb.crop(box)
            colours = {c for _, c in strip.getcolors(maxcolors=w * depth + h * depth) or []}
            if colours - {background}:
                found.append(name)
        return found
