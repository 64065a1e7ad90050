"""The demo as ``make run`` seeds it, up to the present: the worked example's quarter keeps its figures,
and the current quarter ends with something for a new user to retry.

Seeded once for the module up to 2026-12-03 12:00 UTC (a Thursday of Q4 2026): the latest KYC run, on
Monday 2026-11-30, met a second messaging outage that nobody has retried yet (transient failures, eligible
for retry, the gateway back by now) and an account without a manager (a deterministic failure, whose retry
is refused with its reason). Every figure comes from the engine running the definitions over the world.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from demo.gateway import DemoGateway, outages_path, read_outages
from demo.seed import messaging_location
from demo.world import QUARTER_END, build_world, leftover_monday
from engine import commands
from engine.authz import load_actor
from engine.clock import SimulatedClock
from engine.commands import plan_bulk_retry
from engine.runtime import Engine
from store.views.oversight import FailedFilter, read_failed_items
from store.workspace import Workspace
from tests.support import DEMO_TODAY

UTC = dt.UTC
UNTIL = dt.datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
Q3 = ("r.triggered_at >= TIMESTAMPTZ '2026-07-01 00:00:00+00' "
      "AND r.triggered_at < TIMESTAMPTZ '2026-10-01 00:00:00+00'")
Q4 = "r.triggered_at >= TIMESTAMPTZ '2026-10-01 00:00:00+00'"
KYC = "kyc-weekly-review"
DEFINITIONS = Path(__file__).resolve().parent.parent / "definitions"
NO_RECIPIENT = "evidence_requests.create needs 'recipient', but it resolved to nothing"


@pytest.fixture(scope="module")
def seeded(demo_today_path: str) -> str:
    assert UNTIL == DEMO_TODAY
    return demo_today_path


@pytest.fixture(scope="module")
def db(seeded: str) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(seeded, read_only=True)
    yield con
    con.close()


def rows(db: duckdb.DuckDBPyConnection, sql: str, *params: Any) -> list[tuple]:
    return db.execute(sql, list(params)).fetchall()


@pytest.fixture
def engine(seeded: str, tmp_path: Path) -> Iterator[Engine]:
    """An engine over a private copy of the seeded demo, its clock at the demo's present."""
    path = tmp_path / "ws.duckdb"
    shutil.copyfile(seeded, path)
    if Path(seeded + ".wal").exists():
        shutil.copyfile(seeded + ".wal", str(path) + ".wal")
    clock = SimulatedClock(UNTIL)
    eng = Engine(Workspace(str(path), now=clock.now), clock, DEFINITIONS)
    eng.load_definitions()
    # The credit union's gateway, as `make run` starts it: keeping to the outages the seed left.
    with DemoGateway(clock, *messaging_location(eng), outages=read_outages(outages_path(seeded))):
        yield eng
    eng.shutdown()
    eng.ws.close()


def _left_run(db: duckdb.DuckDBPyConnection) -> str:
    [(run_id,)] = rows(db, f"SELECT run_id FROM runs r WHERE {Q4} AND status = 'completed-with-failures'")
    return run_id


def test_the_worked_examples_quarter_keeps_its_figures(db) -> None:
    assert dict(rows(db, f"SELECT definition_id, count(*) FROM runs r WHERE {Q3} GROUP BY 1")) == {
        KYC: 13, "aml-monitor-failure": 23, "supplier-attestation-renewal": 3, "post-exception-assessment": 7,
        "post-incident-review-check": 9, "regulator-rule-change-intake": 4}
    assert {s for (s,) in rows(db, f"SELECT DISTINCT status FROM runs r WHERE {Q3}")} == {"completed"}
    assert dict(rows(db, f"SELECT i.outcome, count(*) FROM run_items i JOIN runs r USING (run_id) "
                         f"WHERE r.definition_id = ? AND {Q3} GROUP BY 1", KYC)) == {"succeeded": 608, "skipped": 12}
    recovered = rows(db, f"""SELECT list(a.actor ORDER BY a.attempt) FROM run_items i JOIN runs r USING (run_id)
                            JOIN item_attempts a ON a.item_id = i.item_id
                            WHERE r.definition_id = ? AND {Q3} GROUP BY i.item_id HAVING count(*) > 1""", KYC)
    assert recovered == [(["schedule:kyc-weekly-review", "member:sigrid"],)] * 18


def test_the_latest_kyc_run_is_left_with_failures(db, seeded: str) -> None:
    run_id = _left_run(db)
    [(definition, triggered, matched)] = rows(db, "SELECT definition_id, triggered_at, subjects_matched FROM runs "
                                                  "WHERE run_id = ?", run_id)
    assert definition == KYC and triggered == dt.datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
    assert rows(db, "SELECT max(triggered_at) FROM runs WHERE definition_id = ?", KYC) == [(triggered,)]
    # Every other KYC run of the quarter completed; this one alone needs attention for failures.
    assert dict(rows(db, f"SELECT status, count(*) FROM runs r WHERE definition_id = ? AND {Q4} GROUP BY 1",
                     KYC)) == {"completed": 8, "completed-with-failures": 1}
    failed = rows(db, "SELECT failure_class, failure_cause, attempts, retry_due_at FROM run_items "
                      "WHERE run_id = ? AND outcome = 'failed' ORDER BY position", run_id)
    transient = [f for f in failed if f[0] == "transient"]
    assert len(transient) == 12 and len(failed) == 13
    assert all(cause.startswith("messaging system unavailable (messaging: the server refused the connection: "
                                "421 4.3.2 messaging gateway down again: its TLS certificate expired); the "
                                "request to ") and attempts == 1 and due is None
               for _, cause, attempts, due in transient)  # no automatic retry: an operator's to do
    assert failed[-1][:2] == ("deterministic", NO_RECIPIENT)
    assert dict(rows(db, "SELECT outcome, count(*) FROM run_items WHERE run_id = ? GROUP BY 1", run_id)) == {
        "succeeded": matched - 13, "failed": 13}
    # The outage is over by the demo's present, so a retry now meets the gateway back.
    ends = max(o.ends_at for o in read_outages(outages_path(seeded)))
    assert ends == dt.datetime(2026, 11, 30, 6, 4, tzinfo=UTC) < UNTIL
    # Nothing else in the workspace is failed.
    assert rows(db, "SELECT DISTINCT run_id FROM run_items WHERE outcome = 'failed'") == [(run_id,)]


