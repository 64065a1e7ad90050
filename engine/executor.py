"""The executor: matches a run's subjects, then works its items in group-committed batches.

A batch is claimed (marked in flight) in one transaction, acted on outside any transaction, and settled
in one transaction that writes, together, every outcome, attempt, downstream record, idempotency entry,
approval and audit entry of the batch — and claims the next batch, so a batch costs one commit. A crash
therefore loses at most in-flight work, which recovery replays with the same idempotency keys.
A batch is worked as columns from its claim to its write (``engine.batching``, ``store.bulk``): at
100,000 items a run's cost is per-item Python and the database's own work, so the per-item path avoids
every object, encoding and conversion it can (see bench/RESULTS.md). The batch size adapts so that a
batch takes about ``batch_target_seconds``: large for fast in-process actioners, down to one item for
slow integrations, so the per-item re-check of the condition really happens just before each action.

An actioner that reaches outside the process is waited for at most ``RUNLEDGER_ACTION_TIMEOUT_SECONDS``
(30 s): then the item fails transiently, and should the call answer later, its record and ledger entry
are written then, so the retry replays it; while it has not answered, it is not called again for that key.
An answer that is not a record of the actioner's register (garbage) is refused item by item, before it
could fail the batch's write.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from typing import Any, Callable, Mapping, NamedTuple

from engine.actioners.base import ActionContext, ActionFailed, ActionRequest, CreatedRecord, acts_in_process
from engine.batching import Batch, Reads, Settlement, gc_paused
from engine.catalog import DefinitionCatalog
from engine.clock import Clock
from engine.definitions import Definition
from engine.statemachine import (AWAITING_APPROVAL, DETERMINISTIC, IDEMPOTENT_REPLAY, IN_FLIGHT, ITEM_FAILED,
                                 SKIPPED, SUCCEEDED, TRANSIENT, check_item_transition)
from engine.status import settle_run_status
from engine.templates import TemplateError, compile_template
from store import items as item_store
from store import runs as run_store
from store.audit import json_encoder
from store.bulk import same
from store.matching import check_subjects, iter_match_subjects

MATCH_CHUNK = 10_000  # subjects matched (and their items appended) at a time
from store.records import RECORD_TABLES, insert_idempotency, insert_records, read_idempotency
from store.registers import REGISTERS
from store.workspace import Tx, Workspace

log = logging.getLogger("runledger.executor")

DEFAULT_ACTION_TIMEOUT_SECONDS = 30.0


def action_timeout_seconds() -> float:
    """How long the executor waits for an actioner's answer: ``RUNLEDGER_ACTION_TIMEOUT_SECONDS`` or 30 s.
    The same for every definition: a hung upstream is the engine's problem, not a definition's choice."""
    raw = os.environ.get("RUNLEDGER_ACTION_TIMEOUT_SECONDS")
    try:
        value = float(raw) if raw else DEFAULT_ACTION_TIMEOUT_SECONDS
    except ValueError:
        raise ValueError(f"RUNLEDGER_ACTION_TIMEOUT_SECONDS must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"RUNLEDGER_ACTION_TIMEOUT_SECONDS must be above zero, got {raw!r}")
    return value


class _Call:
    """One actioner call on its own (daemon) thread, so that the executor can stop waiting for it.

    If the executor gives up on it (``abandoned``) and it later answers, the call records its record and
    ledger entry itself (as an upstream that acted would have), so the item's retry replays it instead
    of acting again; ``settled`` is set once that is decided either way.
    """

    __slots__ = ("lock", "answered", "settled", "created", "error", "abandoned")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answered = threading.Event()
        self.settled = threading.Event()
        self.created: Any = None
        self.error: BaseException | None = None
        self.abandoned = False


class _RecordCheck(NamedTuple):
    allowed: frozenset[str]
    required: tuple[str, ...]
    key: str


def _record_checks() -> dict[str, _RecordCheck]:
    checks = {}
    for module, table in RECORD_TABLES.items():
        key = list(table.primary_key.columns)[0].name
        required = tuple(c.name for c in table.columns
                         if not c.nullable and c.default is None and c.server_default is None)
        checks[module] = _RecordCheck(frozenset(table.columns.keys()), required, key)
    return checks


_RECORD_CHECKS = _record_checks()


def check_created(action: str, created: Any, module: str | None) -> str | None:
    """Why an actioner's answer is not a record the engine can write, or None if it is.

    Garbage must be refused here, item by item: written as it is, it would fail the whole batch's
    commit, and every recovery would replay it into the same failure."""
    if not isinstance(created, CreatedRecord):
        return (f"{action} answered with {type(created).__name__} instead of the record it created; the "
                "answer was refused and nothing was recorded")
    check = _RECORD_CHECKS.get(created.module)
    if check is None or (module is not None and created.module != module):
        expected = f"not {module!r}" if module is not None else "which this engine does not know"
        return (f"{action} answered with a record for register {created.module!r}, {expected}; the "
                "answer was refused and nothing was recorded")
    row = created.row
    if not isinstance(row, dict):
        return (f"{action} answered with a {type(row).__name__} as its record's row; the answer was refused "
                "and nothing was recorded")
    if not (row.keys() <= check.allowed and None not in map(row.get, check.required)):
        unknown = ", ".join(sorted(map(str, row.keys() - check.allowed)))
        if unknown:
            return (f"{action} answered with fields the {created.module} register does not have ({unknown}); "
                    "the answer was refused and nothing was recorded")
        missing = ", ".join(c for c in check.required if row.get(c) is None)
        return (f"{action} answered with a record missing {missing}; the answer was refused and nothing was "
                "recorded")
    if not isinstance(created.ref, str) or created.ref != f"{created.module}:{row[check.key]}":
        return (f"{action} answered without a reference to the record it created (got {created.ref!r}); the "
                "answer was refused and nothing was recorded")
    return None


# == json.dumps(v, sort_keys=True[, default=str]), which builds a new encoder per call; built once.
_dumps_sorted = json_encoder(sort_keys=True)
_dumps_params = json_encoder(sort_keys=True, default=str)


def _jsonable_for(kind: str) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """``to_jsonable`` for one register's rows: only its date and timestamp fields can need converting."""
    temporal = [name for name, typ in REGISTERS[kind].fields.items() if typ in ("date", "timestamp")]

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


