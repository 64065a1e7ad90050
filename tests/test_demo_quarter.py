"""The demo quarter (2026-07-01 … 2026-09-30) comes out as the product page's worked example tells it.

The demo is seeded once per session by the real engine on a simulated clock; every figure here is read
with plain SQL over the tables (runs, run_items, item_attempts, approvals, the owning modules' records and
the audit log), never through the engine's own summary. The headline figures are ``tests/demo_figures.py``'s,
which the demo seeded on PostgreSQL must also show (``tests/test_demo_postgres.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import duckdb
import pytest

from store.audit import GENESIS_HASH, entry_hash
from tests.demo_figures import (
    AML,
    EXCEPTION,
    HEADLINE,
    IN_QUARTER,
    INCIDENT,
    KYC,
    RECORDS,
    REGULATOR,
    SUPPLIER,
    headline_figures,
)


@pytest.fixture(scope="module")
def db(demo_quarter_path: str) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(demo_quarter_path, read_only=True)
    yield con
    con.close()


def rows(db: duckdb.DuckDBPyConnection, sql: str, *params: Any) -> list[tuple]:
    return db.execute(sql, list(params)).fetchall()


def one(db: duckdb.DuckDBPyConnection, sql: str, *params: Any) -> Any:
    [(value,)] = rows(db, sql, *params)
    return value


def runs_of(db, definition_id: str) -> list[tuple[str, int, str]]:
    return rows(db, f"SELECT run_id, subjects_matched, status FROM runs r WHERE definition_id = ? AND {IN_QUARTER} "
                    "ORDER BY triggered_at", definition_id)


def outcomes(db, definition_id: str) -> dict[str, int]:
    return dict(rows(db, f"SELECT i.outcome, count(*) FROM run_items i JOIN runs r USING (run_id) "
                         f"WHERE r.definition_id = ? AND {IN_QUARTER} GROUP BY 1", definition_id))


def item_records(db, definition_id: str, table: str, key: str) -> int:
    """Records in ``table`` made by succeeded items of the definition's quarter runs."""
    return one(db, f"""SELECT count(*) FROM {table} rec JOIN run_items i ON i.item_id = rec.source_item_id
                       JOIN runs r USING (run_id)
                       WHERE r.definition_id = ? AND {IN_QUARTER} AND i.outcome = 'succeeded'
                         AND i.record_ref = '{table}:' || rec.{key}""", definition_id)


def test_the_headline_figures(db) -> None:
    assert headline_figures(lambda sql: rows(db, sql)) == HEADLINE


def test_fifty_nine_runs_in_the_quarter(db) -> None:
    assert one(db, f"SELECT count(*) FROM runs r WHERE {IN_QUARTER}") == 59 == sum(HEADLINE["runs"].values())
    assert dict(rows(db, f"SELECT definition_id, count(*) FROM runs r WHERE {IN_QUARTER} GROUP BY 1")) == \
        HEADLINE["runs"]
    # All closed: nothing left running, failed or awaiting at the quarter's end.
    assert {s for (s,) in rows(db, f"SELECT DISTINCT status FROM runs r WHERE {IN_QUARTER}")} == {"completed"}


def test_kyc_weekly_review(db) -> None:
    kyc = runs_of(db, KYC)
    assert len(kyc) == 13
    assert all(30 <= matched <= 80 for _, matched, _ in kyc), [m for _, m, _ in kyc]
    assert one(db, f"SELECT count(*) FROM run_items i JOIN runs r USING (run_id) WHERE r.definition_id = ? "
                   f"AND {IN_QUARTER}", KYC) == 620
    assert outcomes(db, KYC) == {"succeeded": 608, "skipped": 12}
    assert rows(db, f"""SELECT DISTINCT i.skip_reason FROM run_items i JOIN runs r USING (run_id)
                       WHERE r.definition_id = ? AND {IN_QUARTER} AND i.outcome = 'skipped'""", KYC) == [
        ("the account is no longer active",)]
    # Skipped items were never attempted: the subject had gone inactive between trigger and execution.
    assert one(db, f"""SELECT count(*) FROM item_attempts a JOIN run_items i USING (item_id) JOIN runs r
                       ON r.run_id = i.run_id WHERE r.definition_id = ? AND {IN_QUARTER}
                       AND i.outcome = 'skipped'""", KYC) == 0

    # 18 failed on the messaging outage (transient) and recovered on Sigrid's retry.
    recovered = rows(db, f"""
        SELECT i.item_id, list(a.outcome ORDER BY a.attempt), list(a.actor ORDER BY a.attempt),
               list(a.failure_class ORDER BY a.attempt)
        FROM run_items i JOIN runs r USING (run_id) JOIN item_attempts a ON a.item_id = i.item_id
        WHERE r.definition_id = ? AND {IN_QUARTER} AND i.outcome = 'succeeded'
        GROUP BY i.item_id HAVING bool_or(a.outcome = 'failed')""", KYC)
    assert len(recovered) == 18
    for _, outs, actors, classes in recovered:
        assert outs == ["failed", "succeeded"]
        assert actors == ["schedule:kyc-weekly-review", "member:sigrid"]
        assert classes == ["transient", None]

    first_time = one(db, f"""
        SELECT count(*) FROM run_items i JOIN runs r USING (run_id)
        WHERE r.definition_id = ? AND {IN_QUARTER} AND i.outcome = 'succeeded' AND i.attempts = 1
          AND (SELECT list(a.outcome) FROM item_attempts a WHERE a.item_id = i.item_id) = ['succeeded']""", KYC)
    assert first_time == 590
    assert item_records(db, KYC, "evidence_requests", "request_id") == 608


