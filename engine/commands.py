"""Member commands: run now, retry, cancel, approve, dismiss, enable/disable.

Each command checks its actor's permission itself, checks eligibility with a ``check_*`` guard that
raises a named error saying why not, and records the member's act in the audit log in the same
transaction as the change it makes. Approving and dismissing are also held to four eyes: no member decides
an item of a version they authored (approve), of a run they started, or that they retried; such a refusal
is audited as a role refusal is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from engine.authz import Actor, NotAuthorized, audit_refusal, check_permission
from engine.statemachine import (AWAITING_APPROVAL, DETERMINISTIC, ITEM_FAILED, TERMINAL_RUN_STATUSES)
from engine.status import settle_run_status
from store import items as item_store
from store import runs as run_store
from store.definitions import read_definition_version, set_definition_enabled
from store.errors import StoreError
from store.matching import count_matching_subjects

if TYPE_CHECKING:
    from engine.runtime import Engine
    from store.workspace import Tx


class CommandRefused(Exception):
    """The command is not possible for this run or item now; the message says why and what to do."""


class NotFound(LookupError):
    pass


# What a member's command may answer instead of doing it, each with a sentence to show as it is: refused by
# role or by state, not found, or stopped by the store (a write conflict, a failed write; nothing was saved).
COMMAND_REFUSALS: tuple[type[Exception], ...] = (NotAuthorized, CommandRefused, NotFound, StoreError)


class NotEligible(CommandRefused):
    pass


class AlreadyDone(CommandRefused):
    pass


class FourEyesRefused(CommandRefused):
    """The member had a hand in the work they were asked to decide: they authored the definition version
    the run pinned, started the run, or retried the item. A second pair of eyes must decide it."""


def _run(engine: "Engine", run_id: str) -> dict:
    with engine.ws.read() as conn:
        run = run_store.read_run(conn, run_id)
    if run is None:
        raise NotFound(f"There is no run {run_id!r}. Check the id (runs look like RUN-000123).")
    return run


def _item(engine: "Engine", item_id: str) -> tuple[dict, dict]:
    with engine.ws.read() as conn:
        item = item_store.read_item(conn, item_id)
    if item is None:
        raise NotFound(f"There is no run item {item_id!r}. Check the id (items look like RUN-000123-000001).")
    return item, _run(engine, item["run_id"])


# --- retry ----------------------------------------------------------------------------------------
def check_retry_eligible(item: dict, run: dict) -> None:
    if item["outcome"] != ITEM_FAILED:
        raise NotEligible(f"Item {item['item_id']} is {item['outcome']}; only failed items can be retried.")
    if item["failure_class"] == DETERMINISTIC:
        raise NotEligible(f"Item {item['item_id']} failed deterministically ({item['failure_cause']}); a retry "
                          "would fail the same way. Fix the cause or the definition and let the next "
                          "trigger fire.")
    if run["cancel_requested_at"] is not None:
        raise NotEligible(f"Run {run['run_id']} was cancelled by {run['cancel_requested_by']}; its items "
                          "are no longer retried.")


_ALREADY_RETRIED = ("Item {item_id} is already being retried or was retried by someone else; reload to see "
                    "its outcome.")


def check_still_retryable(tx: Tx, seen: dict) -> tuple[dict, dict]:
    """Inside the retry's transaction: the item is still the failure the member saw (no retry claimed
    or settled since), and the retry is still eligible (the run has not been cancelled meanwhile)."""
    item = item_store.read_item(tx.conn, seen["item_id"])
    run = run_store.read_run(tx.conn, seen["run_id"])
    assert item is not None and run is not None, seen["item_id"]
    if item["outcome"] != ITEM_FAILED or item["attempts"] != seen["attempts"]:
        if item["outcome"] == ITEM_FAILED:
            raise AlreadyDone(f"Item {item['item_id']} was retried by someone else since you saw it (it has "
                              f"now failed {item['attempts']} attempts); reload to see its latest cause "
                              "before retrying again.")
        raise AlreadyDone(_ALREADY_RETRIED.format(item_id=item["item_id"]))
    check_retry_eligible(item, run)
    return item, run


@dataclass
class RetryPlan:
    run_id: str
    eligible: list[dict] = field(default_factory=list)
    not_eligible: list[tuple[dict, str]] = field(default_factory=list)


def plan_retry(engine: "Engine", run_id: str) -> RetryPlan:
    """Which failed items of a run a retry would take, and why the others would not be."""
    run = _run(engine, run_id)
    plan = RetryPlan(run_id)
    with engine.ws.read() as conn:
        failed = item_store.read_items(conn, run_id, ITEM_FAILED)
    for item in failed:
        try:
            check_retry_eligible(item, run)
            plan.eligible.append(item)
        except NotEligible as exc:
            plan.not_eligible.append((item, str(exc)))
    return plan


def retry_items(engine: "Engine", actor: Actor, item_ids: list[str],
                progress: Callable[[int, int], None] | None = None) -> dict[str, str]:
    """Retry the given items (all eligible, checked again under the claim); returns item → outcome."""
    results: dict[str, str] = {}
    for n, item_id in enumerate(item_ids, 1):
        item, run = _item(engine, item_id)
        check_permission(engine.ws, actor, "retry", "run_item", item_id)
        check_retry_eligible(item, run)
        with engine.ws.transaction() as tx:
            # Checked again under the write lock: a cancel, or another member's retry, may have committed
            # since the reads above, and the retry is of the failure the member saw, in a run not cancelled.
            item_now, run_now = check_still_retryable(tx, item)
            taken = item_store.claim_items(tx, [item_id], (ITEM_FAILED,))
            if not taken:
                raise AlreadyDone(_ALREADY_RETRIED.format(item_id=item_id))
            tx.audit(actor.audit_name, "item.retried", "run_item", item_id,
                     {"run_id": run_now["run_id"], "previous_cause": item_now["failure_cause"],
                      "attempt": item_now["attempts"] + 1})
            settle_run_status(tx, run["run_id"], actor.audit_name)
        engine.executor.process_items(_run(engine, run["run_id"]), taken, actor.audit_name)
        with engine.ws.read() as conn:
            results[item_id] = item_store.read_item(conn, item_id)["outcome"]
        if progress:
            progress(n, len(item_ids))
    return results


def retry_item(engine: "Engine", actor: Actor, item_id: str) -> str:
    return retry_items(engine, actor, [item_id])[item_id]


def retry_run(engine: "Engine", actor: Actor, run_id: str,
              progress: Callable[[int, int], None] | None = None) -> tuple[RetryPlan, dict[str, str]]:
    check_permission(engine.ws, actor, "retry", "run", run_id)
    plan = plan_retry(engine, run_id)
    return plan, retry_items(engine, actor, [i["item_id"] for i in plan.eligible], progress)


# --- cancel ---------------------------------------------------------------------------------------
def check_cancellable(run: dict) -> None:
    if run["status"] in TERMINAL_RUN_STATUSES:
        raise NotEligible(f"Run {run['run_id']} is {run['status']}; only pending or running runs can be "
                          "cancelled.")


def cancel_run(engine: "Engine", actor: Actor, run_id: str, reason: str) -> str:
    """Request, then settle: not-started items skipped now; in-flight ones finish and are recorded."""
    run = _run(engine, run_id)
    check_permission(engine.ws, actor, "cancel", "run", run_id)
    if not reason or not reason.strip():
        raise CommandRefused("A cancellation needs a reason; it goes into the audit trail.")
    check_cancellable(run)
    with engine.ws.transaction() as tx:
        # Checked again under the write lock: the executor may have finished the run since the read above.
        check_cancellable(run_store.read_run(tx.conn, run_id))
        if not run_store.request_cancel(tx, run_id, actor.audit_name, reason.strip()):
            raise AlreadyDone(f"Run {run_id} already has a cancel request.")
        tx.audit(actor.audit_name, "run.cancel_requested", "run", run_id, {"reason": reason.strip()})
        for item_id in item_store.skip_unstarted_items(tx, run_id, "cancelled"):
            tx.audit(actor.audit_name, "item.skipped", "run_item", item_id,
                     {"run_id": run_id, "reason": "cancelled"})
        return settle_run_status(tx, run_id, actor.audit_name)


# --- approvals ------------------------------------------------------------------------------------
def _check_awaiting(item: dict) -> None:
    if item["outcome"] != AWAITING_APPROVAL:
        raise NotEligible(f"Item {item['item_id']} is {item['outcome']}, not awaiting approval; "
                          "there is nothing to decide.")


def check_segregation_of_duties(engine: "Engine", actor: Actor, item: dict, run: dict) -> None:
    """The author of the definition version a run pinned may not approve its actions; refused and audited."""
    with engine.ws.read() as conn:
        version = read_definition_version(conn, run["definition_id"], run["definition_version"])
    if version is not None and version.authored_by == actor.audit_name:
        _refuse_four_eyes(engine, actor, "approve", item, "authored the definition version",
                          f"{actor.member_id} authored version {version.version} of {run['definition_id']} "
                          "and so may not approve its actions (segregation of duties); ask another approver.")


@dataclass(frozen=True)
class FourEyesConflict:
    rule: str  # which four-eyes rule refused: "started the run" or "retried the item"
    message: str  # the sentence the member is refused with


def four_eyes_conflict(engine: "Engine", actor: Actor, item: dict, run: dict, act: str) -> FourEyesConflict | None:
    """Why four eyes bar this member from deciding (``act``: approve or dismiss) this item, or None.

    A member who started the run (run now) or retried the item would otherwise be the only person between
    that work and its effect. Separate from ``check_four_eyes`` so a screen can disable its buttons with
    the sentence the command would refuse with."""
    if run["trigger_kind"] == "manual" and run["trigger_source"] == actor.audit_name:
        return FourEyesConflict("started the run", f"{actor.member_id} started run {run['run_id']} (run now) and "
                                f"so may not {act} its items (four eyes); ask another approver.")
    with engine.ws.read() as conn:
        actors = item_store.read_item_actors(conn, item["item_id"])
    if actor.audit_name in actors:
        return FourEyesConflict("retried the item", f"{actor.member_id} retried item {item['item_id']} and so "
                                f"may not {act} it (four eyes); ask another approver.")
    return None


def check_four_eyes(engine: "Engine", actor: Actor, item: dict, run: dict, act: str) -> None:
    """Refuse, and audit, a decision by the member who started the run or retried the item."""
    conflict = four_eyes_conflict(engine, actor, item, run, act)
    if conflict is not None:
        _refuse_four_eyes(engine, actor, act, item, conflict.rule, conflict.message)


def _refuse_four_eyes(engine: "Engine", actor: Actor, act: str, item: dict, rule: str, message: str) -> None:
    # Audited as a role refusal is (``command.refused``, the sentence as the reason), with the rule that
    # refused: the trail shows who tried to decide work they had a hand in.
    audit_refusal(engine.ws, actor, act, "run_item", item["item_id"], message, four_eyes=rule,
                  run_id=item["run_id"])
    raise FourEyesRefused(message)


def approve_item(engine: "Engine", actor: Actor, item_id: str) -> str:
    item, run = _item(engine, item_id)
    check_permission(engine.ws, actor, "approve", "run_item", item_id)
    _check_awaiting(item)
    check_segregation_of_duties(engine, actor, item, run)
    check_four_eyes(engine, actor, item, run, "approve")
    with engine.ws.transaction() as tx:
        if not item_store.decide_approval(tx, item_id, "approved", actor.audit_name, None):
            raise AlreadyDone(f"The approval of {item_id} was already decided; reload to see how.")
        taken = item_store.claim_items(tx, [item_id], (AWAITING_APPROVAL,))
        tx.audit(actor.audit_name, "item.approved", "run_item", item_id, {"run_id": run["run_id"]})
        settle_run_status(tx, run["run_id"], actor.audit_name)  # its counts: the item is in flight now
    engine.executor.process_items(_run(engine, run["run_id"]), taken, actor.audit_name)
    with engine.ws.read() as conn:
        return item_store.read_item(conn, item_id)["outcome"]


def dismiss_item(engine: "Engine", actor: Actor, item_id: str, reason: str) -> str:
    item, run = _item(engine, item_id)
    check_permission(engine.ws, actor, "dismiss", "run_item", item_id)
    if not reason or not reason.strip():
        raise CommandRefused("A dismissal needs a reason; it is recorded as the item's skip reason.")
    _check_awaiting(item)
    check_four_eyes(engine, actor, item, run, "dismiss")
    with engine.ws.transaction() as tx:
        if not item_store.decide_approval(tx, item_id, "dismissed", actor.audit_name, reason.strip()):
            raise AlreadyDone(f"The approval of {item_id} was already decided; reload to see how.")
        skip_reason = f"dismissed by {actor.member_id}: {reason.strip()}"
        item_store.skip_item(tx, item_id, AWAITING_APPROVAL, skip_reason)
        tx.audit(actor.audit_name, "item.dismissed", "run_item", item_id,
                 {"run_id": run["run_id"], "reason": reason.strip()})
        settle_run_status(tx, run["run_id"], actor.audit_name)
    return "skipped"


# --- automations ----------------------------------------------------------------------------------
def run_now(engine: "Engine", actor: Actor, definition_id: str, background: bool = False) -> list[str]:
    check_permission(engine.ws, actor, "run_now", "definition", definition_id)
    _, _, enabled = engine.catalog.latest(definition_id)
    if not enabled:
        raise NotEligible(f"{definition_id} is disabled; an admin must enable it before it can run.")
    return engine.fire(definition_id, kind="manual", actor_name=actor.audit_name, background=background)


@dataclass(frozen=True)
class RunNowPreview:
    """What "run now" would do at this moment: asked before it is done, so an operator confirms knowingly."""

    definition_id: str
    title: str
    subject_kind: str
    subjects: int
    actions: tuple[str, ...]


def preview_run_now(engine: "Engine", definition_id: str) -> RunNowPreview:
    """How many subjects the definition's latest version would match now (read only: no run, no audit)."""
    definition, _, _ = engine.catalog.latest(definition_id)
    with engine.ws.read() as conn:
        n = count_matching_subjects(conn, definition.condition, engine.clock.now())
    return RunNowPreview(definition_id, definition.title, definition.condition.subject, n,
                         tuple(a.actioner for a in definition.actions))


def set_enabled(engine: "Engine", actor: Actor, definition_id: str, enabled: bool) -> None:
    check_permission(engine.ws, actor, "manage_definitions", "definition", definition_id)
    engine.catalog.latest(definition_id)
    with engine.ws.transaction() as tx:
        set_definition_enabled(tx, definition_id, enabled, actor.audit_name)
    engine.reschedule()
