"""One test body, two backends: what a test module imports to run its tests on DuckDB and on PostgreSQL (as
Dagster's storage tests run one contract suite over every storage).

A module that imports the fixtures (``from tests.backends import backend_fixture, pg_server_fixture,
workspace_db_fixture``: named apart from ``backend``, ``pg_server`` and ``workspace_db``, which tests ask for,
so that a test's parameter shadows no import) runs each test that asks for ``workspace_db`` twice,
``[duckdb]`` and ``[postgresql]``: the DuckDB one on a file of the test's own, the PostgreSQL one on a database
of its own, created for it on one real server per module (``tests/pg_server.py``, started only if a
PostgreSQL test runs), so tests stay independent and the server starts once.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.pg_server import postgres_server

BACKENDS = ("duckdb", "postgresql")
_databases = itertools.count(1)


@pytest.fixture(scope="module", name="pg_server")
def pg_server_fixture() -> Iterator[str]:
    """A real PostgreSQL server for this module; the URL of its first database (its superuser's)."""
    with postgres_server() as url:
        yield url


def create_database(server_url: str) -> str:
    """A new, empty database on the server; its SQLAlchemy URL."""
    name = f"t{os.getpid()}_{next(_databases)}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        admin.dispose()
    return sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=BACKENDS, name="backend")
def backend_fixture(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(name="workspace_db")
def workspace_db_fixture(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Where the test's workspace lives: a DuckDB file, or a fresh PostgreSQL database's URL."""
    if backend == "duckdb":
        return str(tmp_path / "ws.duckdb")
    return create_database(request.getfixturevalue("pg_server"))
