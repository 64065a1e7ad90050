"""How list tables sit on a page: tall enough to show a whole page of rows.

Streamlit's default height shows about ten rows in a scroll box inside the page, so an officer paging
through fifty runs saw a fifth of them and a second scroll bar. Every list is already a page (50 runs,
100 items, 100 audit entries), so each is drawn whole.
"""

from __future__ import annotations

from typing import Any, Literal

import streamlit as st

from ui.table_widths import FULL_WIDTH_PX, sized_config

ROW_PX = 35  # Streamlit's table row height (the header row too)


def table_height(rows: int, cap: int = 100) -> int | Literal["auto"]:
    """Pixels that show every row (up to ``cap``); ``"auto"`` for an empty table."""
    if rows <= 0:
        return "auto"
    return ROW_PX * (min(rows, cap) + 1) + 3


def show_table(data: Any, room: int = FULL_WIDTH_PX, **kwargs: Any) -> Any:
    """``st.dataframe`` as every list in the app draws it: no index, full width, every row of the page, every
    column in view (widths fitted to ``room``, the pixels it has: ui/table_widths.py)."""
    kwargs.setdefault("height", table_height(len(data)))
    kwargs["column_config"] = sized_config(data, kwargs.get("column_config"), room)
    return st.dataframe(data, hide_index=True, width="stretch", **kwargs)
