"""Legal holds: an admin keeps a run, or a subject's every run, out of retention's reach until released.

Placing and releasing a hold are audited (``hold.placed``, ``hold.released``) in the transaction that records
them; a hold is never deleted. The retention plan reads the standing holds (``store.holds.held_runs``), and
its apply reads them again inside the transaction that removes anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from core.roles import Actor
from engine.authz import check_permission, load_actor
from engine.commands.operation import Answer, Operation, optional_text_param, text_param
from engine.commands.refusals import AlreadyDone, CommandRefused, NotFound, find_run
from store import holds as hold_store
from store.registers import read_registers
from store.schema import run_items
from store.subjects import read_subject

if TYPE_CHECKING:
    from engine.runtime import Engine

PERMISSION = "manage_retention"
MAX_REASON = 2000


def _check_reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if not text:
        raise CommandRefused("A legal hold needs a reason (the matter, the request, who asked): give --reason.")
    if len(text) > MAX_REASON:
        raise CommandRefused(f"The reason is {len(text)} characters; keep it under {MAX_REASON}.")
    return text


def place_run_hold(engine: Engine, actor: Actor, run_id: str, reason: str | None) -> str:
    """Hold one run (its items, attempts, records and audit entries); returns the hold's id."""
    check_permission(engine.ws, actor, PERMISSION, "run", run_id)
    text = _check_reason(reason)
    find_run(engine, run_id)
    with engine.ws.transaction() as tx:
        hold_id = hold_store.insert_hold(tx, hold_store.RUN_SCOPE, text, actor.audit_name, run_id=run_id)
        tx.audit(actor.audit_name, "hold.placed", "legal_hold", hold_id,
                 {"scope": hold_store.RUN_SCOPE, "run_id": run_id, "reason": text})
    return hold_id


def place_subject_hold(engine: Engine, actor: Actor, kind: str, subject_id: str, reason: str | None) -> str:
    """Hold a subject: every run with an item of it stays, whatever its age; returns the hold's id."""
    check_permission(engine.ws, actor, PERMISSION, kind, subject_id)
    text = _check_reason(reason)
    with engine.ws.read() as conn:
        registers = sorted(read_registers(conn))
        if kind not in registers:
            raise CommandRefused(f"There is no register {kind!r}; the registers are: {', '.join(registers)}.")
        known = read_subject(conn, kind, subject_id) is not None or conn.execute(
            sa.select(run_items.c.item_id).where(run_items.c.subject_kind == kind,
                                                 run_items.c.subject_id == subject_id).limit(1)).first() is not None
    if not known:
        raise NotFound(f"There is no {kind} subject {subject_id!r} in the register or in any run; check the id.")
    with engine.ws.transaction() as tx:
        hold_id = hold_store.insert_hold(tx, hold_store.SUBJECT_SCOPE, text, actor.audit_name, subject_kind=kind,
                                         subject_id=subject_id)
        tx.audit(actor.audit_name, "hold.placed", "legal_hold", hold_id,
                 {"scope": hold_store.SUBJECT_SCOPE, "subject_kind": kind, "subject_id": subject_id,
                  "reason": text})
    return hold_id


def release_hold(engine: Engine, actor: Actor, hold_id: str, reason: str | None = None) -> dict[str, Any]:
    """Release a standing hold; what it held may be archived by a later apply. Returns the hold as it was."""
    check_permission(engine.ws, actor, PERMISSION, "legal_hold", hold_id)
    with engine.ws.read() as conn:
        hold = hold_store.read_hold(conn, hold_id)
    if hold is None:
        raise NotFound(f"There is no legal hold {hold_id!r}; `hold list` shows them (HOLD-000001, …).")
    if hold["released_at"] is not None:
        raise AlreadyDone(f"{hold_id} was released by {hold['released_by']} on {hold['released_at']:%Y-%m-%d}.")
    text = (reason or "").strip() or None
    with engine.ws.transaction() as tx:
        if not hold_store.release_hold(tx, hold_id, actor.audit_name, text):
            raise AlreadyDone(f"{hold_id} was released by someone else meanwhile.")
        tx.audit(actor.audit_name, "hold.released", "legal_hold", hold_id,
                 {"scope": hold["scope"], "run_id": hold["run_id"], "subject_kind": hold["subject_kind"],
                  "subject_id": hold["subject_id"], "reason": text})
    return hold


def describe_hold(hold: dict[str, Any]) -> str:
    """One line: what is held, why, by whom, and whether it still stands."""
    what = (f"run {hold['run_id']}" if hold["scope"] == hold_store.RUN_SCOPE
            else f"{hold['subject_kind']} {hold['subject_id']}")
    state = ("standing" if hold["released_at"] is None
             else f"released {hold['released_at']:%Y-%m-%d} by {hold['released_by']}")
    return (f"{hold['hold_id']}  {what}  — {hold['reason']} (placed {hold['placed_at']:%Y-%m-%d} by "
            f"{hold['placed_by']}; {state})")


def list_holds(engine: Engine) -> list[dict[str, Any]]:
    with engine.ws.read() as conn:
        return hold_store.read_holds(conn)


def _place_run(engine: Engine, p: dict[str, Any]) -> Answer:
    run_id = text_param(p, "run_id")
    hold_id = place_run_hold(engine, load_actor(engine.ws, text_param(p, "member")), run_id, text_param(p, "reason"))
    return Answer([f"{hold_id}: run {run_id} is on hold; retention keeps it until the hold is released"],
                  {"hold_id": hold_id})


def _place_subject(engine: Engine, p: dict[str, Any]) -> Answer:
    kind, subject_id = text_param(p, "kind"), text_param(p, "subject_id")
    hold_id = place_subject_hold(engine, load_actor(engine.ws, text_param(p, "member")), kind, subject_id,
                                 text_param(p, "reason"))
    return Answer([f"{hold_id}: {kind} {subject_id} is on hold; retention keeps every run with an item of it until "
                   "the hold is released"], {"hold_id": hold_id})


def _release(engine: Engine, p: dict[str, Any]) -> Answer:
    hold_id = text_param(p, "hold_id")
    hold = release_hold(engine, load_actor(engine.ws, text_param(p, "member")), hold_id,
                        optional_text_param(p, "reason"))
    held = f"run {hold['run_id']}" if hold["scope"] == hold_store.RUN_SCOPE else \
        f"{hold['subject_kind']} {hold['subject_id']}"
    return Answer([f"{hold_id} released; what it held ({held}) may be archived by the next retention apply"],
                  {"hold_id": hold_id})


# The hold commands by the names the CLI and the intake endpoint use (``engine.commands.named``): an admin
# places a hold while the app or ``serve`` holds the workspace, through the running engine.
HOLD_OPERATIONS: dict[str, Operation] = {
    "hold-place-run": Operation(_place_run, ("member", "run_id", "reason")),
    "hold-place-subject": Operation(_place_subject, ("member", "kind", "subject_id", "reason")),
    "hold-release": Operation(_release, ("member", "hold_id"), ("reason",)),
}
