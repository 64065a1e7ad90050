"""What each actioner accepts, known without importing the actioners (definitions validate against it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActionerSpec:
    name: str
    module: str  # the owning module whose register receives the record
    required: dict[str, type]
    optional: dict[str, type]


ACTIONER_SPECS: dict[str, ActionerSpec] = {s.name: s for s in (
    ActionerSpec("findings.create", "findings",
                 {"title": str, "severity": str, "owner": str}, {"description": str}),
    ActionerSpec("evidence_requests.create", "evidence_requests",
                 {"recipient": str, "title": str, "due_in_days": int}, {"description": str}),
    ActionerSpec("assessments.schedule", "assessments",
                 {"assessor": str, "title": str, "due_in_days": int}, {"description": str}),
    ActionerSpec("lifecycle.open", "lifecycle_instances",
                 {"lifecycle": str, "owner": str, "title": str}, {"description": str}),
)}

SEVERITIES = ("low", "medium", "high", "critical")
