"""Analytics, the brief's figures, the table exports and a run's bundle tell the same on PostgreSQL as on DuckDB.

One small history — two weeks of a schedule, a failure refused for good, a timeout retried by the policy, an
approval granted and one dismissed — is made by the real engine on the simulated clock in a DuckDB workspace and
in a PostgreSQL one; then every read model the Analytics page calls, the brief's data gathering (its store
calls and the integrity statement), a CSV table export and a run's evidence bundle are read from both, and must
agree, figure for figure. (Rows of a GROUP BY without an ORDER BY are compared as sets: neither backend promises
their order, and the callers index them.)

Before the read models spelled their SQL per dialect (store/portable.py) the analytics read failed on
PostgreSQL: ``epoch_ms`` and ``quantile_cont`` are DuckDB's names (``UndefinedFunction``). The PostgreSQL
database is set to a time zone of its own (as a server set up outside UTC is): a week still starts on Monday
00:00 UTC, as on DuckDB (the workspace's sessions are UTC's).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa

from core.periods import AnalyticsPeriod
from engine import commands
from reporting.analytics import build_analytics
from reporting.brief import APPENDIX_LIMIT, APPROVALS_LIMIT
from reporting.bundle import build_run_bundle
from reporting.exports import export_table
from reporting.integrity import build_integrity_statement
from reporting.remote import REMOTE_PREFIXES
from store.views import analytics as q
from store.views import brief as bq
from tests.backends import create_database, pg_server_fixture  # noqa: F401 - fixture
from tests.support import (
    FailsDeterministically,
    FailsTransiently,
    WrappedActioner,
    actor,
    build_engine,
    finding_definition,
    items_of,
)

UTC = dt.UTC
PERIOD = AnalyticsPeriod(dt.datetime(2026, 7, 1, tzinfo=UTC), dt.datetime(2026, 10, 1, tzinfo=UTC), "Q3 2026")
RETRY = "max_attempts: 3, backoff_seconds: 300, backoff_multiplier: 2"


class Mixed(WrappedActioner):
    """ACC-002 is refused for good; ACC-003 times out once, then works."""

    def __init__(self) -> None:
        super().__init__()
        self.deterministic = FailsDeterministically({"ACC-002"})
        self.transient = FailsTransiently({"ACC-003": 1})

    def before(self, req: Any, ctx: Any) -> None:
        self.deterministic.before(req, ctx)
        self.transient.before(req, ctx)


def _history(tmp_path: Path, db: str | None) -> Any:
    """The engine after the history above, in the workspace ``db`` (a DuckDB file of tmp_path's when None)."""
    engine = build_engine(tmp_path, {"d": finding_definition("d", retry=RETRY),
                                     "a": finding_definition("a", approval=True)},
                          accounts=4, actioners={"findings.create": Mixed()}, db=db)
    sigrid = actor(engine, "sigrid")
    clock = engine.clock
    engine.fire("d")
    clock.sleep(300)
    assert engine.process_due_retries() == 1  # ACC-003's timeout, retried by the policy
    [approval_run] = engine.fire("a")
    pending = items_of(engine, approval_run)
    clock.sleep(90)
    commands.approve_item(engine, sigrid, pending["ACC-001"]["item_id"])
    clock.sleep(30)
    commands.dismiss_item(engine, sigrid, pending["ACC-004"]["item_id"], "covered by the annual review")
    clock.sleep(7 * 24 * 3600)  # the next week
    engine.fire("d")
    clock.sleep(3600)
    return engine


def _plain(value: Any) -> Any:
    """A figure as both backends must give it: floats to the millisecond (DuckDB's epoch_ms is milliseconds,
    PostgreSQL's epoch microseconds), times in UTC."""
    if isinstance(value, pl.DataFrame):
        return _plain(value.to_dicts())
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dt.datetime):
        return value.astimezone(UTC)
    return value


# What differs between two workspaces by design: the worker that claimed the work (host, process, random), and
# the audit chain's hashes (each workspace's chain starts from its own members' salted password hashes).
UNLIKE = {"worked_by", "claimed_by", "hash", "prev_hash", "audit_chain_head"}


def _without(value: Any, keys: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_without(v, keys) for v in value]
    return value


