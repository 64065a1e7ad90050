"""What each actioner accepts, known without importing the actioners (definitions validate against it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActionerSpec:
    name: str
    # The owning module whose register receives the record; None for an integration (webhook, e-mail),
    # whose record lives in the remote system and is named by the item's reference.
    module: str | None
    required: dict[str, type]
    optional: dict[str, type]
    open_params: bool = False  # any params (a webhook's JSON body): only their placeholders are checked


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
