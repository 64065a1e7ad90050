"""What must hold of a workspace whatever happened to the process that wrote it, as SQL over the tables.

Two sets. ``consistency_violations`` holds at every committed state — after a failed write, a SIGKILL at
any instant, or mid-run: nothing half-applied (a record without its ledger entry, an outcome without its
attempt, an attempt without its audit entry), every record traced to the one item of its key, every run's
stored status and counts those its items derive, the audit chain intact. ``rest_violations`` holds once the
engine has worked everything it can (recovered, no process acting): no item pending or in flight, no run
open without work, no record but of an item that acted, and the product's own integrity statement (the
brief's "0 unintended consequences") passes. Each check is a sentence and a count, so a failure says what
broke. Shared by the fault tests and the kill-anywhere harness (which runs them in the engine process after
every restart, and in the test process at the end).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from core.periods import AnalyticsPeriod
from core.states import ITEM_FAILED, RunFacts, derive_run_status
from reporting.integrity import build_integrity_statement
from store.audit import verify_audit_chain
from store.cause_rollups import read_cause_rollups, recompute_cause_rollups
from store.failure_accounts import read_failure_accounts, recount_failure_accounts
from store.records import RECORD_TABLES
from store.rollups import read_event_rollups, read_rollup_tables, recompute_event_rollups, recompute_rollups
from store.run_counts import COUNT_COLUMNS, item_count_values
from store.workspace import Workspace

# Every owning module's records as one relation: their reference as items carry it, source item and key.
# A remote system's record (a webhook's ticket) is known here by its ledger entry, as in the integrity view.
_RECORDS = "WITH records AS (" + " UNION ALL ".join(
    f"SELECT '{module}:' || {list(t.primary_key.columns)[0].name} AS ref, source_item_id, idempotency_key "
    f"FROM {t.name}" for module, t in RECORD_TABLES.items()) + (
    " UNION ALL SELECT record_ref AS ref, item_id AS source_item_id, idempotency_key FROM idempotency_records "
    "WHERE actioner LIKE 'webhook:%' OR actioner LIKE 'email:%') ")
_ACTED = "('succeeded', 'idempotent-replay')"
ALL_TIME = AnalyticsPeriod(dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
                           dt.datetime(9999, 1, 1, tzinfo=dt.UTC), "all time")

CONSISTENT: tuple[tuple[str, str], ...] = (
    ("succeeded or replayed items whose record (of the item's key) does not exist",
     f"SELECT count(*) FROM run_items i WHERE outcome IN {_ACTED} AND NOT EXISTS "
     "(SELECT 1 FROM records r WHERE r.ref = i.record_ref AND r.idempotency_key = i.idempotency_key)"),
    ("succeeded or replayed items whose ledger entry is missing or names another record",
     f"SELECT count(*) FROM run_items i WHERE outcome IN {_ACTED} AND NOT EXISTS (SELECT 1 FROM "
     "idempotency_records l WHERE l.idempotency_key = i.idempotency_key AND l.record_ref = i.record_ref)"),
    ("items that did not act yet carry a record reference",
     f"SELECT count(*) FROM run_items WHERE outcome NOT IN {_ACTED} AND record_ref IS NOT NULL"),
    ("records whose source item does not exist or carries another idempotency key",
     "SELECT count(*) FROM records r WHERE NOT EXISTS (SELECT 1 FROM run_items i "
     "WHERE i.item_id = r.source_item_id AND i.idempotency_key = r.idempotency_key)"),
    ("idempotency keys with more than one record (an action executed twice)",
     "SELECT count(*) FROM (SELECT idempotency_key FROM records GROUP BY 1 HAVING count(*) > 1) AS twice"),
    ("idempotency keys carried by more than one item",
     "SELECT count(*) FROM (SELECT idempotency_key FROM run_items GROUP BY 1 HAVING count(*) > 1) AS twice"),
    ("records without their ledger entry",
     "SELECT count(*) FROM records r WHERE NOT EXISTS (SELECT 1 FROM idempotency_records l "
     "WHERE l.idempotency_key = r.idempotency_key AND l.record_ref = r.ref)"),
    ("ledger entries whose item does not carry their key, or whose record does not exist",
     "SELECT count(*) FROM idempotency_records l WHERE NOT EXISTS (SELECT 1 FROM run_items i WHERE "
     "i.item_id = l.item_id AND i.idempotency_key = l.idempotency_key) OR NOT EXISTS "
     "(SELECT 1 FROM records r WHERE r.ref = l.record_ref)"),
    ("records of items that neither acted nor are still between acting and recording it",
     f"SELECT count(*) FROM records r JOIN run_items i ON i.item_id = r.source_item_id "
     f"WHERE i.outcome NOT IN {_ACTED} AND i.outcome NOT IN ('in-flight', 'failed')"),
    ("items whose attempt count differs from their attempt rows (or their numbering has a gap)",
     "SELECT count(*) FROM run_items i LEFT JOIN (SELECT item_id, count(*) AS n, max(attempt) AS top "
     "FROM item_attempts GROUP BY 1) a USING (item_id) "
     "WHERE i.attempts <> coalesce(a.n, 0) OR i.attempts <> coalesce(a.top, 0)"),
    ("attempts without their audit entry, or the reverse (difference of the two counts)",
     "SELECT abs((SELECT count(*) FROM audit_log WHERE event IN ('item.succeeded', 'item.failed', "
     "'item.replayed')) - (SELECT count(*) FROM item_attempts))"),
    ("items with more than one successful attempt",
     "SELECT count(*) FROM (SELECT item_id FROM item_attempts WHERE outcome = 'succeeded' GROUP BY 1 "
     "HAVING count(*) > 1) AS twice"),
    ("items awaiting approval without an open approval, or open approvals of items not awaiting it",
     "SELECT count(*) FROM run_items i FULL JOIN (SELECT item_id FROM approvals WHERE decision IS NULL) a "
     "USING (item_id) WHERE (i.outcome = 'awaiting-approval') IS DISTINCT FROM (a.item_id IS NOT NULL)"),
    ("dismissed or cancelled approvals whose item is not skipped",
     "SELECT count(*) FROM approvals a JOIN run_items i USING (item_id) "
     "WHERE a.decision IN ('dismissed', 'cancelled') AND i.outcome <> 'skipped'"),
)

AT_REST: tuple[tuple[str, str], ...] = (
    ("items still pending or in flight",
     "SELECT count(*) FROM run_items WHERE outcome IN ('pending', 'in-flight')"),
    ("runs left pending or running with no work: nothing awaiting approval and no retry scheduled",
     "SELECT count(*) FROM runs r WHERE status IN ('pending', 'running') AND NOT EXISTS (SELECT 1 FROM "
     "run_items i WHERE i.run_id = r.run_id AND (i.outcome = 'awaiting-approval' "
     "OR (i.outcome = 'failed' AND i.retry_due_at IS NOT NULL)))"),
    ("records of items whose outcome is neither succeeded, idempotent-replay nor failed",
     f"SELECT count(*) FROM records r JOIN run_items i ON i.item_id = r.source_item_id "
     f"WHERE i.outcome NOT IN {_ACTED} AND i.outcome <> 'failed'"),
)


def _counted(conn: sa.Connection, checks: tuple[tuple[str, str], ...]) -> list[str]:
    out = []
    for sentence, sql in checks:
        n = conn.execute(sa.text(_RECORDS + sql)).scalar_one()
        if n:
            out.append(f"{sentence}: {n}")
    return out


def _run_violations(conn: sa.Connection) -> list[str]:
    """Each run's stored status and item counts are those its items, cancel request and failure derive
    (``RunFacts`` as ``store.runs.read_run_facts`` makes them, for every run in one read)."""
    counts: dict[str, dict[str, int]] = {}
    scheduled: dict[str, int] = {}
    for run_id, outcome, n, due in conn.execute(sa.text(
            "SELECT run_id, outcome, count(*), count(retry_due_at) FROM run_items GROUP BY 1, 2")):
        counts.setdefault(run_id, {})[outcome] = n
        if outcome == ITEM_FAILED:
            scheduled[run_id] = due
    out = []
    for run in conn.execute(sa.text("SELECT * FROM runs ORDER BY run_number")).mappings():
        facts = RunFacts(run["started_at"] is not None, run["cancel_requested_at"] is not None,
                         run["failure_cause"], counts.get(run["run_id"], {}), scheduled.get(run["run_id"], 0))
        derived = derive_run_status(facts)
        if run["status"] != derived:
            out.append(f"run {run['run_id']} is stored {run['status']} but its items derive {derived} "
                       f"({dict(facts.outcome_counts)})")
        values = item_count_values(facts.outcome_counts)
        if any(run[c] != values[c] for c in COUNT_COLUMNS):
            out.append(f"run {run['run_id']} carries counts {[run[c] for c in COUNT_COLUMNS]} but its items "
                       f"count {[values[c] for c in COUNT_COLUMNS]}")
    return out


def _rollup_violations(conn: sa.Connection) -> list[str]:
    """The analytics' rollups are the closed runs summed (store/rollups.py), whatever closed, reopened or
    crashed on the way."""
    kept, expected = read_rollup_tables(conn), recompute_rollups(conn)
    out = []
    for name, k, e in (("run_rollups", kept[0], expected[0]), ("run_duration_rollups", kept[1], expected[1])):
        for key in sorted(set(k) | set(e), key=repr):
            if k.get(key) != e.get(key):
                out.append(f"{name} {key} holds {k.get(key)} but the runs sum to {e.get(key)}")
    kept_events, events = read_event_rollups(conn), recompute_event_rollups(conn)
    if kept_events != events:
        out.append(f"event_rollups hold {kept_events} but the events count {events}")
    kept_causes, causes = read_cause_rollups(conn), recompute_cause_rollups(conn)
    if kept_causes != causes:
        out.append(f"failure_cause_rollups hold {kept_causes} but the failure summaries sum to {causes}")
    kept_accounts, recounted = read_failure_accounts(conn), recount_failure_accounts(conn)
    return out + ([f"failure accounts {kept_accounts} != recount {recounted}"] if kept_accounts != recounted else [])


def _consistent(conn: sa.Connection) -> list[str]:
    return _counted(conn, CONSISTENT) + _run_violations(conn) + _rollup_violations(conn)


def consistency_violations(conn: sa.Connection) -> list[str]:
    """What holds at every committed state, however the writer stopped; empty when all of it holds."""
    out = _consistent(conn)
    verdict = verify_audit_chain(conn)
    if not verdict.intact:
        out.append(f"the audit chain is broken: {verdict.problem}")
    return out


def rest_violations(ws: Workspace) -> list[str]:
    """Everything above, and what holds once the engine has worked all it can; empty when all holds.
    (The integrity statement verifies the audit chain: its claim says if it is broken.)"""
    with ws.read() as conn:
        out = _consistent(conn) + _counted(conn, AT_REST)
    statement = build_integrity_statement(ws, ALL_TIME)
    out += [f"integrity claim failed: {c.claim} ({c.violations})" for c in statement.failed]
    return out


def assert_consistent(engine: Any, *, at_rest: bool = False) -> None:
    """The fault tests' check on a live engine: consistent now, and at rest too if ``at_rest``."""
    if at_rest:
        problems = rest_violations(engine.ws)
    else:
        with engine.ws.read() as conn:
            problems = consistency_violations(conn)
    assert not problems, problems
