"""Column widths that keep every column of a table in view.

Streamlit sizes a table's columns to their contents and scrolls the table sideways when they add up to more
than the page is wide: at 1440 px with the sidebar open, the Runs table's completion time, the Failed items
table's counts and the Registers table's last columns sat past the right edge, where an officer reading the
page never saw them. So each column is given the width its header and cells need (estimated from the text,
in the table font's average glyph widths) and, when the columns together need more than the table's room,
the widest are narrowed first — to a common width — until they fit: a long cause or name is cut in its cell
(its full text is one click away, and in every export), never a whole column. Streamlit spreads what room
is left evenly over the columns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

# The room a table has at a 1440 px window with the sidebar open — the narrowest screen an officer reviews a
# quarter on that we design for — once app.py narrows the page's side margins to PAGE_SIDE_REM: the main
# column is 1,076 px and a table inside an expander 1,042 px; less a margin. Wider windows get the rest spread
# evenly over the columns.
PAGE_SIDE_REM = 2
FULL_WIDTH_PX = 1030
SELECT_COLUMN_PX = 34  # the row-selection checkboxes of a selectable table
_CELL_PADDING_PX = 16  # 8 px each side (the glyph widths above round up)
_MIN_PX, _MAX_PX = 48, 480

# Average advance widths of the table font (Source Sans, 14 px) by kind of character.
_NARROW = set("ijlft.,:;'|!()[] ")
_WIDE = set("mwMW@%—")


def text_px(text: str) -> float:
    """About how wide ``text`` draws in a table cell."""
    px = 0.0
    for ch in text:
        if ch in _NARROW:
            px += 3.9
        elif ch in "-_/":
            px += 4.8
        elif ch in _WIDE:
            px += 11.5
        elif ch.isupper():
            px += 8.6
        elif ch.isdigit():
            px += 7.4
        elif ord(ch) > 0x2000:  # symbols: ✓ ⚠ ↻ · …
            px += 10.0
        else:
            px += 6.6
    return px


def _shown(value: Any, display_text: str | None) -> str:
    """A cell's text as the table shows it (a link column shows what its pattern picks out of the address)."""
    if value is None:
        return ""
    text = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
    if display_text:
        pattern = re.compile(display_text)
        if not pattern.groups:  # a plain text, shown for every address
            return display_text
        m = pattern.search(text)
        return m.group(1) if m else text
    return text


def natural_widths(columns: Mapping[str, Sequence[Any]], config: Mapping[str, Any]) -> dict[str, int]:
    """Each column's width for its header and its widest cell, between 48 and 480 px."""
    out = {}
    for name, values in columns.items():
        cfg = config.get(name)
        label, display = name, None
        if isinstance(cfg, str):
            label = cfg
        elif isinstance(cfg, Mapping):
            label = cfg.get("label") or name
            display = (cfg.get("type_config") or {}).get("display_text")
        widest = max((text_px(_shown(v, display)) for v in values), default=0.0)
        need = max(text_px(label) * 1.05, widest) + _CELL_PADDING_PX  # headers are semibold
        out[name] = int(min(max(need, _MIN_PX), _MAX_PX))
    return out


def fit_widths(natural: Mapping[str, int], room: int) -> dict[str, int]:
    """The natural widths if they fit ``room``; otherwise every column wider than a common cap narrowed to it,
    the cap the largest that fits (never below 48 px a column)."""
    if sum(natural.values()) <= room:
        return dict(natural)
    widths = sorted(natural.values())
    cap, left = _MIN_PX, room
    for i, w in enumerate(widths):
        share = left / (len(widths) - i)  # what each of the remaining (widest) columns may have
        if w > share:
            cap = max(int(share), _MIN_PX)
            break
        left -= w
    return {name: min(w, cap) for name, w in natural.items()}


def columns_of(data: Any) -> dict[str, list[Any]]:
    """A table's values by column, for a list of rows, a pandas or a polars frame."""
    if isinstance(data, list):
        names = list(dict.fromkeys(k for row in data for k in row))
        return {n: [row.get(n) for row in data] for n in names}
    if isinstance(data, pl.DataFrame):
        return {n: data[n].to_list() for n in data.columns}
    return {str(n): data[n].tolist() for n in data.columns}


def sized_config(data: Any, config: Mapping[str, Any] | None, room: int = FULL_WIDTH_PX,
                 whole: Sequence[str] = ()) -> dict[str, Any]:
    """``column_config`` with a width for every column a width was not chosen for, fitted to ``room``; the
    ``whole`` columns (a run's id, its status) keep the width their text needs, the others make room."""
    config = dict(config or {})
    columns = columns_of(data)
    if not columns:
        return config
    fixed = {n: cfg["width"] for n, cfg in config.items()
             if isinstance(cfg, Mapping) and isinstance(cfg.get("width"), int) and n in columns}
    hidden = {n for n, cfg in config.items() if cfg is None}
    free = {n: v for n, v in columns.items() if n not in fixed and n not in hidden}
    natural = natural_widths(free, config)
    kept = {n: w for n, w in natural.items() if n in whole}
    widths = kept | fit_widths({n: w for n, w in natural.items() if n not in kept},
                               room - sum(fixed.values()) - sum(kept.values()))
    for name, width in widths.items():
        cfg = config.get(name)
        if isinstance(cfg, Mapping):
            config[name] = {**cfg, "width": width}
        else:
            config[name] = {"label": cfg if isinstance(cfg, str) else name, "width": width}
    return config
