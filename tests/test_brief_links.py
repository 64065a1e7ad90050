"""The brief's links open the app that made it: the page's own address, else ``RUNLEDGER_BASE_URL``, else the
default — and the brief's provenance says which, so a reader whose links do not open knows why.

The page's side is the function that turns Streamlit's ``st.context.url`` into the app's root (the browser
test ``tests/browser/test_analytics.py`` then follows a real download); the CLI's side is run for real.
"""

from __future__ import annotations

import datetime as dt
import io
import shutil
from pathlib import Path

import pytest
from pypdf import PdfReader

from cli.main import EXIT_OK, main
from core.periods import period_from_dates
from engine.authz import load_actor
from store.workspace import Workspace

pytestmark = pytest.mark.slow  # briefs rendered through chromium

AUGUST = period_from_dates(dt.date(2026, 8, 1), dt.date(2026, 8, 31), ["regulator-rule-change-intake"])


@pytest.mark.parametrize("page_url,base_path,root", [
    ("http://localhost:8501/analytics", "", "http://localhost:8501/"),
    ("https://grc.example.com/analytics", "", "https://grc.example.com/"),
    ("https://grc.example.com:8443/runledger/analytics", "runledger", "https://grc.example.com:8443/runledger/"),
    ("https://grc.example.com/tools/runledger/analytics", "/tools/runledger/", "https://grc.example.com/tools/runledger/"),
    ("http://10.0.0.7:8501/", "", "http://10.0.0.7:8501/"),  # the app's default page
])
def test_the_page_url_gives_the_apps_root(page_url: str, base_path: str, root: str) -> None:
    from core.base_url import base_url_from_page

    assert base_url_from_page(page_url, base_path) == root


@pytest.mark.parametrize("page_url", [None, "", "about:blank", "file:///tmp/x", "https://"])
def test_no_usable_page_url_gives_none(page_url: str | None) -> None:
    from core.base_url import base_url_from_page

    assert base_url_from_page(page_url) is None


def test_the_app_address_wins_then_the_environment_then_the_default() -> None:
    from core.base_url import resolve_base_url

    env = {"RUNLEDGER_BASE_URL": "https://grc.example.com/runledger"}
    assert resolve_base_url("https://app.example/", env).url == "https://app.example/"
    assert resolve_base_url(None, env).url == "https://grc.example.com/runledger/"
    assert resolve_base_url(None, {}).url == "http://localhost:8501/"
    assert resolve_base_url(None, {}).note() == ("Links assume the default http://localhost:8501/ because "
                                                 "RUNLEDGER_BASE_URL was not set.")


def run_links(pdf: bytes) -> list[str]:
    uris = [str(a.get_object().get("/A", {}).get("/URI", "")) for page in PdfReader(io.BytesIO(pdf)).pages
            for a in page.get("/Annots") or []]
    return [u for u in uris if "run?id=RUN-" in u]


def first_page(pdf: bytes) -> str:
    return " ".join(PdfReader(io.BytesIO(pdf)).pages[0].extract_text().split())


def test_the_cli_links_to_runledger_base_url_and_says_so(demo_quarter_path: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = shutil.copyfile(demo_quarter_path, tmp_path / "ws.duckdb")
    monkeypatch.setenv("RUNLEDGER_BASE_URL", "https://grc.example.com/runledger")
    target = tmp_path / "brief.pdf"
    assert main(["--db", str(path), "brief", "--from", "2026-08-01", "--to", "2026-08-31", "--definition",
                 "regulator-rule-change-intake", "--out", str(target), "--as", "sigrid"], out=lambda _: None) == EXIT_OK
    pdf = target.read_bytes()
    links = run_links(pdf)
    assert links and all(u.startswith("https://grc.example.com/runledger/run?id=RUN-") for u in links)
    note = "Links point to https://grc.example.com/runledger/ (from RUNLEDGER_BASE_URL)."
    assert note in first_page(pdf)
    assert PdfReader(io.BytesIO(pdf)).metadata["/RunledgerLinks"] == note


def test_a_brief_made_for_the_page_links_to_its_address(demo_quarter_path: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from reporting.brief import generate_brief

    monkeypatch.setenv("RUNLEDGER_BASE_URL", "https://not-this.example/")  # the page's own address wins
    ws = Workspace(str(shutil.copyfile(demo_quarter_path, tmp_path / "ws.duckdb")))
    try:
        made = generate_brief(ws, load_actor(ws, "auditor"), AUGUST, base_url="https://grc.example.com/rl/")
    finally:
        ws.close()
    links = run_links(made.content)
    assert links and all(u.startswith("https://grc.example.com/rl/run?id=RUN-") for u in links)
    assert "Links point to https://grc.example.com/rl/, the address the app was served at." in first_page(made.content)
