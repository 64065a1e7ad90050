"""Text from subjects, payloads and definitions is data, never markup: these helpers show it as text.

Streamlit renders markdown (and, in some elements, HTML) in labels and ``st.markdown``; a subject named
``<img onerror=…>`` or ``**URGENT**`` must appear exactly as typed. Use ``st.text``/``st.code`` or these.
"""

from __future__ import annotations

import html
import json
from typing import Any

import streamlit as st


def pretty_json(value: Any) -> str:
    """A stored JSON text or a value, indented for reading; unreadable text shown as it is."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m:02d} min"


def fmt_age(seconds: float) -> str:
    """How long something has waited, in the units a person weighs it in: "4 min", "27 h", "13 days 22 h"."""
    seconds = max(0.0, float(seconds))
    if seconds < 3600:
        return f"{max(1, int(seconds // 60))} min"
    hours = int(seconds // 3600)
    if hours < 48:
        return f"{hours} h {int(seconds % 3600 // 60):02d} min"
    days, rest = divmod(hours, 24)
    return f"{days} days {rest} h"


def fmt_time(value: Any) -> str:
    """UTC timestamps as people read them in an audit: to the second, with the zone."""
    if value is None:
        return "—"
    try:
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    except AttributeError:
        return str(value)


def show_command_result(key: str) -> None:
    """What the member's last command answered (kept over the rerun that follows it): ``("ok", text)`` as
    success, anything else as an error."""
    result = st.session_state.pop(key, None)
    if result:
        (st.success if result[0] == "ok" else st.error)(result[1])


_PRE_STYLE = ("margin:0;padding:0.75rem 1rem;background:rgba(151,166,195,0.12);border-radius:0.5rem;"
              "font-family:'Source Code Pro',monospace;font-size:0.82rem;line-height:1.45;white-space:pre-wrap;"
              "overflow-wrap:anywhere")


def show_preformatted(text: str) -> None:
    """Text shown exactly as stored, in a monospace block, escaped (never markup). Unlike ``st.code`` it does
    not load Streamlit's syntax highlighter (1.5 MB of JavaScript evaluated on every full page load), which
    was most of the Run page's draw time (bench/RESULTS.md "Pages in Chromium")."""
    st.html(f'<pre style="{_PRE_STYLE}">{html.escape(text)}</pre>')
