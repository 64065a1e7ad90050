"""The demo's files for a workspace (its registers' CSV exports, its gateway's outages) are kept in one folder
that the seed and the gateway find alike: beside a DuckDB file, or under ``data/`` for a PostgreSQL workspace,
named from its server and database — never from the whole URL. Before, a URL was taken for a path: seeding
``--db postgresql+psycopg://…`` made folders named ``postgresql+psycopg:/user:password@host:port`` in the
working directory, the password in a folder's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo.folders import demo_data_folder
from demo.gateway import outages_path


def test_a_postgresql_workspace_keeps_its_demo_files_under_data_without_its_password(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = "postgresql+psycopg://runledger:s3cret@db.internal:5433/runledger"
    folder = tmp_path / "data" / "postgresql-db.internal-5433-runledger-demo-data"
    assert outages_path(url) == folder / "gateway-outages.json"
    assert demo_data_folder(url) == folder
    assert "s3cret" not in str(outages_path(url))
    assert demo_data_folder("postgresql://db.internal/other") == \
        tmp_path / "data" / "postgresql-db.internal-other-demo-data"


def test_a_duckdb_workspace_keeps_its_demo_files_beside_its_file(tmp_path: Path) -> None:
    for workspace in (tmp_path / "ws.duckdb", f"duckdb:///{tmp_path / 'ws.duckdb'}"):
        assert demo_data_folder(workspace) == tmp_path / "ws-demo-data"
        assert outages_path(workspace) == tmp_path / "ws-demo-data" / "gateway-outages.json"
