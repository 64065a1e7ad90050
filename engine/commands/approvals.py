"""Deciding an item that awaits approval: approve (the action then executes) or dismiss with a reason (the
item is skipped with it). Both are held to four eyes: no member decides an item of a version they
authored (approve), of a run they started, or that they retried; such a refusal is audited as a role
refusal is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.roles import Actor
from core.states import APPROVED, AWAITING_APPROVAL, DISMISSED, SKIPPED
from engine.authz import audit_refusal, check_permission
from engine.commands.refusals import AlreadyDone, CommandRefused, FourEyesRefused, NotEligible, find_item, find_run
from engine.status import settle_run_status
from store import items as item_store
from store.definitions import read_definition_version

if TYPE_CHECKING:
    from engine.runtime import Engine


def _check_awaiting(item: dict) -> None:
    if item["outcome"] != AWAITING_APPROVAL:
        raise NotEligible(f"Item {item['item_id']} is {item['outcome']}, not awaiting approval; "
                          "there is nothing to decide.")


def check_segregation_of_duties(engine: Engine, actor: Actor, item: dict, run: dict) -> None:
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


def four_eyes_conflict(engine: Engine, actor: Actor, item: dict, run: dict, act: str) -> FourEyesConflict | None:
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


def check_four_eyes(engine: Engine, actor: Actor, item: dict, run: dict, act: str) -> None:
    """Refuse, and audit, a decision by the member who started the run or retried the item."""
    conflict = four_eyes_conflict(engine, actor, item, run, act)
    if conflict is not None:
        _refuse_four_eyes(engine, actor, act, item, conflict.rule, conflict.message)


def _refuse_four_eyes(engine: Engine, actor: Actor, act: str, item: dict, rule: str, message: str) -> None:
    # Audited as a role refusal is (``command.refused``, the sentence as the reason), with the rule that
    # refused: the trail shows who tried to decide work they had a hand in.
    audit_refusal(engine.ws, actor, act, "run_item", item["item_id"], message, four_eyes=rule,
                  run_id=item["run_id"])
    raise FourEyesRefused(message)


def approve_item(engine: Engine, actor: Actor, item_id: str) -> str:
    item, run = find_item(engine, item_id)
    check_permission(engine.ws, actor, "approve", "run_item", item_id)
    _check_awaiting(item)
    check_segregation_of_duties(engine, actor, item, run)
    check_four_eyes(engine, actor, item, run, "approve")
    worker = engine.executor.worker()
    with engine.ws.transaction() as tx:
        if not item_store.decide_approval(tx, item_id, APPROVED, actor.audit_name, None):
            raise AlreadyDone(f"The approval of {item_id} was already decided; reload to see how.")
        taken = item_store.claim_items(tx, [item_id], (AWAITING_APPROVAL,), worker)
        tx.audit(actor.audit_name, "item.approved", "run_item", item_id, {"run_id": run["run_id"]})
        settle_run_status(tx, run["run_id"], actor.audit_name)  # its counts: the item is in flight now
    engine.executor.process_items(find_run(engine, run["run_id"]), taken, actor.audit_name)
    with engine.ws.read() as conn:
        return item_store.require_item(conn, item_id)["outcome"]


def dismiss_item(engine: Engine, actor: Actor, item_id: str, reason: str) -> str:
    item, run = find_item(engine, item_id)
    check_permission(engine.ws, actor, "dismiss", "run_item", item_id)
    if not reason or not reason.strip():
        raise CommandRefused("A dismissal needs a reason; it is recorded as the item's skip reason.")
    _check_awaiting(item)
    check_four_eyes(engine, actor, item, run, "dismiss")
    with engine.ws.transaction() as tx:
        if not item_store.decide_approval(tx, item_id, DISMISSED, actor.audit_name, reason.strip()):
            raise AlreadyDone(f"The approval of {item_id} was already decided; reload to see how.")
        skip_reason = f"dismissed by {actor.member_id}: {reason.strip()}"
        item_store.skip_item(tx, item_id, AWAITING_APPROVAL, skip_reason)
        tx.audit(actor.audit_name, "item.dismissed", "run_item", item_id,
                 {"run_id": run["run_id"], "reason": reason.strip()})
        settle_run_status(tx, run["run_id"], actor.audit_name)
    return SKIPPED
