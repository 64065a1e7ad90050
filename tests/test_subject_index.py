"""Schema 14: a subject's items and their attempts found by index (store/views/subject_items.py).

At 20 M items a scan for one subject cost the Subject page 250–350 ms, and one for its attempts 30 ms more;
the indexes make both lookups. An index serves only the query shaped for it — on DuckDB a single equality on
its one column — so these tests fail when the story's SQL drifts from what the indexes answer, not as a slow
page at a million runs. Timings are bench/bench_subject.py's, by hand; nothing here is timed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from engine import commands
from store.migrations import SCHEMA_VERSION
from store.views.subject_items import read_items_attempts, read_subject_items
from store.views.subject_story import read_subject_story
from store.workspace import Workspace
from tests.backends import (  # noqa: F401 - fixtures
    backend_fixture,
    make_engine_fixture,
    pg_server_fixture,
    pg_template_fixture,
    workspace_db_fixture,
)
from tests.support import FailsTransiently, actor, finding_definition, items_of
from tests.test_read_indexes import _index_names, _plans, _schema_version

V14_INDEXES = {"duckdb": {"ix_items_subject", "ix_attempts_item"},
               "postgresql": {"ix_items_subject", "ix_events_subject", "ix_subject_changes_subject"}}


def test_a_workspace_of_schema_13_gains_the_subject_index(workspace_db: str, backend: str) -> None:
    ws = Workspace(workspace_db)
    try:
        with ws.engine.begin() as conn:
            assert V14_INDEXES[backend] <= _index_names(conn)
            for name in V14_INDEXES[backend]:
                conn.exec_driver_sql(f"DROP INDEX {name}")
            conn.exec_driver_sql("UPDATE schema_meta SET value = '13' WHERE key = 'schema_version'")
    finally:
        ws.close()
    ws = Workspace(workspace_db)
    try:
        with ws.read() as conn:
            assert _schema_version(conn) == SCHEMA_VERSION
            assert V14_INDEXES[backend] <= _index_names(conn)
    finally:
        ws.close()


def _story_engine(make_engine: Callable[..., Any]) -> tuple[Any, list[str]]:
    """Three runs over the same accounts; ACC-002's first attempt fails transiently and is retried."""
    engine = make_engine({"d": finding_definition("d")}, accounts=3,
                         actioners={"findings.create": FailsTransiently({"ACC-002": 1})})
    run_ids: list[str] = []
    for _ in range(3):  # an hour apart: the same moment's fire is the same occurrence, one run
        run_ids += engine.fire("d")
        engine.clock.sleep(3600)
    failed = items_of(engine, run_ids[0])["ACC-002"]["item_id"]
    commands.retry_item(engine, actor(engine, "sigrid"), failed)
    return engine, run_ids


def test_the_story_finds_only_its_subject_and_kind_and_every_attempt(make_engine: Callable[..., Any]) -> None:
    engine, run_ids = _story_engine(make_engine)
    with engine.ws.read() as conn:
        items = read_subject_items(conn, "accounts", "ACC-002", 100)
        assert [i["run_id"] for i in items] == run_ids
        assert read_subject_items(conn, "suppliers", "ACC-002", 100) == []  # the id, but another register's
        assert len(read_subject_items(conn, "accounts", "ACC-002", 2)) == 2
        attempts = [(a["item_id"], a["attempt"], a["outcome"])
                    for a in read_items_attempts(conn, [i["item_id"] for i in items])]
    first = items[0]["item_id"]
    assert [a for a in attempts if a[0] == first] == [(first, 1, "failed"), (first, 2, "succeeded")]
    assert len(attempts) == 4 and attempts == sorted(attempts)
    assert len(run_ids) == 3


def _duckdb_profile(ws: Workspace, call: Callable[[sa.Connection], Any]) -> str:
    """DuckDB's executed plans (``EXPLAIN ANALYZE``: an ART's use is decided as the scan starts, so only
    the analysed plan says ``Index Scan``) for the statements ``call`` issues on items and attempts."""
    issued: list[tuple[str, Any]] = []

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if "FROM run_items" in statement or "FROM item_attempts" in statement:
            issued.append((statement, parameters))

    sa.event.listen(ws.engine, "before_cursor_execute", note)
    try:
        with ws.read() as conn:
            call(conn)
    finally:
        sa.event.remove(ws.engine, "before_cursor_execute", note)
    with ws.read() as conn:
        return "\n".join(str(row[-1]) for statement, parameters in issued
                         for row in conn.exec_driver_sql(f"EXPLAIN ANALYZE {statement}", parameters).all())


def test_the_story_reads_its_subject_from_the_index(make_engine: Callable[..., Any], backend: str) -> None:
    engine, _ = _story_engine(make_engine)

    def story(conn: sa.Connection) -> None:
        read_subject_story(conn, "accounts", "ACC-002")

    if backend == "duckdb":
        plans = _duckdb_profile(engine.ws, story)
        assert plans.count("Index Scan") == 3 and "Sequential Scan" not in plans, plans  # items, runs, attempts
        return
    plan = _plans(engine.ws, story)
    for index in ("ix_items_subject", "item_attempts_pkey", "ix_events_subject", "ix_subject_changes_subject"):
        assert f"using {index}" in plan, plan
