"""Cancelling a run: request, then settle. The request (who, when, why) is recorded at once; items not yet
started are skipped with reason ``cancelled``; items in flight finish and their outcomes are recorded;
then the run is ``cancelled``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.roles import Actor
from core.states import CANCELLED_REASON, TERMINAL_RUN_STATUSES
from engine.authz import check_permission
from engine.commands.refusals import AlreadyDone, CommandRefused, NotEligible, find_run
from engine.status import settle_run_status
from store import items as item_store
from store import runs as run_store

if TYPE_CHECKING:
    from engine.runtime import Engine


def check_cancellable(run: dict) -> None:
    if run["status"] in TERMINAL_RUN_STATUSES:
        raise NotEligible(f"Run {run['run_id']} is {run['status']}; only pending or running runs can be "
                          "cancelled.")


def cancel_run(engine: Engine, actor: Actor, run_id: str, reason: str) -> str:
    """Request, then settle: not-started items skipped now; in-flight ones finish and are recorded."""
    run = find_run(engine, run_id)
    check_permission(engine.ws, actor, "cancel", "run", run_id)
    if not reason or not reason.strip():
        raise CommandRefused("A cancellation needs a reason; it goes into the audit trail.")
    check_cancellable(run)
    with engine.ws.transaction() as tx:
        # Checked again on the run's row, locked: the executor may have finished the run since the read above
        # — on PostgreSQL another process's, which this process's write lock does not hold back; its
        # settlement of the run now waits for this transaction.
        locked = run_store.lock_run(tx, run_id)
        check_cancellable(locked if locked is not None else run_store.require_run(tx.conn, run_id))
        if not run_store.request_cancel(tx, run_id, actor.audit_name, reason.strip()):
            raise AlreadyDone(f"Run {run_id} already has a cancel request.")
        tx.audit(actor.audit_name, "run.cancel_requested", "run", run_id, {"reason": reason.strip()})
        for item_id in item_store.skip_unstarted_items(tx, run_id, CANCELLED_REASON):
            tx.audit(actor.audit_name, "item.skipped", "run_item", item_id,
                     {"run_id": run_id, "reason": CANCELLED_REASON})
        return settle_run_status(tx, run_id, actor.audit_name)
