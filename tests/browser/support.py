"""Helpers for the browser tests (the fixtures are in conftest.py). A real browser against a real server:
Debian's chromium, driven by playwright, on ``streamlit run``
over a private copy of the demo quarter. Each test saves a screenshot of what it checked under
``tests/artifacts/`` (ignored by git) — look at them.

Streamlit renders after the page loads, so waits are for app content, never for the load event.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """``streamlit run app.py`` on its own workspace; the live engine runs inside it, as in production."""

    def __init__(self, workspace: Path | str, log: Path, env: dict[str, str] | None = None, root: Path = ROOT,
                 gateway_latency: float = 0.0) -> None:
        """``workspace``: a DuckDB file, or a PostgreSQL URL (replicas of one app share it).
        ``root``: the checkout whose ``app.py`` it serves (a benchmark may compare two). Beside it runs
        the demo's messaging gateway (a real SMTP server, as ``make run`` starts it) on a port of its own,
        each message taking ``gateway_latency`` seconds."""
        from demo.gateway import DemoGateway
        from engine.clock import SystemClock

        self.workspace = workspace
        self.gateway = DemoGateway(SystemClock(), port=_free_port(), latency_seconds=gateway_latency).start()
        env = {"RUNLEDGER_MESSAGING_PORT": str(self.gateway.port), **(env or {})}
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(root / "app.py"), "--server.headless", "true",
             "--server.port", str(self.port), "--server.address", "127.0.0.1",
             "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
            cwd=root, stdout=self.log, stderr=subprocess.STDOUT,
            env={**os.environ, "RUNLEDGER_DB": str(workspace), "RUNLEDGER_INTAKE_PORT": "0", **(env or {})})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited {self.proc.returncode}: {self.output()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"streamlit did not come up: {self.output()[-2000:]}")

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        self.gateway.stop()


def sign_in(page: object, server: AppServer, member: str, path: str = "", password: str | None = None) -> None:
    """Open ``path`` (e.g. ``run?id=RUN-000001``) as ``member``: the browser's session cookie may already
    sign it in (a new tab of a signed-in browser); otherwise sign in on the form, signing another member
    out first."""
    page.goto(f"{server.url}/{path}")  # type: ignore[attr-defined]
    form = page.get_by_role("button", name="Sign in")  # type: ignore[attr-defined]
    signed = page.get_by_text("Signed in as")  # type: ignore[attr-defined]
    form.or_(signed).first.wait_for()
    if signed.count():
        if page.get_by_text(f"Signed in as {member}").count():  # type: ignore[attr-defined]
            return
        page.get_by_role("button", name="Sign out").click()  # type: ignore[attr-defined]
        form.wait_for()
    page.get_by_label("Member", exact=True).fill(member)  # type: ignore[attr-defined]
    page.get_by_label("Password", exact=True).fill(password if password is not None else member)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Sign in").click()  # type: ignore[attr-defined]
    page.get_by_text(f"Signed in as {member}").wait_for()  # type: ignore[attr-defined]


def click_settled(locator: object, timeout_s: float = 15.0) -> None:
    """Click ``locator`` once it has stopped moving. An expander just opened draws its table, then sizes it,
    pushing what lies below it down; playwright's own stability check can pass between the two, and a click
    landing where the button was a moment ago is lost (CI lost a "Run now" and a "Retry" this way)."""
    locator.wait_for()  # type: ignore[attr-defined]
    last, still, deadline = None, 0, time.monotonic() + timeout_s
    while still < 3 and time.monotonic() < deadline:
        box = locator.bounding_box()  # type: ignore[attr-defined]
        still = still + 1 if box == last else 0
        last = box
        time.sleep(0.15)
    locator.click()  # type: ignore[attr-defined]


def screenshot(page: object, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.wait_for_timeout(300)  # type: ignore[attr-defined]  # let the last delta paint
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path


def download_brief(page: object, timeout: int = 90_000) -> bytes:
    """On the Analytics page: generate the brief, download it, and return the PDF's bytes."""
    m = page.locator('[data-testid="stMain"]')  # type: ignore[attr-defined]
    m.get_by_role("button", name="Generate the brief (PDF)").click()
    download = m.get_by_role("button", name="Download the brief")
    download.wait_for(timeout=timeout)
    with page.expect_download(timeout=timeout) as dl:  # type: ignore[attr-defined]
        download.click()
    return Path(dl.value.path()).read_bytes()

