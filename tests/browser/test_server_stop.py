"""Stopping the app's server (SIGTERM: a service manager, or Ctrl+C on ``make run``) stops its engine.

Streamlit does not release cached resources when it stops, so the engine inside it used to be left running
into the interpreter's exit: its intake discovery file outlived it (a CLI then found an engine that was not
there), its scheduler polled into thread pools already stopping, and the workspace was never closed."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from tests.browser.support import AppServer


def test_stopping_the_server_stops_its_engine_and_closes_the_workspace(demo_quarter_path: str, tmp_path: Path,
                                                                      page: object) -> None:
    ws = tmp_path / "ws.duckdb"
    shutil.copyfile(demo_quarter_path, ws)
    if Path(demo_quarter_path + ".wal").exists():
        shutil.copyfile(demo_quarter_path + ".wal", str(ws) + ".wal")
    discovery, wal = Path(f"{ws}.engine.json"), Path(f"{ws}.wal")
    server = AppServer(ws, tmp_path / "streamlit.log")
    try:
        page.goto(server.url)  # type: ignore[attr-defined]  # the engine starts with the first session
        page.get_by_role("button", name="Sign in").wait_for()  # type: ignore[attr-defined]
        deadline = time.monotonic() + 30
        while not discovery.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert discovery.exists(), "the engine's intake never published its discovery file"
    finally:
        server.stop()
    assert server.proc.returncode == 0
    log = (tmp_path / "streamlit.log").read_text()
    assert not discovery.exists(), "the engine's discovery file outlived the server"
    assert not wal.exists(), "the workspace was not closed (its write-ahead log is still there)"
    assert "Traceback" not in log and "Error" not in log, log[-3000:]