def test_aml_monitor_failure(db) -> None:
    aml = runs_of(db, AML)
    assert len(aml) == 23 and all(matched == 1 for _, matched, _ in aml)
    assert outcomes(db, AML) == {"succeeded": 23}
    assert item_records(db, AML, "findings", "finding_id") == 23


def test_supplier_attestation_renewal(db) -> None:
    supplier = runs_of(db, SUPPLIER)
    assert len(supplier) == 3
    per_run = dict(rows(db, f"SELECT r.run_id, count(*) FROM run_items i JOIN runs r USING (run_id) "
                            f"WHERE r.definition_id = ? AND {IN_QUARTER} GROUP BY 1", SUPPLIER))
    assert len(per_run) == 3 and all(5 <= n <= 15 for n in per_run.values()), per_run
    assert outcomes(db, SUPPLIER) == {"succeeded": 28}
    assert item_records(db, SUPPLIER, "lifecycle_instances", "instance_id") == 28


def test_post_exception_assessment(db) -> None:
    assert len(runs_of(db, EXCEPTION)) == 7
    assert outcomes(db, EXCEPTION) == {"succeeded": 7}
    assert item_records(db, EXCEPTION, "assessments", "assessment_id") == 7


def test_post_incident_review_check(db) -> None:
    assert len(runs_of(db, INCIDENT)) == 9
    assert outcomes(db, INCIDENT) == {"skipped": 7, "succeeded": 2}
    assert rows(db, f"""SELECT i.skip_reason, count(*) FROM run_items i JOIN runs r USING (run_id)
                       WHERE r.definition_id = ? AND {IN_QUARTER} AND i.outcome = 'skipped' GROUP BY 1""",
                INCIDENT) == [("a post-incident review record already exists", 7)]
    # The 2 others asked for approval, were approved, and created a finding.
    approved = rows(db, f"""SELECT a.decision, a.decided_by, i.outcome, i.record_ref FROM approvals a
                           JOIN run_items i USING (item_id) JOIN runs r ON r.run_id = i.run_id
                           WHERE r.definition_id = ? AND {IN_QUARTER}""", INCIDENT)
    assert len(approved) == 2
    assert all(d == "approved" and by == "member:sigrid" and out == "succeeded" and ref.startswith("findings:")
               for d, by, out, ref in approved)
    assert item_records(db, INCIDENT, "findings", "finding_id") == 2


def test_regulator_rule_change_intake(db) -> None:
    regulator = runs_of(db, REGULATOR)
    assert len(regulator) == 4
    assert one(db, f"SELECT list(DISTINCT trigger_kind) FROM runs r WHERE definition_id = ? AND {IN_QUARTER}",
               REGULATOR) == ["signal"]
    assert outcomes(db, REGULATOR) == {"succeeded": 3, "skipped": 1}
    decisions = rows(db, f"""SELECT a.decision, a.decided_by, a.reason, i.outcome, i.skip_reason, i.record_ref
                            FROM approvals a JOIN run_items i USING (item_id) JOIN runs r ON r.run_id = i.run_id
                            WHERE r.definition_id = ? AND {IN_QUARTER} ORDER BY a.decision""", REGULATOR)
    assert [d[0] for d in decisions] == ["approved"] * 3 + ["dismissed"]
    for _decision, by, _, outcome, _, ref in decisions[:3]:
        assert (by, outcome) == ("member:sigrid", "succeeded") and ref.startswith("findings:")
    _, by, reason, outcome, skip_reason, ref = decisions[3]
    assert (by, outcome, ref) == ("member:sigrid", "skipped", None)
    assert reason.startswith("not applicable")
    assert skip_reason == f"dismissed by sigrid: {reason}"
    assert item_records(db, REGULATOR, "findings", "finding_id") == 3


