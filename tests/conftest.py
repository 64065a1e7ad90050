"""The fixtures every test may ask for: ``make_engine`` (a real engine over a temp workspace), the demo
workspaces (seeded once, shared read-only), and ``app_workspace`` (a private copy for the Streamlit app).

The demo is seeded by the real engine, which takes tens of seconds; each seed is built once into a cache
folder shared by every worker of every test session, keyed by a hash of the code and data it comes from
(a change to any of them seeds afresh), under a file lock so concurrent workers build it once. Tests copy
it or open it read-only.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.runtime import Engine
from tests.backends import engines_made
from tests.receivers import free_port
from tests.support import DEMO_TODAY, UTC

ROOT = Path(__file__).resolve().parent.parent
DEMO_CACHE = ROOT / "tests" / ".demo-cache"
DEMO_SOURCES = ("core", "store", "engine", "demo", "definitions", "registers")
DEMO_FIXTURES = {"demo_quarter_path", "demo_today_path"}

# The demo's messaging gateway listens where integrations/messaging.yaml says: a port of this test process's
# own, so two workers seeding demos at once (or a `make run` beside the tests) never meet on one.
os.environ["RUNLEDGER_MESSAGING_PORT"] = str(free_port())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs a seeded demo is slow: the seed is cached, but keyed by the code it runs, so in a
    loop of edits to core, store or engine every such test waits tens of seconds for a new one."""
    for item in items:
        if DEMO_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def make_engine(tmp_path: Path) -> Iterator[Callable[..., Engine]]:
    """``make_engine(definitions, accounts=…, actioners=…)`` → Engine on DuckDB; its workspace is closed after.
    A module that imports ``tests.backends.make_engine_fixture`` overrides this one to run on both backends."""
    yield from engines_made(tmp_path, lambda kw: None)


def _demo_fingerprint(until: dt.datetime) -> str:
    """What a seeded demo depends on: every source file it is built from, and the date it runs up to."""
    digest = hashlib.sha256(until.isoformat().encode())
    for folder in DEMO_SOURCES:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".yaml", ".yml", ".csv") and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def seeded_demo(until: dt.datetime) -> str:
    """The demo seeded up to ``until``, built once for every worker and session that asks (a file lock
    makes the others wait), then shared read-only."""
    folder = DEMO_CACHE / f"{until:%Y%m%dT%H%M}-{_demo_fingerprint(until)}"
    path = folder / "ws.duckdb"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "complete").exists():
            from demo.seed import seed_demo

            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            engine = seed_demo(str(path), ROOT / "definitions", until=until, say=lambda _: None)
            engine.shutdown()
            engine.ws.close()
            (folder / "complete").write_text("seeded\n")
        for stale in DEMO_CACHE.iterdir():  # older seeds of code that has changed since
            if stale.is_dir() and stale.name.split("-")[0] == folder.name.split("-")[0] and stale != folder:
                shutil.rmtree(stale, ignore_errors=True)
    return str(path)


@pytest.fixture(scope="session")
def demo_quarter_path() -> str:
    """The demo workspace seeded through 2026-10-01 (the worked example's quarter). Copy it, or open it
    read-only: every worker shares it."""
    return seeded_demo(dt.datetime(2026, 10, 1, tzinfo=UTC))


@pytest.fixture(scope="session")
def demo_today_path() -> str:
    """The demo as ``make run`` seeds it on 2026-12-03: the worked example's quarter and the current one,
    whose latest KYC run is left with failures for a new user to retry. Copy it or open it read-only."""
    return seeded_demo(DEMO_TODAY)


@pytest.fixture
def app_workspace(demo_quarter_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private copy of the demo quarter, opened by the app with its engine not running live (the test
    drives it), and no intake endpoint."""
    from tests.apptest_support import navigation_only
    from ui.runtime import open_engine

    path = tmp_path / "ws.duckdb"
    shutil.copyfile(demo_quarter_path, path)
    if Path(demo_quarter_path + ".wal").exists():
        shutil.copyfile(demo_quarter_path + ".wal", str(path) + ".wal")
    monkeypatch.setenv("RUNLEDGER_DB", str(path))
    monkeypatch.setenv("RUNLEDGER_ENGINE_LIVE", "0")
    monkeypatch.setenv("RUNLEDGER_INTAKE_PORT", "off")
    navigation_only(monkeypatch)
    open_engine.clear()
    yield str(path)
    open_engine.clear()
