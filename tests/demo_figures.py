"""The worked example's headline figures for the demo quarter (2026-07-01 … 2026-09-30), read with plain SQL
that DuckDB and PostgreSQL both speak, so that one helper checks the demo seeded on either backend:
``tests/test_demo_quarter.py`` (DuckDB, with the finer checks) and ``tests/test_demo_postgres.py``.

``headline_figures`` takes a function that runs a query and returns its rows (a native DuckDB connection's,
or a SQLAlchemy connection's), and returns the figures as ``HEADLINE`` states them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Rows = Callable[[str], list[tuple[Any, ...]]]

IN_QUARTER = ("r.triggered_at >= TIMESTAMPTZ '2026-07-01 00:00:00+00' "
              "AND r.triggered_at < TIMESTAMPTZ '2026-10-01 00:00:00+00'")
KYC, AML, SUPPLIER = "kyc-weekly-review", "aml-monitor-failure", "supplier-attestation-renewal"
EXCEPTION, INCIDENT = "post-exception-assessment", "post-incident-review-check"
REGULATOR = "regulator-rule-change-intake"
RECORDS = """
    SELECT 'findings' AS module, finding_id AS record_id, source_item_id, idempotency_key FROM findings
    UNION ALL SELECT 'evidence_requests', request_id, source_item_id, idempotency_key FROM evidence_requests
    UNION ALL SELECT 'assessments', assessment_id, source_item_id, idempotency_key FROM assessments
    UNION ALL SELECT 'lifecycle_instances', instance_id, source_item_id, idempotency_key FROM lifecycle_instances
"""

HEADLINE: dict[str, Any] = {
    "runs": {KYC: 13, AML: 23, SUPPLIER: 3, EXCEPTION: 7, INCIDENT: 9, REGULATOR: 4},
    "run statuses": {"completed": 59},  # all closed: nothing left running, failed or awaiting
    "outcomes": {KYC: {"succeeded": 608, "skipped": 12}, AML: {"succeeded": 23}, SUPPLIER: {"succeeded": 28},
                 EXCEPTION: {"succeeded": 7}, INCIDENT: {"skipped": 7, "succeeded": 2},
                 REGULATOR: {"succeeded": 3, "skipped": 1}},
    "KYC recovered on a retry after a transient failure": 18,
    "KYC succeeded at the first attempt": 590,
    "records, each traced to the item that made it": 608 + 23 + 28 + 7 + 2 + 3,
    "approval decisions": {"approved": 5, "dismissed": 1},
    "Sigrid's acts": {"item.retried": 18, "item.approved": 5, "item.dismissed": 1},
    "idempotency keys acted on twice": 0,
}


def headline_figures(rows: Rows) -> dict[str, Any]:
    """The figures of ``HEADLINE``, as the workspace holds them."""
    def by(sql: str) -> dict[Any, Any]:
        return {k: int(v) for k, v in rows(sql)}

    outcomes: dict[str, dict[str, int]] = {}
    for definition, outcome, n in rows(f"SELECT r.definition_id, i.outcome, count(*) FROM run_items i JOIN runs r "
                                       f"ON r.run_id = i.run_id WHERE {IN_QUARTER} GROUP BY 1, 2"):
        outcomes.setdefault(definition, {})[outcome] = int(n)
    kyc_succeeded = (f"FROM run_items i JOIN runs r ON r.run_id = i.run_id WHERE r.definition_id = '{KYC}' "
                     f"AND {IN_QUARTER} AND i.outcome = 'succeeded'")
    failed_first = "(SELECT count(*) FROM item_attempts a WHERE a.item_id = i.item_id AND a.outcome = 'failed')"
    [(recovered,)] = rows(f"SELECT count(*) {kyc_succeeded} AND {failed_first} = 1 AND i.attempts = 2")
    [(first_time,)] = rows(f"SELECT count(*) {kyc_succeeded} AND {failed_first} = 0 AND i.attempts = 1")
    [(traced,)] = rows(f"SELECT count(*) FROM ({RECORDS}) rec JOIN run_items i ON i.item_id = rec.source_item_id "
                       "AND i.record_ref = rec.module || ':' || rec.record_id AND i.outcome = 'succeeded'")
    [(twice,)] = rows("SELECT count(*) - count(DISTINCT idempotency_key) FROM idempotency_records")
    return {
        "runs": by(f"SELECT definition_id, count(*) FROM runs r WHERE {IN_QUARTER} GROUP BY 1"),
        "run statuses": by(f"SELECT status, count(*) FROM runs r WHERE {IN_QUARTER} GROUP BY 1"),
        "outcomes": outcomes,
        "KYC recovered on a retry after a transient failure": int(recovered),
        "KYC succeeded at the first attempt": int(first_time),
        "records, each traced to the item that made it": int(traced),
        "approval decisions": by(f"SELECT a.decision, count(*) FROM approvals a JOIN run_items i "
                                 f"ON i.item_id = a.item_id JOIN runs r ON r.run_id = i.run_id WHERE {IN_QUARTER} "
                                 "GROUP BY 1"),
        "Sigrid's acts": by("SELECT event, count(*) FROM audit_log WHERE actor = 'member:sigrid' "
                            "AND event IN ('item.retried', 'item.approved', 'item.dismissed') GROUP BY 1"),
        "idempotency keys acted on twice": int(twice),
    }
