"""Garbage and hostile query params on every page: never a traceback, a plain sentence about the param
where the page reads it, and the hostile text never rendered as markup.

Streamlit renders markdown in titles, captions, alerts, markdown and the labels of links, buttons,
expanders and metrics; a value from the URL may sit there only escaped (``ui.text.md_escape``), where
``<script>``, ``[x](http://…)`` and ``**x**`` read as typed. Text elements, code and dataframes show values as
text, so the raw value may appear there.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from core.links import PAGES
from tests.apptest_support import open_app

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
MD_LINK = "[click](http://evil.example)"
BOLD = "**BOLD**"
MARKUP = f"{IMG} {BOLD} {MD_LINK} {SCRIPT}"
TRAVERSAL = "../../etc/passwd"
SQLI = "' OR 1=1 --"
LONG = "A" * 5000
# The raw forms that would be markup if a markdown element showed them unescaped.
RAW_MARKERS = ("<script", "<img", "](http", BOLD)

# The params each page reads (every key gets the hostile value), and words its sentence about them uses.
READS: dict[str, tuple[str, ...]] = {
    "runs": ("definition", "status", "period", "from", "to", "on", "sort", "order", "outcome", "after"),
    "run": ("id", "outcome", "from"),
    "item": ("id",),
    "failed": ("definition", "from", "to"),
    "approvals": (),
    "automations": ("id", "version", "compare"),
    "analytics": ("period", "quarter", "from", "to", "definition"),
    "registers": ("id", "page"),
    "records": ("module", "register", "id"),
    "subject": ("kind", "id"),
    "audit": ("seq", "actor", "event", "entity_kind", "entity_id", "from", "to", "before"),
    "members": (),
}
JUNK = {"x": SCRIPT, "utm_source": MD_LINK}  # params no page reads: ignored quietly


def markdown_texts(at: Any) -> list[str]:
    """Every string the app rendered as markdown: elements and labels."""
    out: list[str] = []
    for kind in ("markdown", "caption", "title", "header", "subheader", "error", "warning", "info", "success",
                 "toast", "exception"):
        out += [str(e.value) for e in at.get(kind) if getattr(e, "value", None) is not None]
    for kind in ("button", "page_link", "expander", "metric", "download_button", "checkbox", "toggle"):
        for e in at.get(kind):
            label = getattr(e, "label", None) or getattr(getattr(e, "proto", None), "label", None)
            if label:
                out.append(str(label))
    return out


def sentences(at: Any) -> str:
    return " ".join(str(e.value) for kind in ("warning", "error", "info") for e in at.get(kind))


def unescaped(text: str) -> str:
    """What markdown would still act on: every backslash-escaped character taken out."""
    return re.sub(r"\\.", "", text)


def assert_inert(at: Any) -> None:
    assert not at.exception, [e.value for e in at.exception]
    for text in markdown_texts(at):
        for marker in RAW_MARKERS:
            assert marker not in unescaped(text), f"{marker!r} rendered as markup in: {text[:300]!r}"


def params_for(page: str, value: str | list[str]) -> dict[str, Any]:
    return {**{k: value for k in READS[page]}, **JUNK}


CASES = {
    "markup": MARKUP,
    "traversal and sql": f"{TRAVERSAL}{SQLI}",
    "long": LONG,
    "huge-number": "9" * 30,
    "repeated": [SCRIPT, MD_LINK, "RUN-999999", "2026-13-45"],
}


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_survives_hostile_params(app_workspace: str, page: str) -> None:
    for case, value in CASES.items():
        at = open_app("sigrid", page=PAGES[page][0], params=params_for(page, value))
        assert_inert(at)
        said = sentences(at)
        if READS[page]:
            assert said, f"{page} ({case}): no sentence about the bad params"
        if case == "long":  # named, but cut short: a sentence, not a 5,000-character wall
            assert LONG[:200] not in said and LONG[:120] + "…" in said.replace("\\", "") or not READS[page]
        if case == "markup" and READS[page]:
            # the value is named, escaped, so the member sees exactly what the link carried
            assert "\\<img src\\=x onerror\\=alert\\(1\\)\\>" in said, said[:500]


@pytest.mark.parametrize("page,params,says", [
    ("run", {"id": "RUN-999999"}, "There is no run 'RUN\\-999999' in this workspace."),
    ("run", {"id": TRAVERSAL}, "There is no run '\\.\\./\\.\\./etc/passwd'"),
    ("item", {"id": SQLI}, 'There is no run item "\' OR 1\\=1 \\-\\-"'),
    ("runs", {"from": "2026-13-45"}, "'from=2026\\-13\\-45' is not a date like 2026-07-01; it was ignored."),
    ("runs", {"definition": SQLI}, "Unknown definition \"' OR 1\\=1 \\-\\-\" in the link; ignored."),
    ("failed", {"from": "2026-13-45"}, "'from=2026\\-13\\-45' is not a date like 2026-07-01; it was ignored."),
    ("analytics", {"quarter": "2026-Q9"}, "'quarter=2026\\-Q9' is not a quarter like 2026-Q3"),
    ("audit", {"seq": MD_LINK}, "'seq=\\[click\\]\\(http\\://evil\\.example\\)' is not an entry number"),
    ("records", {"register": BOLD}, "There is no register '\\*\\*BOLD\\*\\*'."),
    ("registers", {"id": BOLD}, "There is no register '\\*\\*BOLD\\*\\*'. Registers: accounts,"),
    ("registers", {"id": "accounts", "page": "9" * 30}, "No subjects on this page."),
    ("records", {"register": "accounts", "id": MD_LINK}, "There is no accounts record '\\[click\\]"),
    ("automations", {"id": SCRIPT}, "There is no automation '\\<script\\>alert\\(1\\)\\</script\\>'."),
])
def test_the_sentence_names_the_bad_value_escaped(app_workspace: str, page: str, params: dict, says: str) -> None:
    at = open_app("viewer", page=PAGES[page][0], params=params)
    assert_inert(at)
    assert says in sentences(at), sentences(at)