class _NoAnswer(Exception):
    """The actioner did not answer within the action timeout."""


class _MatchingFailed(Exception):
    """Reading the subjects failed (the register was unreachable, a clause did not compile): that is
    the run's failure, recorded as such; a failure to write the items is not, and propagates."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


class Executor:
    def __init__(self, ws: Workspace, clock: Clock, catalog: DefinitionCatalog, actioners: Mapping[str, Any],
                 ctx: ActionContext, batch_max: int = 4000, batch_target_seconds: float = 0.5) -> None:
        self.ws, self.clock, self.catalog, self.actioners, self.ctx = ws, clock, catalog, actioners, ctx
        self.batch_max, self.batch_target_seconds = batch_max, batch_target_seconds
        self.action_timeout = action_timeout_seconds()
        self._late_lock = threading.Lock()
        self._late: dict[str, _Call] = {}  # idempotency key → a call that did not answer in time
        # id(actioner) → (actioner, whether it acts in process, the register its records go to)
        self._actioners: dict[int, tuple[Any, bool, str | None]] = {}

    # --- matching -----------------------------------------------------------------------------------
    def match_run(self, run_id: str, actor: str) -> None:
        """Select the subjects, create one pending item per subject and action, start the run."""
        with self.ws.read() as conn:
            run = run_store.read_run(conn, run_id)
            assert run is not None
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
                if run_store.read_run(tx.conn, run_id)["cancel_requested_at"] is not None:
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
        reg = REGISTERS[d.condition.subject]
        trigger_ctx = {"event_id": run["trigger_event_id"], "kind": run["trigger_kind"],
                       "source": run["trigger_source"], "event_type": event.get("event_type", ""),
                       "occurred_at": run["triggered_at"]}
        def_ctx = {"id": d.id, "title": d.title, "version": run["definition_version"]}
        renderers = [compile_template(a.params) for a in d.actions]
        run_id, version, event_id = run["run_id"], run["definition_version"], run["trigger_event_id"]
        key_prefix = "|".join([d.id, str(version), event_id, ""])
        item_ids, positions, subject_ids, labels, snapshots, actions, params_json, keys = \
            [], [], [], [], [], [], [], []
        sha256, jsonable = hashlib.sha256, _jsonable_for(reg.kind)
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
                    parameters=params_json, idempotency_key=keys, outcome=same("pending"), record_ref=same(None),
                    skip_reason=same(None), failure_cause=same(None), failure_class=same(None),
                    attempts=same(0), retry_due_at=same(None), updated_at=same(self.clock.now()))

    # --- execution ----------------------------------------------------------------------------------
    def execute_run(self, run_id: str, actor: str) -> None:
        """Work the run's pending items until none is left or a cancel request stops the claiming.

        A batch's settlement and the claim of the next batch share one transaction, so a batch costs
        one commit; no batch is claimed once the run has a cancel request or a run-level failure.
        """
        size, last, started = min(16, self.batch_max), 0, self.clock.now()

        def claim(tx: Tx) -> Batch:
            nonlocal size, started
            took = (self.clock.now() - started).total_seconds()
            if last and took < self.batch_target_seconds / 2:
                size = min(self.batch_max, size * 2)
            elif took > self.batch_target_seconds:
                size = max(1, size // 2)
            run_now = run_store.read_run(tx.conn, run_id)
            if run_now is None or run_now["cancel_requested_at"] is not None or run_now["failure_cause"]:
                return {}
            started = self.clock.now()
            return item_store.claim_pending_item_columns(tx, run_id, size, after_position=last)

        with self.ws.transaction() as tx:
            batch = claim(tx)
        if batch.get("item_id"):
            with self.ws.read() as conn:
                run = run_store.read_run(conn, run_id)  # what a batch reads of it does not change
            d = self.catalog.get(run["definition_id"], run["definition_version"])
        while batch.get("item_id"):
            last = batch["position"][-1]
            batch = self._commit(run_id, self._act_on(run, d, batch, actor, fresh=True), actor, claim)
        with self.ws.transaction() as tx:
            settle_run_status(tx, run_id, actor)

    def process_items(self, run: dict[str, Any], batch: list[dict[str, Any]], actor: str) -> None:
        """Act on claimed (in-flight) items and settle them in one transaction."""
        if batch:
            d = self.catalog.get(run["definition_id"], run["definition_version"])
            s = self._act_on(run, d, item_store.as_claimed_columns(batch), actor)
            self._commit(run["run_id"], s, actor, None)

    def _act_on(self, run: dict[str, Any], d: Definition, batch: Batch, actor: str, fresh: bool = False
                ) -> Settlement:
        """Re-check and act on every item of ``batch``, in order: what its settlement will write."""
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
        lookup = [k for k, a in zip(keys, batch["attempts"]) if a] if fresh else keys
        with self.ws.read() as conn:
            checks = check_subjects(conn, d.condition, run["triggered_at"], sorted(set(batch["subject_id"])))
            approved = item_store.read_approved_item_ids(conn, item_ids) if d.approval_required else set()
            ledger = read_idempotency(conn, lookup)
            cancel_requested = run_store.read_cancel_requested(conn, run["run_id"])
        to_json = _jsonable_for(d.condition.subject)
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
        except Exception as exc:
            # The transaction was rolled back whole: the batch's items are still in flight, with nothing of
            # this attempt recorded. Say so where an operator looks; the caller gets the error itself.
            log.error("run %s: the outcomes of %d items could not be saved: %s Meanwhile they stay in flight "
                      "and recovery finishes them, replaying each with its idempotency key.",
                      run_id, len(s.update_rows), exc)
            raise

    def _settle(self, run: dict[str, Any], d: Definition, batch: Batch, reads: Reads, actor: str) -> Settlement:
        """Decide each item's outcome, acting where it is due; nothing is written yet."""
        checks, now_json, approved, ledger, cancel_requested = reads
        s = Settlement()
        run_id, clock_now = run["run_id"], self.clock.now
        updates, attempt_rows, ledger_rows, audit = s.update_rows, s.attempt_rows, s.ledger_rows, s.audit
        for item_id, kind, sid, stored, action, params, key, attempts in zip(
                batch["item_id"], batch["subject_kind"], batch["subject_id"], batch["subject_snapshot"],
                batch["action"], batch["parameters"], batch["idempotency_key"], batch["attempts"]):
            now = clock_now()
            reason = checks[sid][0]
            current = now_json.get(sid)
            snapshot_json = current[0] if current else stored
            if snapshot_json != stored:
                s.snapshot_changed = True
            if reason is not None:
                check_item_transition(item_id, IN_FLIGHT, SKIPPED)
                updates.append((item_id, SKIPPED, None, reason, None, None, attempts, None, snapshot_json))
                audit.append((ITEM_EVENTS[SKIPPED], item_id, {"run_id": run_id, "reason": reason}))
                continue
            if d.approval_required and item_id not in approved:
                check_item_transition(item_id, IN_FLIGHT, AWAITING_APPROVAL)
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
            outcome, ref, cause, fclass = self._act(run, item_id, kind, sid, action, params, key, ph, subject,
                                                    ledger, s, actor)
            finished = clock_now()
            retry_due_at = None
            if outcome == ITEM_FAILED and fclass == TRANSIENT and attempt < d.retry.max_attempts \
                    and not cancel_requested:
                retry_due_at = now + d.retry.delay_after(attempt)
            check_item_transition(item_id, IN_FLIGHT, outcome)
            updates.append((item_id, outcome, ref, None, cause, fclass, attempt, retry_due_at, snapshot_json))
            attempt_rows.append((item_id, attempt, now, finished, outcome, cause, fclass, ref))
            if outcome == SUCCEEDED:  # the actioner acted: its key enters the ledger with the record
                ledger_rows.append((key, action, ph, ref, item_id, finished))
            audit.append((ITEM_EVENTS[outcome], item_id, {
                "run_id": run_id, "attempt": attempt, "record_ref": ref, "cause": cause, "failure_class": fclass,
                "retry_due_at": retry_due_at.isoformat() if retry_due_at else None}))
        return s

    def _act(self, run: dict[str, Any], item_id: str, subject_kind: str, subject_id: str, action: str,
             params_json: str, key: str, ph: str, subject: dict[str, Any], ledger: Mapping[str, dict[str, Any]],
             s: Settlement, actor: str) -> tuple[str, str | None, str | None, str | None]:
        prior = ledger.get(key)
        if prior is None and self._late and key in self._late:
            late = self._late[key]
            if not late.settled.is_set():
                return (ITEM_FAILED, None, f"{action} has not yet answered an earlier attempt's call, which did "
                        f"not answer within {self.action_timeout:g} s; it is not called again while that call "
                        "may still act", TRANSIENT)
            with self._late_lock:
                self._late.pop(key, None)
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
            if known[1]:
                created = actioner.execute(request, self.ctx)
            else:
                created = self._call_with_timeout(actioner, request, action, ph, module, actor)
        except _NoAnswer:
            return (ITEM_FAILED, None, f"{action} did not answer within {self.action_timeout:g} s; if it acted "
                    "after all, a retry replays its record instead of acting again", TRANSIENT)
        except ActionFailed as exc:
            return ITEM_FAILED, None, exc.cause, exc.failure_class
        except Exception as exc:  # noqa: BLE001 - an actioner bug must not crash the engine
            return ITEM_FAILED, None, f"unexpected error in {action}: {type(exc).__name__}: {exc}", DETERMINISTIC
        refused = check_created(action, created, module)
        if refused is not None:
            return ITEM_FAILED, None, refused, DETERMINISTIC
        s.records.setdefault(created.module, []).append(created.row)
        return SUCCEEDED, created.ref, None, None

    def _call_with_timeout(self, actioner: Any, request: ActionRequest, action: str, ph: str, module: str | None,
                           actor: str) -> Any:
        """``actioner.execute`` on a thread of its own, waited for up to ``action_timeout`` seconds.

        An actioner that reaches outside the process (an integration) can hang; the engine must not hang
        with it. One that only builds its record in memory declares ``in_process`` and is called directly
        (a thread per item would cost a 100,000-item run seconds)."""
        call = _Call()

        def work() -> None:
            created: Any = None
            error: BaseException | None = None
            try:
                created = actioner.execute(request, self.ctx)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting executor
                error = exc
            with call.lock:
                call.created, call.error = created, error
                call.answered.set()
                abandoned = call.abandoned
            if abandoned:
                try:
                    self._record_late_answer(request, action, ph, module, created, error, actor)
                finally:
                    call.settled.set()

        threading.Thread(target=work, daemon=True, name=f"runledger-action-{request.item_id}").start()
        call.answered.wait(self.action_timeout)
        with call.lock:
            if not call.answered.is_set():
                call.abandoned = True
                with self._late_lock:
                    self._late[request.idempotency_key] = call
                raise _NoAnswer()
        if call.error is not None:
            raise call.error
        return call.created

    def _record_late_answer(self, request: ActionRequest, action: str, ph: str, module: str | None,
                            created: Any, error: BaseException | None, actor: str) -> None:
        """A call the executor stopped waiting for has answered: if it created a record, record it and its
        ledger entry now, so that the item's retry replays it rather than acting a second time."""
        item_id, key = request.item_id, request.idempotency_key
        if error is not None:
            log.warning("%s answered item %s late, with a failure (%s): nothing was recorded; a retry calls it "
                        "again", action, item_id, error)
            return
        refused = check_created(action, created, module)
        if refused is not None:
            log.warning("item %s: %s", item_id, refused)
            return
        try:
            with self.ws.transaction() as tx:
                if read_idempotency(tx.conn, [key]):
                    return
                insert_records(tx, created.module, [created.row])
                insert_idempotency(tx, [dict(idempotency_key=key, actioner=action, params_hash=ph,
                                             outcome=SUCCEEDED, record_ref=created.ref, item_id=item_id,
                                             created_at=tx.now())])
                tx.audit(actor, "item.late_answer_recorded", "run_item", item_id,
                         {"run_id": request.run_id, "record_ref": created.ref,
                          "timeout_seconds": self.action_timeout})
        except Exception:  # noqa: BLE001 - on a thread nobody waits for: say it, do not lose it silently
            log.exception("item %s: %s answered late with %s, which could not be recorded", item_id, action,
                          created.ref)

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
        item_store.apply_item_outcomes(tx, updates)
        run_store.add_actions_invoked(tx, run_id, s.invoked)
        tx.audit_many(actor, "run_item", s.audit, occurred_at=now)
        settle_run_status(tx, run_id, actor)
