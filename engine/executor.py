"""The executor: matches a run's subjects, then works its items in group-committed batches.

A batch is claimed (marked in flight) in one transaction, acted on outside any transaction, and settled
in one transaction that writes, together, every outcome, attempt, downstream record, idempotency entry,
approval and audit entry of the batch — and claims the next batch, so a batch costs one commit. A crash
therefore loses at most in-flight work, which recovery replays with the same idempotency keys.
A batch is worked as columns from its claim to its write (``engine.batching``, ``store.bulk``): at
100,000 items a run's cost is per-item Python and the database's own work, so the per-item path avoids
every object, encoding and conversion it can (see bench/RESULTS.md). The batch size adapts so that a
batch costs about ``batch_target_seconds`` (``engine.batching.BatchSizer``): large for fast in-process
actioners, down to one item for slow integrations, so the per-item re-check really precedes each action.

An actioner that reaches outside the process is called under a timeout (``engine.action_calls``), and an
answer that is not a record of the actioner's register (garbage) is refused item by item, before it could
fail the batch's write.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from core.definitions import Definition
from core.states import (
    AWAITING_APPROVAL,
    DETERMINISTIC,
    IDEMPOTENT_REPLAY,
    ITEM_FAILED,
    ITEM_PENDING,
    SKIPPED,
    SUCCEEDED,
    TRANSIENT,
)
from core.templates import TemplateError, compile_template
from engine.action_calls import NoAnswer, TimedCalls, check_created
from engine.actioners.base import ActionContext, ActionFailed, ActionRequest, acts_in_process
from engine.batching import Batch, BatchSizer, Reads, Settlement, gc_paused
from engine.catalog import DefinitionCatalog
from engine.clock import Clock
from engine.lease import WorkerLease
from engine.resume import WorkRegistry
from engine.status import settle_run_status
from store import items as item_store
from store import runs as run_store
from store.audit import json_encoder
from store.bulk import same
from store.errors import StoreError, WorkTakenOver
from store.matching import check_subjects, iter_match_subjects
from store.records import insert_idempotency, insert_records, read_idempotency
from store.registers import Register, read_registers
from store.tx import Tx
from store.workspace import Workspace

log = logging.getLogger("runledger.executor")
MATCH_CHUNK = 10_000  # subjects matched (and their items appended) at a time

# == json.dumps(v, sort_keys=True[, default=str]), which builds a new encoder per call; built once.
_dumps_sorted = json_encoder(sort_keys=True)
_dumps_params = json_encoder(sort_keys=True, default=str)


def _jsonable_for(reg: Register) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """``to_jsonable`` for one register's rows: only its date and timestamp fields can need converting."""
    temporal = [name for name, typ in reg.fields.items() if typ in ("date", "timestamp")]

    def jsonable(row: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(row)
        for name in temporal:
            v = out.get(name)
            if v is not None:
                out[name] = v.isoformat()
        return out
    return jsonable


ITEM_EVENTS = {SUCCEEDED: "item.succeeded", ITEM_FAILED: "item.failed", SKIPPED: "item.skipped",
               AWAITING_APPROVAL: "item.held_for_approval", IDEMPOTENT_REPLAY: "item.replayed"}


def idempotency_key(definition_id: str, version: int, event_id: str, subject_kind: str, subject_id: str,
                    action_index: int, actioner: str) -> str:
    material = "|".join([definition_id, str(version), event_id, f"{subject_kind}:{subject_id}",
                         f"{action_index}:{actioner}"])
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def params_hash(params: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


class _MatchingFailed(Exception):
    """Reading the subjects failed (the register was unreachable, a clause did not compile): that is
    the run's failure, recorded as such; a failure to write the items is not, and propagates."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


class LeaseLapsed(StoreError):
    """This worker's lease could not be renewed in time (the database unreachable, the process paused): it acts
    on nothing more until it can. A store error, so a member's command shows its sentence, not a traceback."""


class Executor:
    def __init__(self, ws: Workspace, clock: Clock, catalog: DefinitionCatalog, actioners: Mapping[str, Any],
                 ctx: ActionContext, batch_max: int = 4000, batch_target_seconds: float = 0.5) -> None:
        self.ws, self.clock, self.catalog, self.actioners, self.ctx = ws, clock, catalog, actioners, ctx
        self.batch_max, self.batch_target_seconds = batch_max, batch_target_seconds
        self.calls = TimedCalls(ws, ctx)  # actioners that reach outside the process, under a timeout
        self.work = WorkRegistry()  # the runs threads of this process are working on (engine.resume)
        self.lease = WorkerLease(ws)  # this process's name on the work it holds (engine.lease)
        self._actioners: dict[int, tuple[Any, bool, str | None]] = {}  # id → (it, in process?, its register)

    def worker(self) -> str:
        """This process's worker id, entered in the workspace on first use: what claims stamp on items."""
        self.lease.register()
        return self.lease.worker_id

    # --- matching -----------------------------------------------------------------------------------
    def match_run(self, run_id: str, actor: str) -> None:
        """Select the subjects, create one pending item per subject and action, start the run."""
        with self.work.holding(run_id):
            self._match_run(run_id, actor)

    def _match_run(self, run_id: str, actor: str) -> None:
        with self.ws.read() as conn:
            run = run_store.require_run(conn, run_id)
            if run["started_at"] is not None or run["failure_cause"] or run["cancel_requested_at"] is not None:
                return  # already matched, failed, or cancelled while pending: nothing to match
            event = run_store.read_event(conn, run["trigger_event_id"])
        definition = self.catalog.get(run["definition_id"], run["definition_version"])
        cond = definition.condition
        only_ids = None
        if event and event["subject_kind"]:
            only_ids = [event["subject_id"]] if event["subject_kind"] == cond.subject else []
        n_subjects = n_items = 0
        try:
            with self.ws.transaction() as tx:
                if run_store.require_run(tx.conn, run_id)["cancel_requested_at"] is not None:
                    return  # cancelled since the read above: a cancelled run gets no pending items
                # Matched in chunks, each appended to the transaction as it comes: a run over 100,000
                # subjects never holds them all in memory as dicts, nor their items as rows.
                with self.ws.read() as conn:
                    chunks = iter_match_subjects(conn, cond, run["triggered_at"], only_ids, MATCH_CHUNK)
                    while True:
                        with gc_paused(MATCH_CHUNK):  # one chunk at a time, as a batch
                            try:
                                subjects = next(chunks)
                            except StopIteration:
                                break
                            except Exception as exc:  # noqa: BLE001 - see _MatchingFailed
                                raise _MatchingFailed(exc) from exc
                            columns = self._item_columns(run, definition, event or {}, subjects, n_items)
                            n_subjects, n_items = n_subjects + len(subjects), n_items + len(columns["item_id"])
                            item_store.insert_items(tx, columns)
                            del subjects, columns
                run_store.write_run_fields(tx, run_id, subjects_matched=n_subjects, started_at=self.clock.now())
                tx.audit(actor, "run.matched", "run", run_id, {"subjects_matched": n_subjects, "items": n_items})
                settle_run_status(tx, run_id, actor)
        except _MatchingFailed as failed:  # the register was unreachable: the run as a whole failed
            with self.ws.transaction() as tx:
                run_store.write_run_fields(tx, run_id, failure_cause=f"matching failed: {failed.cause}",
                                           started_at=self.clock.now())
                settle_run_status(tx, run_id, actor)

    def _item_columns(self, run: dict[str, Any], d: Definition, event: dict[str, Any],
                      subjects: list[dict[str, Any]], pos: int = 0) -> dict[str, Any]:
        """One pending item per subject and action, as columns (a run may match 100,000 subjects)."""
        with self.ws.read() as conn:
            reg = read_registers(conn)[d.condition.subject]
        trigger_ctx = {"event_id": run["trigger_event_id"], "kind": run["trigger_kind"],
                       "source": run["trigger_source"], "event_type": event.get("event_type", ""),
                       "occurred_at": run["triggered_at"]}
        def_ctx = {"id": d.id, "title": d.title, "version": run["definition_version"]}
        renderers = [compile_template(a.params) for a in d.actions]
        run_id, version, event_id = run["run_id"], run["definition_version"], run["trigger_event_id"]
        key_prefix = "|".join([d.id, str(version), event_id, ""])
        item_ids, positions, subject_ids, labels, snapshots, actions, params_json, keys = \
            [], [], [], [], [], [], [], []
        sha256, jsonable = hashlib.sha256, _jsonable_for(reg)
        for subject in subjects:
            sid = str(subject[reg.key])
            label = str(subject.get(reg.label) or sid)
            snapshot = _dumps_sorted(jsonable(subject))
            ctx = {"subject": subject, "trigger": trigger_ctx, "definition": def_ctx}
            for idx, action in enumerate(d.actions):
                try:
                    params = renderers[idx](ctx)
                except TemplateError as exc:
                    params = {"_template_error": str(exc)}
                pos += 1
                item_ids.append(f"{run_id}-{pos:06d}")
                positions.append(pos)
                subject_ids.append(sid)
                labels.append(label)
                snapshots.append(snapshot)
                actions.append(action.actioner)
                params_json.append(_dumps_params(params))
                # == idempotency_key(d.id, version, event_id, reg.kind, sid, idx, action.actioner)
                keys.append(sha256(f"{key_prefix}{reg.kind}:{sid}|{idx}:{action.actioner}".encode())
                            .hexdigest()[:32])
        # What every item of the run holds alike travels once, not as a list of 100,000 references.
        return dict(item_id=item_ids, run_id=same(run_id), position=positions, subject_kind=same(reg.kind),
                    subject_id=subject_ids, subject_label=labels, subject_snapshot=snapshots, action=actions,
                    parameters=params_json, idempotency_key=keys, outcome=same(ITEM_PENDING), record_ref=same(None),
                    skip_reason=same(None), failure_cause=same(None), failure_class=same(None),
                    attempts=same(0), retry_due_at=same(None), updated_at=same(self.clock.now()))

    # --- execution ----------------------------------------------------------------------------------
    def execute_run(self, run_id: str, actor: str, helping: bool = False) -> None:
        """Work the run's pending items until none is left or a cancel request stops the claiming.

        A batch's settlement and the claim of the next batch share one transaction, so a batch costs
        one commit; no batch is claimed once the run has a cancel request or a run-level failure.
        ``helping``: the run is another live worker's, and this one works some of its pending items beside
        it (on PostgreSQL each claim skips the rows another worker's claim holds, so no item is taken twice).
        """
        with self.work.holding(run_id):
            self._execute_run(run_id, actor, helping)

    def _execute_run(self, run_id: str, actor: str, helping: bool = False) -> None:
        sizer, last, waited = BatchSizer(self.clock, self.batch_max, self.batch_target_seconds), 0, 0.0
        worker = self.worker()

        def claim(tx: Tx) -> Batch:
            size = sizer.next_size(waited)
            run_now = run_store.read_run(tx.conn, run_id)
            if run_now is None or run_now["cancel_requested_at"] is not None or run_now["failure_cause"]:
                return {}
            if (not helping and run_now["worked_by"] not in (None, worker)) or not self.lease.holds():
                # Another worker took the run over (this one's lease lapsed), or may be about to: leave it.
                log.warning("run %s: worker %s claims no more of its items: %s", run_id, worker,
                            f"worker {run_now['worked_by']} works it now" if run_now["worked_by"] not in
                            (None, worker) else "its lease could not be renewed in time")
                return {}
            return item_store.claim_pending_item_columns(tx, run_id, size, after_position=last, worker=worker)

        with self.ws.transaction() as tx:
            batch = claim(tx)
        if batch.get("item_id"):
            with self.ws.read() as conn:
                run = run_store.require_run(conn, run_id)  # what a batch reads of it does not change
            d = self.catalog.get(run["definition_id"], run["definition_version"])
        while batch.get("item_id"):
            last = batch["position"][-1]
            settlement = self._act_on(run, d, batch, actor, fresh=True)
            waited = settlement.waited_seconds
            batch = self._commit(run_id, settlement, actor, claim)
        with self.ws.transaction() as tx:
            settle_run_status(tx, run_id, actor)

    def process_items(self, run: dict[str, Any], batch: list[dict[str, Any]], actor: str) -> None:
        """Act on claimed (in-flight) items and settle them in one transaction."""
        if batch:
            with self.work.holding(run["run_id"]):
                d = self.catalog.get(run["definition_id"], run["definition_version"])
                s = self._act_on(run, d, item_store.as_claimed_columns(batch), actor)
                self._commit(run["run_id"], s, actor, None)

    def _act_on(self, run: dict[str, Any], d: Definition, batch: Batch, actor: str, fresh: bool = False
                ) -> Settlement:
        """Re-check and act on every item of ``batch``, in order: what its settlement will write."""
        if not self.lease.holds():
            # Another worker may take these items over at any moment: acting now could act twice. They stay
            # in flight, held by this worker, for whichever worker resumes them (engine.lease).
            raise LeaseLapsed(f"run {run['run_id']}: this process (worker {self.lease.worker_id}) could not renew "
                              "its lease on the workspace in time, so it did not act on the "
                              f"{len(batch['item_id'])} items it holds; nothing was done twice. They are resumed "
                              "with their idempotency keys; once the database answers again, try again.")
        with gc_paused(len(batch["item_id"])):
            return self._settle(run, d, batch, self._read(run, d, batch, fresh), actor)

    def _read(self, run: dict[str, Any], d: Definition, batch: Batch, fresh: bool) -> Reads:
        """What acting on ``batch`` depends on: each subject re-checked (and its snapshot now), approvals,
        ledger entries, the run's cancel request.

        ``fresh``: the batch was just claimed from pending, so an item that has no attempt yet was
        never handed to an actioner, and its key cannot be in the ledger (a ledger entry is written
        only with the item's outcome, or by an actioner the item was handed to). Only the others are
        looked up — the lookup costs more than the action for a fast in-process actioner.
        """
        item_ids, keys = batch["item_id"], batch["idempotency_key"]
        lookup = [k for k, a in zip(keys, batch["attempts"], strict=True) if a] if fresh else keys
        with self.ws.read() as conn:
            checks = check_subjects(conn, d.condition, run["triggered_at"], sorted(set(batch["subject_id"])))
            approved = item_store.read_approved_item_ids(conn, item_ids) if d.approval_required else set()
            ledger = read_idempotency(conn, lookup)
            cancel_requested = run_store.read_cancel_requested(conn, run["run_id"])
            reg = read_registers(conn)[d.condition.subject]
        to_json = _jsonable_for(reg)
        now_json: dict[str, tuple[str, dict[str, Any]]] = {}
        for sid, (_, subject) in checks.items():
            if subject:
                jsonable = to_json(subject)
                now_json[sid] = (_dumps_sorted(jsonable), jsonable)
        return Reads(checks, now_json, approved, ledger, cancel_requested)

    def _commit(self, run_id: str, s: Settlement, actor: str, claim_next: Callable[[Tx], Batch] | None) -> Batch:
        """Write a batch's settlement in one transaction; in it, claim the next batch if asked."""
        try:
            with gc_paused(len(s.update_rows)), self.ws.transaction() as tx:
                self._write(tx, run_id, s, actor)
                return claim_next(tx) if claim_next is not None else {}
        except WorkTakenOver as taken:
            log.warning("run %s: %s", run_id, taken)
            raise
        except Exception as exc:
            # The transaction was rolled back whole: the batch's items are still in flight, with nothing of
            # this attempt recorded. Say so where an operator looks; the caller gets the error itself.
            log.error("run %s: the outcomes of %d items could not be saved: %s Meanwhile they stay in flight "
                      "and the engine finishes them once the workspace can be written again (a live engine "
                      "tries every RUNLEDGER_RESUME_SECONDS, a starting one at once), replaying each with its "
                      "idempotency key.", run_id, len(s.update_rows), exc)
            raise

    def _concurrent_calls(self, run: dict[str, Any], d: Definition, batch: Batch, reads: Reads, s: Settlement,
                          actor: str) -> dict[str, tuple[Any, BaseException | None]]:
        """Call, many at a time, the integrations a batch's due items go to (an integration declares how many
        requests it takes at once per run: ``concurrency``); item → (answer, error). The items are the ones
        the settling loop below would call one by one: held by no check, approval, ledger entry or late call.
        The owning modules' actioners are left to the loop, in order, as before."""
        checks, now_json, approved, ledger, _ = reads
        due: dict[int, list[tuple[Any, ActionRequest, str, str]]] = {}
        for item_id, kind, sid, stored, action, params, key in zip(
                batch["item_id"], batch["subject_kind"], batch["subject_id"], batch["subject_snapshot"],
                batch["action"], batch["parameters"], batch["idempotency_key"], strict=True):
            actioner = self.actioners.get(action)
            held = checks[sid][0] is not None or (d.approval_required and item_id not in approved)
            if held or getattr(actioner, "concurrency", 1) < 2 or key in ledger or self.calls.has_late(key) \
                    or '"_template_error"' in params:
                continue
            current = now_json.get(sid)
            subject = dict(current[1]) if current and current[0] == stored else json.loads(stored)
            request = ActionRequest(item_id, run["run_id"], run["definition_id"], key, json.loads(params), kind, sid,
                                    subject)
            ph = hashlib.sha256(params.encode()).hexdigest()
            due.setdefault(id(actioner), []).append((actioner, request, action, ph))
        if not due:
            return {}
        started = self.clock.now()
        answers = self.calls.call_concurrently(list(due.values()), actor)
        s.waited_seconds += (self.clock.now() - started).total_seconds()
        return answers

    def _settle(self, run: dict[str, Any], d: Definition, batch: Batch, reads: Reads, actor: str) -> Settlement:
        """Decide each item's outcome, acting where it is due; nothing is written yet."""
        checks, now_json, approved, ledger, cancel_requested = reads
        s = Settlement()
        answered = self._concurrent_calls(run, d, batch, reads, s, actor)
        run_id, clock_now = run["run_id"], self.clock.now
        updates, attempt_rows, ledger_rows, audit = s.update_rows, s.attempt_rows, s.ledger_rows, s.audit
        for item_id, kind, sid, stored, action, params, key, attempts in zip(
                batch["item_id"], batch["subject_kind"], batch["subject_id"], batch["subject_snapshot"],
                batch["action"], batch["parameters"], batch["idempotency_key"], batch["attempts"], strict=True):
            now = clock_now()
            reason = checks[sid][0]
            current = now_json.get(sid)
            snapshot_json = current[0] if current else stored
            if snapshot_json != stored:
                s.snapshot_changed = True
            if reason is not None:
                updates.append((item_id, SKIPPED, None, reason, None, None, attempts, None, snapshot_json))
                audit.append((ITEM_EVENTS[SKIPPED], item_id, {"run_id": run_id, "reason": reason}))
                continue
            if d.approval_required and item_id not in approved:
                updates.append((item_id, AWAITING_APPROVAL, None, None, None, None, attempts, None, snapshot_json))
                s.approvals.append(dict(approval_id=f"APR-{item_id}", item_id=item_id, run_id=run_id,
                                        definition_id=d.id, definition_version=run["definition_version"],
                                        opened_at=now, decision=None, decided_by=None, decided_at=None,
                                        reason=None))
                audit.append((ITEM_EVENTS[AWAITING_APPROVAL], item_id, {"run_id": run_id}))
                continue
            attempt = attempts + 1
            if not attempts:
                s.invoked += 1
            # The actioner is shown the subject as matched (unchanged in the common case: no re-parse).
            subject = dict(current[1]) if current and snapshot_json == stored else json.loads(stored)
            # The stored parameters are json.dumps(params, sort_keys=True, default=str), so hashing the
            # text is params_hash(json.loads(text)) without the round trip.
            ph = hashlib.sha256(params.encode()).hexdigest()
            outcome, ref, cause, fclass, *answer = self._act(run, item_id, kind, sid, action, params, key, ph,
                                                             subject, ledger, s, actor, answered.get(item_id))
            finished = clock_now()
            retry_due_at = None
            evidence = _dumps_sorted(answer[0]) if answer and answer[0] else None
            if outcome == ITEM_FAILED and fclass == TRANSIENT and attempt < d.retry.max_attempts \
                    and not cancel_requested:
                # A receiver's Retry-After is honoured: never sooner than it asked, nor than the policy says.
                asked = (answer[1] or 0.0) if answer else 0.0
                wait = max(d.retry.delay_after(attempt).total_seconds(), asked)
                retry_due_at = now + dt.timedelta(seconds=wait)
            updates.append((item_id, outcome, ref, None, cause, fclass, attempt, retry_due_at, snapshot_json))
            attempt_rows.append((item_id, attempt, now, finished, outcome, cause, fclass, ref, evidence))
            if outcome == SUCCEEDED:  # the actioner acted: its key enters the ledger with the record
                ledger_rows.append((key, action, ph, ref, item_id, finished))
            audit.append((ITEM_EVENTS[outcome], item_id, {
                "run_id": run_id, "attempt": attempt, "record_ref": ref, "cause": cause, "failure_class": fclass,
                "retry_due_at": retry_due_at.isoformat() if retry_due_at else None}))
        return s

    def _act(self, run: dict[str, Any], item_id: str, subject_kind: str, subject_id: str, action: str,
             params_json: str, key: str, ph: str, subject: dict[str, Any], ledger: Mapping[str, dict[str, Any]],
             s: Settlement, actor: str, answered: tuple[Any, BaseException | None] | None = None) -> tuple[Any, ...]:
        """(outcome, record ref, cause, failure class[, evidence, retry after]): the last two only where a
        remote system answered — what it said (kept on the attempt) and how long it asked us to wait."""
        prior = ledger.get(key)
        if prior is None and self.calls.has_late(key):
            if self.calls.still_out(key):
                return (ITEM_FAILED, None, f"{action} has not yet answered an earlier attempt's call, which did "
                        f"not answer within {self.calls.timeout:g} s; it is not called again while that call "
                        "may still act", TRANSIENT)
            with self.ws.read() as conn:  # the late answer, if any, was recorded in the ledger
                prior = read_idempotency(conn, [key]).get(key)
        if prior is not None:
            if prior["params_hash"] != ph:
                return (ITEM_FAILED, None, "idempotency key conflict: this key was already used with different "
                        "parameters; the action was refused so it cannot run twice", DETERMINISTIC)
            return IDEMPOTENT_REPLAY, prior["record_ref"], None, None
        params = json.loads(params_json)
        if "_template_error" in params:
            return ITEM_FAILED, None, f"parameter template failed: {params['_template_error']}", DETERMINISTIC
        actioner = self.actioners.get(action)
        if actioner is None:
            return ITEM_FAILED, None, f"actioner {action} is not available in this engine", TRANSIENT
        request = ActionRequest(item_id, run["run_id"], run["definition_id"], key, params, subject_kind, subject_id,
                                subject)
        known = self._actioners.get(id(actioner))
        if known is None or known[0] is not actioner:
            known = self._actioners[id(actioner)] = (actioner, acts_in_process(actioner),
                                                     getattr(getattr(actioner, "spec", None), "module", None))
        module = known[2]
        try:
            if answered is not None:  # called already, with the batch's other calls to its integration
                created, error = answered
                if error is not None:
                    raise error
            elif known[1]:
                created = actioner.execute(request, self.ctx)
            else:
                called = self.clock.now()
                try:
                    created = self.calls.call(actioner, request, action, ph, module, actor)
                finally:
                    s.waited_seconds += (self.clock.now() - called).total_seconds()
        except NoAnswer:
            return (ITEM_FAILED, None, f"{action} did not answer within {self.calls.timeout:g} s; if it acted "
                    "after all, a retry replays its record instead of acting again", TRANSIENT)
        except ActionFailed as exc:
            return ITEM_FAILED, None, exc.cause, exc.failure_class, exc.evidence, exc.retry_after
        except Exception as exc:  # noqa: BLE001 - an actioner bug must not crash the engine
            return ITEM_FAILED, None, f"unexpected error in {action}: {type(exc).__name__}: {exc}", DETERMINISTIC
        refused = check_created(action, created, module)
        if refused is not None:
            return ITEM_FAILED, None, refused, DETERMINISTIC
        if created.module is not None:
            s.records.setdefault(created.module, []).append(created.row)
        return SUCCEEDED, created.ref, None, None, created.evidence, None

    def _write(self, tx: Tx, run_id: str, s: Settlement, actor: str) -> None:
        now = tx.now()  # the instant the batch's outcomes are recorded: their update and audit time
        updates = s.updates(now)
        if any(updates.get("retry_due_at", ())) and run_store.read_cancel_requested(tx.conn, run_id):
            # The run was cancelled while this batch acted (the cancel and this write are serialised by
            # the write lock): its failures get no automatic retry, as the cancel withdrew the others'.
            updates["retry_due_at"] = [None] * len(updates["retry_due_at"])
            for _, _, payload in s.audit:
                if payload.get("retry_due_at"):
                    payload["retry_due_at"] = None
        for module, rows in s.records.items():
            insert_records(tx, module, rows)
        insert_idempotency(tx, s.ledger())
        item_store.insert_attempts(tx, s.attempts(run_id, actor))
        item_store.open_approvals(tx, s.approvals)
        item_store.settle_item_outcomes(tx, updates, self.lease.worker_id)
        run_store.add_actions_invoked(tx, run_id, s.invoked)
        tx.audit_many(actor, "run_item", s.audit, occurred_at=now)
        settle_run_status(tx, run_id, actor)
