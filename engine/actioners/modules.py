"""The owning modules' actioners: findings, evidence requests (sent through the messaging integration),
assessments, lifecycle instances."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from core.actions import ACTIONER_SPECS, SEVERITIES, ActionerSpec
from engine.actioners.base import (
    ActionContext,
    ActionRequest,
    CreatedRecord,
    DeterministicFailure,
    TransientFailure,
    record_id,
)
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
    """An evidence request: a record in the register, and an e-mail to the person asked, sent through the
    declared integration ``messaging`` (an SMTP one). The message is the request's delivery: if the
    system does not take it, no request is recorded and the item fails as the system answered (transient
    while it is down; a retry sends the same Message-ID, which the system recognises)."""

    spec = ACTIONER_SPECS["evidence_requests.create"]
    integration = "messaging"

    def execute(self, req: ActionRequest, ctx: ActionContext) -> CreatedRecord:
        p = dict(req.params)
        _check_params(self.spec, p)
        mail = ctx.services.get("integrations", {}).get(f"email:{self.integration}")
        if mail is None:
            raise TransientFailure(
                f"no '{self.integration}' integration is declared to deliver the request to {p['recipient']}: "
                f"add integrations/{self.integration}.yaml (an smtp integration), then retry")
        rid = record_id("EVR", req.idempotency_key)
        due = (ctx.now() + dt.timedelta(days=p["due_in_days"])).date()
        recipient = str(p["recipient"])
        address = recipient if "@" in recipient else f"{recipient}@{mail.integration.sender.rsplit('@', 1)[1]}"
        body = (f"{p['title']}\n\n{p.get('description') or ''}\n\nPlease send the evidence by {due:%Y-%m-%d}. "
                f"Request {rid}, raised by the automation {req.definition_id} (run {req.run_id}).")
        message = replace(req, params={"to": [address], "subject": p["title"], "body": body})
        try:
            sent = mail.execute(message, ctx)
        except TransientFailure as exc:
            raise TransientFailure(f"messaging system unavailable ({exc.cause}); the request to {recipient} was "
                                   "not delivered. Retry once the messaging system is back.", exc.evidence,
                                   exc.retry_after) from None
        message_id = (sent.evidence or {}).get("message_id") or sent.ref
        row = _common(req, ctx, rid, "request_id", p["title"]) | {
            "recipient": recipient, "due_date": due, "message_id": str(message_id).strip("<>"),
            "status": "requested"}
        return CreatedRecord("evidence_requests", row, f"evidence_requests:{rid}", sent.evidence)


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
