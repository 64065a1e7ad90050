"""One test body, two backends: what a test module imports to run its tests on DuckDB and on PostgreSQL (as
Dagster's storage tests run one contract suite over every storage).

A module that imports the fixtures (``from tests.backends import backend_fixture, pg_server_fixture,
workspace_db_fixture``: named apart from ``backend``, ``pg_server`` and ``workspace_db``, which tests ask for,
so that a test's parameter shadows no import) runs each test that asks for ``workspace_db`` twice,
``[duckdb]`` and ``[postgresql]``: the DuckDB one on a file of the test's own, the PostgreSQL one on a database
of its own, created for it on one real server per module (``tests/pg_server.py``, started only if a
PostgreSQL test runs), so tests stay independent and the server starts once.

The store's contract suite goes one step further: a module that also imports ``make_engine_fixture`` gets a
``make_engine`` that builds each test's engine on the backend of its ``[duckdb]`` or ``[postgresql]`` run —
so the tests written for ``conftest.make_engine`` run on both unchanged. Each PostgreSQL workspace is a copy
(``CREATE DATABASE … TEMPLATE``) of a template database holding what the DuckDB template file holds
(``tests.support.make_template``): making one from nothing takes a second or more (the schema's migrations,
the members, seven registers), a copy a fraction of that. The template is made once per test process: each
module's server starts on a copy of the files of a cluster that holds it (``postgres_server(prepare=…)``).

``backend_fixture`` runs the PostgreSQL half in the quick loop; ``backend_pg_slow_fixture`` (imported
``as backend_fixture``) marks it ``slow``, for modules whose PostgreSQL half would make that loop too long:
``make test`` runs both halves whichever a module chooses.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.runtime import Engine
from tests.pg_server import postgres_server
from tests.support import build_engine, make_template

BACKENDS = ("duckdb", "postgresql")
_databases = itertools.count(1)


TEMPLATE = "workspace_template"  # on every server of pg_server_fixture: a workspace as every test's starts


def _with_template(server_url: str) -> None:
    """What a module's server holds besides its empty database: the template workspace (``make_template``),
    made once per test process and copied with the server's files (tests/pg_server.py)."""
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{TEMPLATE}"')
    finally:
        admin.dispose()
    make_template(sa.make_url(server_url).set(database=TEMPLATE).render_as_string(hide_password=False))


@pytest.fixture(scope="module", name="pg_server")
def pg_server_fixture() -> Iterator[str]:
    """A real PostgreSQL server for this module; the URL of its first database (its superuser's). It holds the
    template workspace too (``pg_template``)."""
    with postgres_server(prepare=_with_template) as url:
        yield url


def create_database(server_url: str, template: str | None = None) -> str:
    """A new database on the server, empty or a copy of ``template`` (a database no one is connected to);
    its SQLAlchemy URL."""
    name = f"t{os.getpid()}_{next(_databases)}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    finally:
        admin.dispose()
    return sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="module", name="pg_template")
def pg_template_fixture(pg_server: str) -> str:
    """The name of the template database on this module's server: a workspace as every test's starts
    (``make_template``), which no one connects to, so that ``CREATE DATABASE … TEMPLATE`` may copy it."""
    return TEMPLATE


@pytest.fixture(params=BACKENDS, name="backend")
def backend_fixture(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["duckdb", pytest.param("postgresql", marks=pytest.mark.slow)], name="backend")
def backend_pg_slow_fixture(request: pytest.FixtureRequest) -> str:
    """As ``backend_fixture``, the PostgreSQL half marked ``slow``: ``-m "not slow"`` runs DuckDB's only."""
    return str(request.param)


@pytest.fixture(name="workspace_db")
def workspace_db_fixture(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Where the test's workspace lives: a DuckDB file, or a fresh PostgreSQL database's URL."""
    if backend == "duckdb":
        return str(tmp_path / "ws.duckdb")
    return create_database(request.getfixturevalue("pg_server"))


@pytest.fixture(name="make_engine")
def make_engine_fixture(backend: str, tmp_path: Path,
                        request: pytest.FixtureRequest) -> Iterator[Callable[..., Engine]]:
    """``conftest.make_engine`` on this test's backend: ``make_engine(definitions, accounts=…, actioners=…)``
    → Engine over a copy of the template workspace (``fresh=True``: one made from nothing), closed after."""

    def workspace(kw: dict[str, Any]) -> None:
        if backend == "duckdb":
            return  # build_engine's own: a copy of this process's template file
        server = request.getfixturevalue("pg_server")
        if kw.pop("fresh", False):
            kw["db"] = create_database(server)
        else:
            kw["db"], kw["seeded"] = create_database(server, request.getfixturevalue("pg_template")), True

    yield from engines_made(tmp_path, workspace)


def engines_made(tmp_path: Path, workspace: Callable[[dict[str, Any]], None]) -> Iterator[Callable[..., Engine]]:
    """The body of a ``make_engine`` fixture: ``workspace`` says where (it may set ``build_engine``'s ``db``)."""
    made: list[Engine] = []

    def make(definitions: dict[str, str] | None = None, **kw: Any) -> Engine:
        workspace(kw)
        engine = build_engine(tmp_path, definitions, **kw)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.shutdown()
        engine.ws.close()