def test_every_record_traces_to_exactly_one_item_and_every_success_to_one_record(db) -> None:
    traced = rows(db, f"""SELECT rec.module, rec.record_id, count(i.item_id) FROM ({RECORDS}) rec
                         LEFT JOIN run_items i ON i.item_id = rec.source_item_id
                                              AND i.record_ref = rec.module || ':' || rec.record_id
                         GROUP BY 1, 2 HAVING count(i.item_id) <> 1""")
    assert traced == []  # no orphan record, none claimed by two items
    records = rows(db, f"SELECT source_item_id, module || ':' || record_id, idempotency_key FROM ({RECORDS})")
    succeeded = rows(db, "SELECT item_id, record_ref, idempotency_key FROM run_items WHERE outcome = 'succeeded'")
    assert sorted(records) == sorted(succeeded)
    assert len(records) == 608 + 23 + 28 + 7 + 2 + 3
    assert one(db, "SELECT count(*) FROM run_items WHERE outcome IN ('failed', 'in-flight', 'pending', "
                   "'awaiting-approval')") == 0


def test_no_idempotency_key_was_executed_twice(db) -> None:
    assert one(db, "SELECT count(*) - count(DISTINCT idempotency_key) FROM idempotency_records") == 0
    assert one(db, f"SELECT count(*) - count(DISTINCT idempotency_key) FROM ({RECORDS})") == 0
    assert one(db, "SELECT count(*) - count(DISTINCT idempotency_key) FROM run_items") == 0
    assert one(db, "SELECT count(*) - count(DISTINCT message_id) FROM evidence_requests") == 0
    # Every attempt that acted succeeded at most once per key, and the ledger matches the records.
    assert rows(db, """SELECT i.idempotency_key FROM item_attempts a JOIN run_items i USING (item_id)
                      WHERE a.outcome = 'succeeded' GROUP BY 1 HAVING count(*) > 1""") == []
    assert sorted(rows(db, "SELECT idempotency_key, record_ref FROM idempotency_records")) == sorted(
        rows(db, f"SELECT idempotency_key, module || ':' || record_id FROM ({RECORDS})"))
    # Each evidence request went out as one message through the messaging gateway (a real SMTP server): its
    # Message-ID derived from the item's key, and the gateway's acceptance of it kept on the attempt.
    assert one(db, "SELECT count(*) FROM evidence_requests WHERE message_id <> idempotency_key || '@runledger'") == 0
    assert one(db, """SELECT count(*) FROM item_attempts WHERE record_ref LIKE 'evidence_requests:%'
                      AND (json_extract_string(evidence, '$.kind') <> 'smtp'
                           OR json_array_length(json_extract(evidence, '$.accepted')) <> 1)""") == 0
    assert one(db, "SELECT count(*) FROM item_attempts WHERE record_ref LIKE 'evidence_requests:%'") == one(
        db, "SELECT count(*) FROM evidence_requests")


def test_the_audit_chain_verifies(db) -> None:
    prev, expected = GENESIS_HASH, 1
    for seq, at, actor, event, kind, eid, payload, prev_hash, h in rows(
            db, "SELECT seq, occurred_at, actor, event, entity_kind, entity_id, payload, prev_hash, hash "
                "FROM audit_log ORDER BY seq"):
        assert seq == expected and prev_hash == prev, seq
        assert entry_hash(seq, at, actor, event, kind, eid, payload, prev_hash) == h, seq
        prev, expected = h, expected + 1
    assert expected > 1000
    # Sigrid's acts are all there, as hers.
    assert dict(rows(db, "SELECT event, count(*) FROM audit_log WHERE actor = 'member:sigrid' "
                         "AND event IN ('item.retried', 'item.approved', 'item.dismissed') GROUP BY 1")) == {
        "item.retried": 18, "item.approved": 5, "item.dismissed": 1}
