"""The executor: matches a run's subjects, then works its items in group-committed batches.

A batch is claimed (marked in flight) in one transaction, acted on outside any transaction, and settled
in one transaction that writes, together, every outcome, attempt, downstream record, idempotency entry,
approval and audit entry of the batch. A crash therefore loses at most in-flight work, which recovery
replays with the same idempotency keys. The batch size adapts so that a batch takes about
``batch_target_seconds``: large for fast in-process actioners, down to one item for slow integrations,
so the per-item re-check of the condition really happens just before each action.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from engine.actioners.base import ActionContext, ActionFailed, ActionRequest, CreatedRecord
from engine.catalog import DefinitionCatalog
from engine.clock import Clock
from engine.definitions import Definition
from engine.statemachine import (AWAITING_APPROVAL, DETERMINISTIC, IDEMPOTENT_REPLAY, IN_FLIGHT, ITEM_FAILED,
                                 SKIPPED, SUCCEEDED, TRANSIENT, check_item_transition)
from engine.status import settle_run_status
from engine.templates import TemplateError, render
from store import items as item_store
from store import runs as run_store
from store.matching import check_subjects, match_subjects
from store.records import insert_idempotency, insert_records, read_idempotency
from store.registers import REGISTERS, to_jsonable
from store.workspace import Tx, Workspace

ITEM_EVENTS = {SUCCEEDED: "item.succeeded", ITEM_FAILED: "item.failed", SKIPPED: "item.skipped",
               AWAITING_APPROVAL: "item.held_for_approval", IDEMPOTENT_REPLAY: "item.replayed"}


def idempotency_key(definition_id: str, version: int, event_id: str, subject_kind: str, subject_id: str,
                    action_index: int, actioner: str) -> str:
    material = "|".join([definition_id, str(version), event_id, f"{subject_kind}:{subject_id}",
                         f"{action_index}:{actioner}"])
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def params_hash(params: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class _Settlement:
    updates: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    approvals: list[dict[str, Any]] = field(default_factory=list)
    audit: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # event, item, payload
    invoked: int = 0


class Executor:
    def __init__(self, ws: Workspace, clock: Clock, catalog: DefinitionCatalog, actioners: Mapping[str, Any],
                 ctx: ActionContext, batch_max: int = 1000, batch_target_seconds: float = 0.5) -> None:
        self.ws, self.clock, self.catalog, self.actioners, self.ctx = ws, clock, catalog, actioners, ctx
        self.batch_max, self.batch_target_seconds = batch_max, batch_target_seconds

    # --- matching -----------------------------------------------------------------------------------
    def match_run(self, run_id: str, actor: str) -> None:
        """Select the subjects, create one pending item per subject and action, start the run."""
        with self.ws.read() as conn:
            run = run_store.read_run(conn, run_id)
            assert run is not None
            if run["started_at"] is not None or run["failure_cause"]:
                return
            event = run_store.read_event(conn, run["trigger_event_id"])
        definition = self.catalog.get(run["definition_id"], run["definition_version"])
        cond = definition.condition
        try:
            with self.ws.read() as conn:
                if event and event["subject_kind"]:
                    subjects = match_subjects(conn, cond, run["triggered_at"], only_ids=[event["subject_id"]]) \
                        if event["subject_kind"] == cond.subject else []
                else:
                    subjects = match_subjects(conn, cond, run["triggered_at"])
        except Exception as exc:  # noqa: BLE001 - the register was unreachable: the run as a whole failed
            with self.ws.transaction() as tx:
                run_store.write_run_fields(tx, run_id, failure_cause=f"matching failed: {exc}",
                                           started_at=self.clock.now())
                settle_run_status(tx, run_id, actor)
            return
        rows = self._item_rows(run, definition, event or {}, subjects)
        with self.ws.transaction() as tx:
            item_store.insert_items(tx, rows)
            run_store.write_run_fields(tx, run_id, subjects_matched=len(subjects), started_at=self.clock.now())
            tx.audit(actor, "run.matched", "run", run_id, {"subjects_matched": len(subjects), "items": len(rows)})
            settle_run_status(tx, run_id, actor)

    def _item_rows(self, run: dict[str, Any], d: Definition, event: dict[str, Any],
                   subjects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        reg = REGISTERS[d.condition.subject]
        trigger_ctx = {"event_id": run["trigger_event_id"], "kind": run["trigger_kind"],
                       "source": run["trigger_source"], "event_type": event.get("event_type", ""),
                       "occurred_at": run["triggered_at"]}
        def_ctx = {"id": d.id, "title": d.title, "version": run["definition_version"]}
        now, rows, pos = self.clock.now(), [], 0
        for subject in subjects:
            sid = str(subject[reg.key])
            snapshot = json.dumps(to_jsonable(subject), sort_keys=True)
            for idx, action in enumerate(d.actions):
                try:
                    params = render(action.params, {"subject": subject, "trigger": trigger_ctx,
                                                    "definition": def_ctx})
                except TemplateError as exc:
                    params = {"_template_error": str(exc)}
                pos += 1
                rows.append(dict(
                    item_id=f"{run['run_id']}-{pos:06d}", run_id=run["run_id"], position=pos,
                    subject_kind=reg.kind, subject_id=sid, subject_label=str(subject.get(reg.label) or sid),
                    subject_snapshot=snapshot, action=action.actioner,
                    parameters=json.dumps(params, sort_keys=True, default=str),
                    idempotency_key=idempotency_key(d.id, run["definition_version"], run["trigger_event_id"],
                                                    reg.kind, sid, idx, action.actioner),
                    outcome="pending", record_ref=None, skip_reason=None, failure_cause=None,
                    failure_class=None, attempts=0, retry_due_at=None, updated_at=now))
        return rows

    # --- execution ----------------------------------------------------------------------------------
    def execute_run(self, run_id: str, actor: str) -> None:
        """Work the run's pending items until none is left or a cancel request stops the claiming."""
        size = 16
        while True:
            with self.ws.read() as conn:
                run = run_store.read_run(conn, run_id)
            if run is None or run["cancel_requested_at"] is not None or run["failure_cause"]:
                break
            started = self.clock.now()
            with self.ws.transaction() as tx:
                batch = item_store.claim_pending_items(tx, run_id, size)
            if not batch:
                break
            self.process_items(run, batch, actor)
            took = (self.clock.now() - started).total_seconds()
            if took < self.batch_target_seconds / 2:
                size = min(self.batch_max, size * 2)
            elif took > self.batch_target_seconds:
                size = max(1, size // 2)
        with self.ws.transaction() as tx:
            settle_run_status(tx, run_id, actor)

    def process_items(self, run: dict[str, Any], batch: list[dict[str, Any]], actor: str) -> None:
        """Act on claimed (in-flight) items and settle them in one transaction."""
        d = self.catalog.get(run["definition_id"], run["definition_version"])
        ids = sorted({i["subject_id"] for i in batch})
        with self.ws.read() as conn:
            checks = check_subjects(conn, d.condition, run["triggered_at"], ids)
            approved = item_store.read_approved_item_ids(conn, [i["item_id"] for i in batch]) \
                if d.approval_required else set()
            ledger = read_idempotency(conn, [i["idempotency_key"] for i in batch])
            cancel_requested = run_store.read_run(conn, run["run_id"])["cancel_requested_at"] is not None
        s = _Settlement()
        for item in batch:
            reason, snapshot = checks[item["subject_id"]]
            self._settle_one(run, d, item, reason, snapshot, item["item_id"] in approved, ledger,
                             cancel_requested, actor, s)
        with self.ws.transaction() as tx:
            self._write(tx, run["run_id"], s, actor)

    def _settle_one(self, run: dict[str, Any], d: Definition, item: dict[str, Any], reason: str | None,
                    snapshot: dict[str, Any], approved: bool, ledger: Mapping[str, dict[str, Any]],
                    cancel_requested: bool, actor: str, s: _Settlement) -> None:
        now = self.clock.now()
        params = json.loads(item["parameters"])
        upd = dict(item_id=item["item_id"], outcome=None, record_ref=None, skip_reason=None,
                   failure_cause=None, failure_class=None, attempts=item["attempts"], retry_due_at=None,
                   subject_snapshot=json.dumps(to_jsonable(snapshot), sort_keys=True) if snapshot
                   else item["subject_snapshot"], updated_at=now)
        payload: dict[str, Any] = {"run_id": run["run_id"]}
        if reason is not None:
            upd.update(outcome=SKIPPED, skip_reason=reason)
            payload["reason"] = reason
        elif d.approval_required and not approved:
            upd.update(outcome=AWAITING_APPROVAL)
            s.approvals.append(dict(approval_id=f"APR-{item['item_id']}", item_id=item["item_id"],
                                    run_id=run["run_id"], definition_id=d.id,
                                    definition_version=run["definition_version"], opened_at=now,
                                    decision=None, decided_by=None, decided_at=None, reason=None))
        else:
            attempt = item["attempts"] + 1
            s.invoked += 1 if item["attempts"] == 0 else 0
            outcome, ref, cause, fclass = self._act(run, item, params, ledger, s)
            upd.update(outcome=outcome, record_ref=ref, failure_cause=cause, failure_class=fclass,
                       attempts=attempt)
            if outcome == ITEM_FAILED and fclass == TRANSIENT and attempt < d.retry.max_attempts \
                    and not cancel_requested:
                upd["retry_due_at"] = now + d.retry.delay_after(attempt)
            s.attempts.append(dict(item_id=item["item_id"], attempt=attempt, run_id=run["run_id"], actor=actor,
                                   started_at=now, finished_at=self.clock.now(), outcome=outcome,
                                   failure_cause=cause, failure_class=fclass, record_ref=ref))
            payload.update(attempt=attempt, record_ref=ref, cause=cause, failure_class=fclass,
                           retry_due_at=upd["retry_due_at"].isoformat() if upd["retry_due_at"] else None)
        check_item_transition(item["item_id"], IN_FLIGHT, upd["outcome"])
        s.updates.append(upd)
        s.audit.append((ITEM_EVENTS[upd["outcome"]], item["item_id"], payload))

    def _act(self, run: dict[str, Any], item: dict[str, Any], params: dict[str, Any],
             ledger: Mapping[str, dict[str, Any]], s: _Settlement) -> tuple[str, str | None, str | None, str | None]:
        key, ph = item["idempotency_key"], params_hash(params)
        prior = ledger.get(key)
        if prior is not None:
            if prior["params_hash"] != ph:
                return (ITEM_FAILED, None, "idempotency key conflict: this key was already used with different "
                        "parameters; the action was refused so it cannot run twice", DETERMINISTIC)
            return IDEMPOTENT_REPLAY, prior["record_ref"], None, None
        if "_template_error" in params:
            return ITEM_FAILED, None, f"parameter template failed: {params['_template_error']}", DETERMINISTIC
        actioner = self.actioners.get(item["action"])
        if actioner is None:
            return ITEM_FAILED, None, f"actioner {item['action']} is not available in this engine", TRANSIENT
        request = ActionRequest(item["item_id"], run["run_id"], run["definition_id"], key, params,
                                item["subject_kind"], item["subject_id"], json.loads(item["subject_snapshot"]))
        try:
            created: CreatedRecord = actioner.execute(request, self.ctx)
        except ActionFailed as exc:
            return ITEM_FAILED, None, exc.cause, exc.failure_class
        except Exception as exc:  # noqa: BLE001 - an actioner bug must not crash the engine
            return ITEM_FAILED, None, f"unexpected error in {item['action']}: {type(exc).__name__}: {exc}", \
                DETERMINISTIC
        s.records.setdefault(created.module, []).append(created.row)
        s.ledger.append(dict(idempotency_key=key, actioner=item["action"], params_hash=ph, outcome=SUCCEEDED,
                             record_ref=created.ref, item_id=item["item_id"], created_at=self.clock.now()))
        return SUCCEEDED, created.ref, None, None

    def _write(self, tx: Tx, run_id: str, s: _Settlement, actor: str) -> None:
        for module, rows in s.records.items():
            insert_records(tx, module, rows)
        insert_idempotency(tx, s.ledger)
        item_store.insert_attempts(tx, s.attempts)
        item_store.open_approvals(tx, s.approvals)
        item_store.apply_item_outcomes(tx, s.updates)
        run_store.add_actions_invoked(tx, run_id, s.invoked)
        for event, item_id, payload in s.audit:
            tx.audit(actor, event, "run_item", item_id, payload)
        settle_run_status(tx, run_id, actor)
