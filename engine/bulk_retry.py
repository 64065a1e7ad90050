"""Bulk retry across runs (the Failed items page): the plan first — which items a retry would take and
why the others would not — with the very eligibility rule a single retry uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.commands import NotEligible, check_retry_eligible


@dataclass
class BulkRetryPlan:
    eligible: list[dict[str, Any]] = field(default_factory=list)
    not_eligible: list[tuple[dict[str, Any], str]] = field(default_factory=list)


def plan_bulk_retry(failed_items: list[dict[str, Any]]) -> BulkRetryPlan:
    """``failed_items`` as ``store.oversight_queries.read_failed_items`` gives them (item and run facts)."""
    plan = BulkRetryPlan()
    for row in failed_items:
        run = {"run_id": row["run_id"], "cancel_requested_at": row["cancel_requested_at"],
               "cancel_requested_by": row["cancel_requested_by"]}
        try:
            check_retry_eligible(row, run)
            plan.eligible.append(row)
        except NotEligible as exc:
            plan.not_eligible.append((row, str(exc)))
    return plan