def test_the_account_without_a_manager_is_the_deterministic_one(db) -> None:
    [(subject, snapshot)] = rows(db, "SELECT subject_id, subject_snapshot FROM run_items WHERE run_id = ? "
                                     "AND failure_class = 'deterministic'", _left_run(db))
    # The CSV's empty field is imported as no value, and the snapshot keeps it as such.
    assert '"manager": null' in snapshot
    assert rows(db, "SELECT manager FROM accounts WHERE account_id = ?", subject) == [(None,)]


def test_a_retry_plan_takes_the_transient_failures_and_refuses_the_other(engine: Engine, db) -> None:
    run_id = _left_run(db)
    plan = commands.plan_retry(engine, run_id)
    assert len(plan.eligible) == 12 and {i["failure_class"] for i in plan.eligible} == {"transient"}
    [(item, reason)] = plan.not_eligible
    assert reason == (f"Item {item['item_id']} failed deterministically ({NO_RECIPIENT}); a retry would fail "
                      "the same way. Fix the cause or the definition and let the next trigger fire.")
    # The Failed items page's bulk retry plans the same.
    with engine.ws.read() as conn:
        listed = read_failed_items(conn, FailedFilter(start=QUARTER_END), limit=None)
    bulk = plan_bulk_retry(listed)
    assert (len(bulk.eligible), [r["item_id"] for r, _ in bulk.not_eligible]) == (12, [item["item_id"]])


def test_retrying_as_the_operator_recovers_them(engine: Engine, db) -> None:
    run_id = _left_run(db)
    sigrid = load_actor(engine.ws, "sigrid")
    plan, results = commands.retry_run(engine, sigrid, run_id)
    assert len(results) == 12 and set(results.values()) == {"succeeded"}
    [(deterministic, _)] = plan.not_eligible
    with pytest.raises(commands.NotEligible, match=r"failed deterministically \(evidence_requests.create needs"):
        commands.retry_item(engine, sigrid, deterministic["item_id"])
    with engine.ws.read() as conn:
        from store import items as item_store
        from store import runs as run_store
        assert run_store.read_run(conn, run_id)["status"] == "completed-with-failures"  # the one left
        assert [i["item_id"] for i in item_store.read_items(conn, run_id, "failed")] == [deterministic["item_id"]]
        for item_id in results:
            attempts = item_store.read_attempts(conn, item_id)
            assert [(a["outcome"], a["actor"]) for a in attempts] == [
                ("failed", "schedule:kyc-weekly-review"), ("succeeded", "member:sigrid")]
    assert engine.ws.verify_audit().intact


@pytest.mark.parametrize(("until", "left"), [
    (dt.datetime(2026, 9, 15, tzinfo=UTC), None),  # inside the worked example's quarter: nothing left
    (dt.datetime(2026, 10, 1, tzinfo=UTC), None),  # the tests' demo quarter: nothing left
    (dt.datetime(2026, 10, 5, 6, 0, tzinfo=UTC), None),  # Q4's first run fires at this instant: not yet
    (dt.datetime(2026, 10, 5, 6, 30, tzinfo=UTC), dt.datetime(2026, 10, 5, 6, 0, tzinfo=UTC)),
    (dt.datetime(2026, 11, 30, 5, 59, tzinfo=UTC), dt.datetime(2026, 11, 23, 6, 0, tzinfo=UTC)),
    (UNTIL, dt.datetime(2026, 11, 30, 6, 0, tzinfo=UTC)),
    (dt.datetime(2027, 1, 4, 6, 30, tzinfo=UTC), dt.datetime(2027, 1, 4, 6, 0, tzinfo=UTC)),  # the next quarter
])
def test_the_run_left_is_the_latest_kyc_run_after_the_worked_example(until: dt.datetime,
                                                                       left: dt.datetime | None) -> None:
    """Never a run of the worked example's quarter; always the latest run, its outage over minutes after."""
    assert leftover_monday(until) == left
    world = build_world(2026, until)
    outages = [d for _, kind, d in world.happenings if kind == "outage"]
    unassigned = [a for a in world.accounts if a["manager"] == ""]
    if left is None:
        assert len(outages) == 1 and outages[0]["ends_at"] < QUARTER_END and unassigned == []
    else:
        assert len(outages) == 2
        assert (outages[1]["starts_at"], outages[1]["ends_at"]) == (left + dt.timedelta(minutes=2),
                                                                    left + dt.timedelta(minutes=4))
        [account] = unassigned
        assert left - dt.timedelta(days=7) < dt.datetime.combine(account["kyc_review_due"], dt.time(), UTC) <= left
