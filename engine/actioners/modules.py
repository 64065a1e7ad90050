"""The owning modules' actioners: findings, evidence requests, assessments, lifecycle instances."""

from __future__ import annotations

import datetime as dt
from typing import Any

from core.actions import ACTIONER_SPECS, SEVERITIES, ActionerSpec
from engine.actioners.base import ActionContext, ActionRequest, CreatedRecord, DeterministicFailure, record_id
from engine.actioners.messaging import MessagingIntegration
from store.audit import json_encoder

_dumps_sorted = json_encoder(sort_keys=True)  # == json.dumps(v, sort_keys=True), built once


def _common(req: ActionRequest, ctx: ActionContext, rid: str, key: str, title: str) -> dict[str, Any]:
    return {key: rid, "subject_kind": req.subject_kind, "subject_id": req.subject_id, "title": title,
            "details": _dumps_sorted({"definition_id": req.definition_id, "run_id": req.run_id,
                                      "description": req.params.get("description", "")}),
            "source_item_id": req.item_id, "idempotency_key": req.idempotency_key,
            "created_at": ctx.now()}


def _check_params(spec: ActionerSpec, params: dict[str, Any]) -> None:
    for name, typ in spec.required.items():
        value = params.get(name)
        if value is None or value == "":
            raise DeterministicFailure(f"{spec.name} needs '{name}', but it resolved to nothing")
        if typ is int and (not isinstance(value, int) or isinstance(value, bool)):
            try:
                params[name] = int(value)
            except (TypeError, ValueError):
                raise DeterministicFailure(f"{spec.name}: '{name}' must be a whole number, got {value!r}") \
                    from None


class FindingsActioner:
    spec = ACTIONER_SPECS["findings.create"]

    def execute(self, req: ActionRequest, ctx: ActionContext) -> CreatedRecord:
        p = dict(req.params)
        _check_params(self.spec, p)
        if p["severity"] not in SEVERITIES:
            raise DeterministicFailure(
                f"findings register refuses severity {p['severity']!r}: use one of {', '.join(SEVERITIES)}")
        rid = record_id("FND", req.idempotency_key)
        row = _common(req, ctx, rid, "finding_id", p["title"]) | {
            "severity": p["severity"], "owner": p["owner"], "status": "open"}
        return CreatedRecord("findings", row, f"findings:{rid}")


class EvidenceRequestsActioner:
    spec = ACTIONER_SPECS["evidence_requests.create"]

    def execute(self, req: ActionRequest, ctx: ActionContext) -> CreatedRecord:
        p = dict(req.params)
        _check_params(self.spec, p)
        messaging: MessagingIntegration = ctx.services["messaging"]
        message_id = messaging.deliver(req.idempotency_key, p["recipient"], p["title"])
        rid = record_id("EVR", req.idempotency_key)
        due = (ctx.now() + dt.timedelta(days=p["due_in_days"])).date()
        row = _common(req, ctx, rid, "request_id", p["title"]) | {
            "recipient": p["recipient"], "due_date": due, "message_id": message_id, "status": "requested"}
        return CreatedRecord("evidence_requests", row, f"evidence_requests:{rid}")


class AssessmentsActioner:
    spec = ACTIONER_SPECS["assessments.schedule"]

    def execute(self, req: ActionRequest, ctx: ActionContext) -> CreatedRecord:
        p = dict(req.params)
        _check_params(self.spec, p)
        rid = record_id("ASM", req.idempotency_key)
        row = _common(req, ctx, rid, "assessment_id", p["title"]) | {
            "assessor": p["assessor"], "scheduled_for": (ctx.now() + dt.timedelta(days=p["due_in_days"])).date(),
            "status": "scheduled"}
        return CreatedRecord("assessments", row, f"assessments:{rid}")


class LifecycleActioner:
    spec = ACTIONER_SPECS["lifecycle.open"]

    def execute(self, req: ActionRequest, ctx: ActionContext) -> CreatedRecord:
        p = dict(req.params)
        _check_params(self.spec, p)
        rid = record_id("LCI", req.idempotency_key)
        row = _common(req, ctx, rid, "instance_id", p["title"]) | {
            "lifecycle": p["lifecycle"], "state": "open", "owner": p["owner"]}
        return CreatedRecord("lifecycle_instances", row, f"lifecycle_instances:{rid}")


def default_actioners() -> dict[str, Any]:
    return {a.spec.name: a for a in (FindingsActioner(), EvidenceRequestsActioner(), AssessmentsActioner(),
                                     LifecycleActioner())}
