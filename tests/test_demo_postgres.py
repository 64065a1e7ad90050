"""The demo seeded on PostgreSQL comes out as on DuckDB: the worked example's headline figures
(``tests/demo_figures.py``, which ``tests/test_demo_quarter.py`` checks on DuckDB) from the same seed, its
four registers imported from the files a credit union's systems would export (through the PostgreSQL import
path), an intact audit chain, and its files kept under ``data/`` in a folder named from the server and the
database — nothing made in the working directory from the URL taken for a path."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from demo.folders import demo_data_folder
from demo.seed import seed_demo
from tests.demo_figures import HEADLINE, headline_figures
from tests.pg_server import postgres_server

pytestmark = pytest.mark.slow  # the whole demo quarter, seeded by the real engine (~50 s on PostgreSQL)

ROOT = Path(__file__).resolve().parent.parent


def test_the_demo_seeded_on_postgresql_tells_the_worked_example(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # where a URL taken for a path used to make its folders
    said: list[str] = []
    with postgres_server() as url:
        started = time.monotonic()
        engine = seed_demo(url, ROOT / "definitions", until=dt.datetime(2026, 10, 1, tzinfo=dt.UTC),
                           say=said.append)
        seconds = time.monotonic() - started
        try:
            assert engine.ws.verify_audit().intact
            with engine.ws.read() as conn:
                assert headline_figures(lambda sql: [tuple(r) for r in conn.execute(sa.text(sql))]) == HEADLINE
                imported = dict(conn.execute(sa.text(
                    "SELECT register_id, added FROM register_imports WHERE origin = 'file' AND format = 'csv'")).all())
        finally:
            engine.shutdown()
            engine.ws.close()
        assert set(imported) == {"accounts", "suppliers", "incidents", "exceptions"} and all(imported.values())
        folder = demo_data_folder(url)
        assert folder.parent == tmp_path / "data"
        assert sorted(p.name for p in folder.iterdir()) == [
            "accounts.csv", "exceptions.csv", "gateway-outages.json", "incidents.csv", "suppliers.csv"]
        assert [p.name for p in tmp_path.iterdir()] == ["data"]
    print(f"demo seeded on PostgreSQL in {seconds:.1f} s ({said[-1]})")
