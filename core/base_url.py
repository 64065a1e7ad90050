"""Where the brief's links point: the app that made it, ``RUNLEDGER_BASE_URL``, or the default — and why.

A run id in the brief is a link to that run's page. A brief made on the Analytics page links to the address
the member's browser was using (``base_url_from_page``); one made by the CLI has no browser to ask, so it
uses ``RUNLEDGER_BASE_URL``, and when that is not set the links fall back to the local default and the
brief says so in its provenance, so that a reader whose links do not open knows the reason.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_BASE_URL = "http://localhost:8501/"
ENV = "RUNLEDGER_BASE_URL"


@dataclass(frozen=True)
class LinkBase:
    url: str  # ends with "/": a link is url + "run?id=…"
    source: str  # "app" (the address it was served at), "env" (RUNLEDGER_BASE_URL) or "default"

    def note(self) -> str:
        """The provenance line about the links (title page and document info)."""
        if self.source == "default":
            return f"Links assume the default {DEFAULT_BASE_URL} because {ENV} was not set."
        if self.source == "env":
            return f"Links point to {self.url} (from {ENV})."
        return f"Links point to {self.url}, the address the app was served at."


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def resolve_base_url(from_app: str | None = None, environ: Mapping[str, str] | None = None) -> LinkBase:
    """The app's own address when the caller knows it, else ``RUNLEDGER_BASE_URL``, else the default."""
    env = (os.environ if environ is None else environ).get(ENV, "").strip()
    if from_app:
        return LinkBase(_with_slash(from_app), "app")
    if env:
        return LinkBase(_with_slash(env), "env")
    return LinkBase(DEFAULT_BASE_URL, "default")


def base_url_from_page(page_url: str | None, base_path: str = "") -> str | None:
    """The app's root from the browser's address of a page (Streamlit's ``st.context.url``).

    That address is scheme, host and path — the server's base path (``server.baseUrlPath``) followed by
    the page's own path, e.g. ``https://grc.example/runledger/analytics``: the root keeps the scheme, host
    and base path and drops the page. None when there is no usable address (a script run, a test)."""
    if not page_url:
        return None
    parts = urlsplit(page_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    base = base_path.strip("/")
    return f"{parts.scheme}://{parts.netloc}/" + (f"{base}/" if base else "")
