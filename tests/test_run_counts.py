"""Each run's item counts by outcome (on ``runs``) equal its items after every kind of outcome change, and
a workspace from before the counts existed gets them on open.

The engine's tests run on both backends (tests/backends.py). DuckDB only: the demo quarter's counts (the demo
seeded on DuckDB; on PostgreSQL: tests/test_demo_postgres.py) and the workspace from before the counts, a
DuckDB file an older Runledger wrote."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import sqlalchemy as sa

from engine import commands
from engine.authz import load_actor
from store.migrations import SCHEMA_VERSION
from store.run_counts import COUNT_COLUMNS, OUTCOME_COLUMN, backfill_failure_causes
from store.schema import run_failure_causes
from store.workspace import Workspace
from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import make_engine_fixture, pg_server_fixture, pg_template_fixture  # noqa: F401
from tests.support import FailsDeterministically, FailsTransiently, finding_definition, fire_one, items_of

MISMATCHES = f"""
    WITH counted AS (
        SELECT run_id, {", ".join(
            f"count(*) FILTER (WHERE outcome IN "
            f"({', '.join(repr(o) for o, c in OUTCOME_COLUMN.items() if c == col)})) AS {col}"
            for col in COUNT_COLUMNS)}
        FROM run_items GROUP BY run_id)
    SELECT r.run_id FROM runs r LEFT JOIN counted c USING (run_id)
    WHERE {" OR ".join(f"r.{col} <> coalesce(c.{col}, 0)" for col in COUNT_COLUMNS)}
