"""Text from outside (subjects, payloads, URL params, definitions) named inside markdown, escaped.

Streamlit renders markdown (and, in some elements, HTML) in labels, alerts and ``st.markdown``; a subject
named ``<img onerror=…>`` or ``**URGENT**`` must read exactly as typed. Pure string functions: the link
builder names bad URL params with them, and the pages show values with them.
"""

from __future__ import annotations

import re
from typing import Any

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=])")


def md_escape(value: Any) -> str:
    """Escape markdown (and the HTML-ish characters) so a value can sit inside a markdown sentence."""
    return _MD_SPECIAL.sub(r"\\\1", "" if value is None else str(value)).replace("\n", " ")


def md_repr(value: Any, limit: int = 120) -> str:
    """A value from outside (a URL param, an id someone typed) named inside a markdown sentence: quoted like
    ``repr``, cut to ``limit`` characters, and escaped, so ``[x](http://…)`` or ``<img …>`` reads as typed."""
    text = "" if value is None else str(value)
    return md_escape(repr(text if len(text) <= limit else text[:limit] + "…"))


def md_value(value: Any, limit: int = 120) -> str:
    """``md_repr`` without the quotes, for sentences that quote the value themselves (``'from=…'``)."""
    text = "" if value is None else str(value)
    return md_escape(text if len(text) <= limit else text[:limit] + "…")