def _figures(engine: Any) -> dict[str, Any]:
    """Everything the Analytics page, the brief and the exports read, through their own functions."""
    ws = engine.ws
    a = build_analytics(ws, PERIOD)
    f = q.AnalyticsFilter(PERIOD.start, PERIOD.end, PERIOD.definitions)
    out: dict[str, Any] = {
        "totals": a.totals, "per_definition": a.per_definition, "weekly_outcomes": a.weekly_outcomes,
        "weekly_runs": a.weekly_runs, "failure_causes": a.failure_causes,
        "completion_buckets": a.completion_buckets, "completion_times": a.completion_times,
        "approvals": a.approvals, "firing": a.firing_frame()}
    with ws.read() as conn:  # the brief's own store calls (reporting/brief.py), and the pickers' range
        out |= {k: sorted(rows, key=repr) for k, rows in (  # GROUP BYs without an order
            ("trigger_events", q.count_trigger_events(conn, f)), ("shapes", bq.summarize_run_shapes(conn, f)),
            ("statuses", bq.count_runs_by_status(conn, f)), ("kinds", bq.count_items_by_subject_kind(conn, f)),
            ("remote", bq.read_remote_attempts(conn, f, REMOTE_PREFIXES)))}
        out |= {
            "versions": [{k: v for k, v in r.items() if k != "recorded_at"} for r in q.read_version_history(conn)],
            "enablement": q.read_enablement_changes(conn),
            "time_range": list(q.read_run_time_range(conn)),
            "decisions": q.read_approval_decisions(conn, f, limit=APPROVALS_LIMIT),
            "skips": bq.count_skips_by_reason(conn, f), "retries": bq.count_retries_by_actor(conn, f),
            "period_runs": bq.read_period_runs(conn, f, limit=APPENDIX_LIMIT)}
    statement = build_integrity_statement(ws, PERIOD)
    out["integrity"] = [(c.claim, c.passed) for c in statement.claims]
    out["integrity_facts"] = dataclasses.asdict(statement.facts)
    auditor = actor(engine, "auditor")
    exported = export_table(ws, auditor, a, "per-automation", "csv")
    out["csv"] = exported.content.decode().split("\n")[-3:]  # the rows (the head carries the export's time)
    run_id = out["period_runs"][0]["run_id"]
    _, content = build_run_bundle(ws, auditor, run_id)
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        names = sorted(n.split("/", 1)[1] for n in zf.namelist())
        held = {n.split("/", 1)[1]: [json.loads(line) for line in zf.read(n).decode().splitlines()]
                if n.endswith(".jsonl") else json.loads(zf.read(n)) for n in zf.namelist()
                if n.endswith((".jsonl", "run.json", "approvals.json", "trigger_event.json"))}
    out["bundle"] = (names, _without(held, UNLIKE))
    return _plain(out)


def test_analytics_the_brief_exports_and_bundles_agree_on_postgresql(tmp_path: Path, pg_server: str) -> None:
    figures = {}
    url = create_database(pg_server)
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    try:  # a server set up in its own zone: weeks, days and intervals must still be UTC's, as on DuckDB
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{sa.make_url(url).database}" SET TimeZone = \'America/New_York\'')
    finally:
        admin.dispose()
    for backend, db in (("duckdb", None), ("postgresql", url)):
        folder = tmp_path / backend
        folder.mkdir()
        engine = _history(folder, db)
        try:
            figures[backend] = _figures(engine)
        finally:
            engine.shutdown()
            engine.ws.close()
    duck, pg = figures["duckdb"], figures["postgresql"]
    # The history is what it should be, so that agreeing is not agreeing on nothing.
    assert {k: duck["totals"][k] for k in ("runs", "items", "succeeded", "failed", "skipped")} == {
        "runs": 3, "items": 12, "succeeded": 7, "failed": 2, "skipped": 1}, duck["totals"]
    assert {(r["decision"], r["approvals"], r["median_wait_seconds"]) for r in duck["approvals"]} == {
        ("approved", 1, 90.0), ("dismissed", 1, 120.0), ("open", 2, 608_520.0)}, duck["approvals"]
    assert [r["closed_runs"] for r in duck["completion_times"]] == [2], duck["completion_times"]
    assert duck["completion_times"][0]["max_seconds"] == 300.0  # the run that waited for its retry
    assert all(passed for _, passed in duck["integrity"]), duck["integrity"]
    assert len(duck["csv"]) == 3 and duck["bundle"][1]["items.jsonl"]
    for key in duck:
        assert pg[key] == duck[key], key