"""


def mismatches(engine) -> list[str]:  # noqa: ANN001
    """Runs whose counts differ from their items, and failure summaries that differ from a recount."""
    with engine.ws.read() as conn:
        bad = [r for (r,) in conn.execute(sa.text(MISMATCHES))]
        kept = _summary(conn)
    with engine.ws.transaction() as tx:  # recount from scratch inside a transaction we then roll back
        backfill_failure_causes(tx.conn)
        recounted = _summary(tx.conn)
        tx.conn.rollback()
    return bad + ([f"failure summary {kept} != recount {recounted}"] if kept != recounted else [])


def _summary(conn: sa.Connection) -> list[tuple]:
    return [tuple(r) for r in conn.execute(sa.select(run_failure_causes).order_by(
        run_failure_causes.c.run_id, run_failure_causes.c.failure_cause, run_failure_causes.c.failure_class))]


def counts(engine, run_id: str) -> dict[str, int]:  # noqa: ANN001
    with engine.ws.read() as conn:
        row = conn.execute(sa.text(f"SELECT {', '.join(COUNT_COLUMNS)} FROM runs WHERE run_id = :r"),
                           {"r": run_id}).mappings().one()
    return {k: v for k, v in row.items() if v}


def _summary_rows(conn: sa.Connection, run_id: str) -> list:
    return list(conn.execute(sa.select(run_failure_causes).where(run_failure_causes.c.run_id == run_id)))


def test_the_demo_quarter_counts_equal_its_items(demo_quarter_path: str) -> None:
    con = duckdb.connect(demo_quarter_path, read_only=True)
    try:
        assert con.execute(MISMATCHES).fetchall() == []
        assert con.execute("SELECT sum(items_succeeded), sum(items_skipped) FROM runs").fetchone() == \
            con.execute("SELECT count(*) FILTER (WHERE outcome = 'succeeded'), "
                        "count(*) FILTER (WHERE outcome = 'skipped') FROM run_items").fetchone()
    finally:
        con.close()


def test_counts_follow_failures_retries_approvals_and_cancels(make_engine) -> None:  # noqa: ANN001
    engine = make_engine({"d": finding_definition("d"), "gated": finding_definition("gated", approval=True)},
                         accounts=6, actioners={"findings.create": FailsTransiently(
                             {"ACC-002": 1}, FailsDeterministically({"ACC-003"}))})
    sigrid = load_actor(engine.ws, "sigrid")
    run_id = fire_one(engine, "d")
    assert counts(engine, run_id) == {"items_succeeded": 4, "items_failed": 2} and not mismatches(engine)
    with engine.ws.read() as conn:
        assert sorted((r.failure_class, r.failed_items, r.failed_attempts) for r in _summary_rows(conn, run_id)) \
            == [("deterministic", 1, 1), ("transient", 1, 1)]
    commands.retry_run(engine, sigrid, run_id)  # the transient one recovers; the deterministic one is refused
    assert counts(engine, run_id) == {"items_succeeded": 5, "items_failed": 1} and not mismatches(engine)
    with engine.ws.read() as conn:  # the recovered failure stays in the history, no longer failed now
        assert sorted((r.failure_class, r.failed_items, r.failed_attempts) for r in _summary_rows(conn, run_id)) \
            == [("deterministic", 1, 1), ("transient", 0, 1)]

    gated = fire_one(engine, "gated")
    assert counts(engine, gated) == {"items_awaiting_approval": 6}
    waiting = sorted(i["item_id"] for i in items_of(engine, gated).values())
    commands.approve_item(engine, sigrid, waiting[0])
    commands.dismiss_item(engine, sigrid, waiting[1], "not applicable")
    assert counts(engine, gated)["items_awaiting_approval"] == 4 and not mismatches(engine)

    [pending] = engine.dispatch_events() or [None]  # nothing queued: make a run that stops after matching
    assert pending is None
    with engine.ws.transaction() as tx:
        from store.subjects import record_trigger_event
        record_trigger_event(tx, kind="manual", event_type="run.requested", source="member:sigrid",
                             occurred_at=engine.clock.now(), definition_id="d")
    with engine.ws.transaction() as tx:
        from store import runs as run_store
        event = run_store.read_undispatched_events(tx.conn)[0]
        version = engine.catalog.latest("d")[1]
        new_run = run_store.create_run(tx, definition_id="d", definition_version=version, event=event,
                                       actor="member:sigrid")
        run_store.claim_event(tx, event["event_id"])
    engine.executor.match_run(new_run, "member:sigrid")
    assert counts(engine, new_run) == {"items_pending": 6}
    commands.cancel_run(engine, sigrid, new_run, "stopped for review")
    assert counts(engine, new_run) == {"items_skipped": 6} and not mismatches(engine)


def test_an_older_workspace_gets_its_counts_on_open(demo_quarter_path: str, tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    shutil.copyfile(demo_quarter_path, path)
    con = duckdb.connect(str(path))
    con.execute("DROP INDEX ix_runs_def_triggered")  # DuckDB alters no table an index depends on
    for col in COUNT_COLUMNS:  # as a workspace of schema 2 was: no count columns
        con.execute(f"ALTER TABLE runs DROP COLUMN {col}")
    con.execute("CREATE INDEX ix_runs_def_triggered ON runs (definition_id, triggered_at)")
    con.execute("DROP TABLE run_failure_causes")
    con.execute("UPDATE schema_meta SET value = '2' WHERE key = 'schema_version'")
    con.close()
    ws = Workspace(str(path))
    try:
        with ws.read() as conn:
            assert conn.execute(sa.text("SELECT value FROM schema_meta WHERE key = 'schema_version'")).scalar() \
                == str(SCHEMA_VERSION)
            assert not list(conn.execute(sa.text(MISMATCHES)))
            assert conn.execute(sa.text("SELECT sum(items_succeeded) FROM runs")).scalar() > 0
            assert conn.execute(sa.text("SELECT sum(failed_attempts) FROM run_failure_causes")).scalar() == 18
    finally:
        ws.close()


def test_counts_equal_the_items_while_a_retried_or_approved_item_acts(make_engine) -> None:  # noqa: ANN001
    """Taking a failed item (an automatic retry) or a held one (an approval) into flight moves it from one
    count column to another. The counts must follow in that claim's own transaction: a process killed while
    the item acts would otherwise leave a run whose counts say failed or awaiting for an item in flight
    (found by the kill-anywhere harness, tests/faults/test_kill_anywhere.py)."""
    seen: list[tuple[str, list[str]]] = []

    class Observing(FailsTransiently):
        def before(self, req, ctx) -> None:  # noqa: ANN001
            seen.append((req.definition_id, mismatches(engine)))  # the item is in flight, its claim committed
            super().before(req, ctx)

    engine = make_engine({"d": finding_definition("d", retry="max_attempts: 2, backoff_seconds: 0"),
                          "gated": finding_definition("gated", approval=True)},
                         accounts=2, actioners={"findings.create": Observing({"ACC-001": 1})})
    run_id = fire_one(engine, "d")
    assert counts(engine, run_id) == {"items_succeeded": 1, "items_failed": 1}
    gated = fire_one(engine, "gated")
    seen.clear()
    assert engine.process_due_retries() == 1
    waiting = sorted(i["item_id"] for i in items_of(engine, gated).values())
    assert commands.approve_item(engine, load_actor(engine.ws, "sigrid"), waiting[0]) == "succeeded"
    assert seen == [("d", []), ("gated", [])]
    assert counts(engine, run_id) == {"items_succeeded": 2} and not mismatches(engine)
