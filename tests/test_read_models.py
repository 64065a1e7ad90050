"""The read models say the same on DuckDB and on PostgreSQL: what the pages, the brief, the evidence bundle and
the exports read (``store/views``, and the reporting built on it), asked of one history on each backend.

One history — runs of every outcome, an automatic and a member's retry, approvals approved, dismissed and
left open, a cancelled run, a register import, an automation paused — is played on an engine of each backend
on the same simulated clock, so that both workspaces hold the same ids, times and audit chain. Every read
model is then asked the same question of both, and the answers must be equal value for value and type for
type (a ``Decimal`` where DuckDB gives an ``int`` is a difference: pages and exports format what they get).
DuckDB's answers are the reference: the demo quarter's tests check them figure by figure against SQL over the
tables (tests/test_analytics.py, tests/test_bundle.py, tests/test_brief.py, tests/test_demo_quarter.py).

This is the one contract module that compares instead of parametrizing: a read model's answer is only
worth checking over a history that has something of every kind, and playing it costs more than asking.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import zipfile
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa

from core.periods import AnalyticsPeriod
from engine import commands
from engine.commands.registers import import_register
from engine.runtime import Engine
from reporting.analytics import build_analytics
from reporting.bundle import write_run_bundle
from reporting.integrity import build_integrity_statement
from reporting.provenance import Provenance
from store.registers import read_registers
from store.views import analytics as av
from store.views import brief as bv
from store.views import bundle as uv
from store.views import integrity as iv
from store.views import oversight as ov
from store.views import registers as rv
from store.views import run_pages as pv
from store.views import summary as sv
from tests.backends import TEMPLATE, create_database, pg_server_fixture  # noqa: F401
from tests.support import (
    START,
    FailsDeterministically,
    FailsTransiently,
    actor,
    build_engine,
    finding_definition,
    fire_one,
    items_of,
)

pytestmark = pytest.mark.slow  # two engines, one of them on a PostgreSQL server, play one history

UTC = dt.UTC
PERIOD = AnalyticsPeriod(dt.datetime(2026, 7, 1, tzinfo=UTC), dt.datetime(2026, 10, 1, tzinfo=UTC), "Q3 2026")
WHOLE = av.AnalyticsFilter(PERIOD.start, PERIOD.end)
ACCOUNTS_CSV = "account_id,name,manager,status,kyc_review_due,risk_rating\n" + "".join(
    f"ACC-{i:03d},Member {i},m.one,{'inactive' if i == 4 else 'active'},2026-07-01,{'high' if i == 5 else 'low'}\n"
    for i in range(1, 6))


DEFINITIONS = {
    "d": finding_definition("d", retry="max_attempts: 3, backoff_seconds: 60"),
    "gated": finding_definition("gated", approval=True),
    "on-close": finding_definition("on-close").replace(
        'trigger: {kind: schedule, cron: "0 6 * * mon"}', "trigger: {kind: event, event: account.deactivated}")
    .replace("value: active", "value: inactive"),
}


def play_history(engine: Engine, folder: Path) -> None:
    """Everything the read models show, once: the same calls, on the same clock, on either backend."""
    clock, sigrid, admin = engine.clock, actor(engine, "sigrid"), actor(engine, "admin")
    first = fire_one(engine, "d")  # ACC-002 fails transiently, ACC-003 for good, the others succeed
    clock.sleep(61)
    engine.process_due_retries()  # ACC-002's automatic retry succeeds
    clock.sleep(240)
    failed = items_of(engine, first)["ACC-003"]["item_id"]
    with pytest.raises(commands.NotEligible):
        commands.retry_item(engine, sigrid, failed)  # deterministic: refused, and the refusal audited
    gated = fire_one(engine, "gated")
    clock.sleep(3600)
    waiting = items_of(engine, gated)
    assert commands.approve_item(engine, sigrid, waiting["ACC-001"]["item_id"]) == "succeeded"
    clock.sleep(90)
    assert commands.dismiss_item(engine, sigrid, waiting["ACC-002"]["item_id"], "not applicable") == "skipped"
    clock.advance_to(START + dt.timedelta(days=2, hours=3))
    csv = folder / "accounts.csv"
    csv.write_text(ACCOUNTS_CSV)
    import_register(engine, sigrid, "accounts", csv)  # ACC-005 added; ACC-004 deactivated: an event, a run
    clock.advance_to(START + dt.timedelta(days=7))
    fire_one(engine, "d")  # the second Monday: five accounts, ACC-004 no longer matches
    cancelled = fire_one(engine, "gated")
    clock.sleep(600)
    assert commands.cancel_run(engine, sigrid, cancelled, "not this quarter") == "cancelled"
    clock.sleep(60)
    commands.set_enabled(engine, admin, "d", False)
    clock.advance_to(START + dt.timedelta(days=15))


@pytest.fixture(scope="module")
def engines(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Engine]]:
    """The history played on each backend: {"duckdb": engine, "postgresql": engine}."""
    made: dict[str, Engine] = {}
    folder = tmp_path_factory.mktemp("history")  # one folder: the definitions' and the import's paths are audited
    for backend in ("duckdb", "postgresql"):
        where: dict[str, Any] = {} if backend == "duckdb" else {
            "db": create_database(pg_server, TEMPLATE), "seeded": True}
        act = FailsDeterministically({"ACC-003"}, inner=FailsTransiently({"ACC-002": 1}))
        engine = build_engine(folder, DEFINITIONS, accounts=4, actioners={"findings.create": act}, **where)
        made[backend] = engine
        play_history(engine, folder)
    yield made
    for engine in made.values():
        engine.shutdown()
        engine.ws.close()


# --- what is compared --------------------------------------------------------------------------------
PER_PROCESS = {"worked_by", "claimed_by"}  # which worker took the work: a name made of the host and process


def plain(value: Any) -> Any:
    """An answer as comparable data: rows, frames and dataclasses opened up, a worker's name left out.
    Types are kept: 1 and Decimal("1") and 1.0 stay apart (a datetime is compared as the instant it is)."""
    if isinstance(value, pl.DataFrame):
        return {"schema": {k: str(v) for k, v in value.schema.items()}, "rows": plain(value.to_dicts())}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, sa.Row):
        return plain(value._asdict())
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items() if k not in PER_PROCESS}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return ("datetime", value.astimezone(UTC) if value.tzinfo else value)
    if isinstance(value, bool | int | float | Decimal):
        return (type(value).__name__, value)
    return value


def reading(question: Callable[[sa.Connection], Any]) -> Callable[[Engine], Any]:
    def ask(engine: Engine) -> Any:
        with engine.ws.read() as conn:
            return question(conn)
    return ask


def _runs(conn: sa.Connection) -> list[str]:
    return list(conn.execute(sa.text("SELECT run_id FROM runs ORDER BY run_number")).scalars())


def _items(conn: sa.Connection) -> list[str]:
    return list(conn.execute(sa.text("SELECT item_id FROM run_items ORDER BY run_id, position")).scalars())


def _every_run(view: Callable[..., Any]) -> Callable[[sa.Connection], Any]:
    return lambda conn: [view(conn, run_id) for run_id in _runs(conn)]


def _all_pages(sort: str, descending: bool, limit: int = 2) -> Callable[[sa.Connection], Any]:
    """Every page of the Runs page in this order, following its cursors (two runs a page)."""
    def pages(conn: sa.Connection) -> list[Any]:
        out, after = [], None
        while True:
            rows, after = pv.read_runs_page(conn, pv.RunFilter(), pv.RunSort(sort, descending), after, limit)
            out.append(rows)
            if after is None:
                return out
    return pages


def _audit_pages(conn: sa.Connection) -> list[Any]:
    out, before = [], None
    while True:
        rows, before = ov.read_audit_page(conn, ov.AuditFilter(), before, limit=25)
        out.append(rows)
        if before is None:
            return out


def _subjects(conn: sa.Connection) -> Any:
    regs = read_registers(conn)
    return {kind: rv.read_subjects_page(conn, regs[kind]) for kind in ("accounts", "incidents")}


def _summaries(conn: sa.Connection) -> Any:
    return [{k: v for k, v in r.items() if k != "register"} for r in rv.read_register_summaries(conn)]


READS: dict[str, Callable[[sa.Connection], Any]] = {
    # the Analytics page and the brief's figures
    "analytics.count_runs_by_definition_week": lambda c: av.count_runs_by_definition_week(c, WHOLE),
    "analytics.count_items_by_definition_week_outcome": lambda c: av.count_items_by_definition_week_outcome(c, WHOLE),
    "analytics.count_failed_attempts_by_cause": lambda c: av.count_failed_attempts_by_cause(c, WHOLE),
    "analytics.count_failed_items_now_by_cause": lambda c: av.count_failed_items_now_by_cause(c, WHOLE),
    "analytics.count_runs_by_completion_bucket": lambda c: av.count_runs_by_completion_bucket(c, WHOLE),
    "analytics.summarize_completion_times": lambda c: av.summarize_completion_times(c, WHOLE),
    "analytics.summarize_approvals": lambda c: av.summarize_approvals(c, WHOLE, START + dt.timedelta(days=15)),
    "analytics.read_approval_decisions": lambda c: av.read_approval_decisions(c, WHOLE),
    "analytics.count_trigger_events": lambda c: av.count_trigger_events(c, WHOLE),
    "analytics.read_version_history": lambda c: av.read_version_history(c),
    "analytics.read_enablement_changes": lambda c: av.read_enablement_changes(c),
    "analytics.read_run_time_range": lambda c: av.read_run_time_range(c),
    "brief.summarize_run_shapes": lambda c: bv.summarize_run_shapes(c, WHOLE),
    "brief.count_runs_by_status": lambda c: bv.count_runs_by_status(c, WHOLE),
    "brief.count_items_by_subject_kind": lambda c: bv.count_items_by_subject_kind(c, WHOLE),
    "brief.count_skips_by_reason": lambda c: bv.count_skips_by_reason(c, WHOLE),
    "brief.count_retries_by_actor": lambda c: bv.count_retries_by_actor(c, WHOLE),
    "brief.read_period_runs": lambda c: bv.read_period_runs(c, WHOLE),
    "brief.read_remote_attempts": lambda c: bv.read_remote_attempts(c, WHOLE, ("findings",)),
    "integrity.read_integrity_facts": lambda c: iv.read_integrity_facts(c, WHOLE, [("gated", 1)]),
    "summary.summarize_period": lambda c: sv.summarize_period(c, PERIOD.start, PERIOD.end),
    # the evidence bundle's reads
    "bundle.iter_run_items": _every_run(lambda c, r: list(uv.iter_run_items(c, r, page=2))),
    "bundle.iter_run_attempts": _every_run(lambda c, r: list(uv.iter_run_attempts(c, r, page=2))),
    "bundle.iter_run_approvals": _every_run(lambda c, r: list(uv.iter_run_approvals(c, r, page=1))),
    "bundle.iter_run_audit_entries": lambda c: [list(uv.iter_run_audit_entries(c, r, e, page=3)) for r, e in c.execute(
        sa.text("SELECT run_id, trigger_event_id FROM runs ORDER BY run_number")).all()],
    # Failed items, Approvals, Audit log, Records
    "oversight.count_failed_items_by_cause": lambda c: ov.count_failed_items_by_cause(c, ov.FailedFilter()),
    "oversight.read_failed_items": lambda c: [ov.read_failed_items(c, ov.FailedFilter(), limit)
                                              for limit in (1, 500, None)],
    "oversight.read_open_approvals_oldest_first": ov.read_open_approvals_oldest_first,
    "oversight.read_recent_decisions": ov.read_recent_decisions,
    "oversight.read_audit_page": _audit_pages,
    "oversight.read_audit_entry": lambda c: [ov.read_audit_entry(c, seq) for seq in (1, 10, 40)],
    "oversight.read_audit_vocabulary": ov.read_audit_vocabulary,
    "oversight.read_records": lambda c: ov.read_records(c, "findings"),
    "oversight.read_items_for_subject": lambda c: ov.read_items_for_subject(c, "accounts", "ACC-002"),
    # Registers
    "registers.read_last_imports": rv.read_last_imports,
    "registers.read_register_summaries": _summaries,
    "registers.read_register_versions_of": lambda c: rv.read_register_versions_of(c, "accounts"),
    "registers.read_imports_of": lambda c: rv.read_imports_of(c, "accounts"),
    "registers.read_subjects_page": _subjects,
    # Runs, Run, Run item
    **{f"run_pages.read_runs_page[{key}]": _all_pages(key, key != "definition") for key in pv._SORTS},
    "run_pages.count_runs_by_status": lambda c: pv.count_runs_by_status(c, pv.RunFilter()),
    "run_pages.count_outcomes_for_runs": lambda c: pv.count_outcomes_for_runs(c, _runs(c)),
    "run_pages.count_failed_first_items": lambda c: pv.count_failed_first_items(c, _runs(c)),
    "run_pages.count_runs": pv.count_runs,
    "run_pages.read_definition_ids": pv.read_definition_ids,
    "run_pages.read_run_detail": _every_run(pv.read_run_detail),
    "run_pages.count_items_by_action_and_outcome": _every_run(pv.count_items_by_action_and_outcome),
    "run_pages.read_items_page": _every_run(lambda c, r: pv.read_items_page(c, r, limit=2)),
    "run_pages.read_item_detail": lambda c: [pv.read_item_detail(c, i) for i in _items(c)],
    "run_pages.read_entity_audit": _every_run(lambda c, r: pv.read_entity_audit(c, "run", r)),
}

QUESTIONS: dict[str, Callable[[Engine], Any]] = {name: reading(q) for name, q in READS.items()} | {
    # what the exports build from those reads
    "reporting.build_analytics": lambda e: build_analytics(e.ws, PERIOD, now=START + dt.timedelta(days=15)),
    "reporting.build_integrity_statement": lambda e: build_integrity_statement(e.ws, PERIOD).facts,
}


# Grouped rows in no promised order (no ORDER BY): their callers key them, sort them or count them.
IN_NO_ORDER = {
    "analytics.count_runs_by_definition_week", "analytics.count_items_by_definition_week_outcome",
    "analytics.count_failed_attempts_by_cause", "analytics.count_failed_items_now_by_cause",
    "analytics.count_runs_by_completion_bucket", "analytics.summarize_completion_times",
    "analytics.summarize_approvals", "analytics.count_trigger_events", "brief.summarize_run_shapes",
    "brief.count_runs_by_status", "brief.count_items_by_subject_kind", "brief.read_remote_attempts",
    "integrity.read_integrity_facts",
}


@pytest.mark.parametrize("question", QUESTIONS)
def test_each_read_model_answers_alike_on_both_backends(engines: dict[str, Engine], question: str) -> None:
    ask = QUESTIONS[question]
    duckdb, postgresql = plain(ask(engines["duckdb"])), plain(ask(engines["postgresql"]))
    if question in IN_NO_ORDER and isinstance(duckdb, list):
        duckdb, postgresql = sorted(duckdb, key=repr), sorted(postgresql, key=repr)
    assert duckdb, f"{question} read nothing: the history should give it something to show"
    assert postgresql == duckdb


def test_a_runs_evidence_bundle_holds_the_same_files(engines: dict[str, Engine]) -> None:
    """The bundle's files, read back: the same, but for the worker names (``claimed_by``, ``worked_by``) and
    the files that name the workspace or hash those (its provenance, its README, its manifest)."""
    stamp = START + dt.timedelta(days=15)

    def read_back(name: str, data: bytes) -> Any:
        if name.endswith(".jsonl"):
            return [plain(json.loads(line)) for line in data.splitlines()]
        return plain(json.loads(data)) if name.endswith(".json") else data

    def files(engine: Engine, run_id: str) -> dict[str, Any]:
        provenance = Provenance(workspace="ws", period="run", generated_at=stamp, generated_by="auditor")
        with zipfile.ZipFile(io.BytesIO(write_run_bundle(engine.ws, run_id, provenance))) as zf:
            named = {n.split("/", 1)[1]: zf.read(n) for n in zf.namelist()}
        return {n: read_back(n, data) for n, data in named.items()
                if n not in {"provenance.json", "README.txt", "manifest.json"}}
    with engines["duckdb"].ws.read() as conn:
        run_ids = _runs(conn)
    assert len(run_ids) == 5
    for run_id in run_ids:
        bundled = files(engines["duckdb"], run_id)
        assert {"items.jsonl", "attempts.jsonl", "audit_entries.jsonl", "run.json"} <= set(bundled)
        assert files(engines["postgresql"], run_id) == bundled, run_id


def test_both_workspaces_hold_one_history(engines: dict[str, Engine]) -> None:
    """The premise: the same audit chain, entry for entry (its hashes cover each entry's time and payload)."""
    def entries(engine: Engine) -> list[Any]:
        with engine.ws.read() as conn:
            return [plain(r) for r in conn.execute(sa.text("SELECT * FROM audit_log ORDER BY seq")).mappings()]
    assert entries(engines["postgresql"]) == entries(engines["duckdb"])
    heads = {b: e.ws.verify_audit() for b, e in engines.items()}
    assert heads["duckdb"].intact and heads["postgresql"].intact
    assert (heads["postgresql"].entries, heads["postgresql"].head_hash) == \
        (heads["duckdb"].entries, heads["duckdb"].head_hash)
