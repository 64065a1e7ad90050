"""Retrying failed items: of one run (the Run page), of one item, or in bulk across runs (the Failed items
page). The plan comes first — which items a retry would take and why the others would not — from one
eligibility rule; then each item is claimed under the write lock, audited (``item.retried``) and re-run
with its own idempotency key, so an action that already happened is replayed, never repeated."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.roles import Actor
from core.states import DETERMINISTIC, ITEM_FAILED
from engine.authz import check_permission
from engine.commands.refusals import AlreadyDone, NotEligible, find_item, find_run
from engine.status import settle_run_status
from store import dispositions as disposition_store
from store import items as item_store
from store import runs as run_store

if TYPE_CHECKING:
    from engine.runtime import Engine
    from store.tx import Tx


def check_retry_eligible(item: dict, run: dict, disposition: str | None = None) -> None:
    """``disposition``: the item's disposition kind, if it has one (a dispositioned failure stays as it is)."""
    if item["outcome"] != ITEM_FAILED:
        raise NotEligible(f"Item {item['item_id']} is {item['outcome']}; only failed items can be retried.")
    if disposition:
        raise NotEligible(f"Item {item['item_id']} was dispositioned ({disposition}): someone decided it stays "
                          "failed. It is not retried.")
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
    item = item_store.require_item(tx.conn, seen["item_id"])
    run = run_store.require_run(tx.conn, seen["run_id"])
    if item["outcome"] != ITEM_FAILED or item["attempts"] != seen["attempts"]:
        if item["outcome"] == ITEM_FAILED:
            raise AlreadyDone(f"Item {item['item_id']} was retried by someone else since you saw it (it has "
                              f"now failed {item['attempts']} attempts); reload to see its latest cause "
                              "before retrying again.")
        raise AlreadyDone(_ALREADY_RETRIED.format(item_id=item["item_id"]))
    disposition = disposition_store.read_disposition(tx.conn, item["item_id"])
    check_retry_eligible(item, run, disposition["kind"] if disposition else None)
    return item, run


@dataclass
class RetryPlan:
    """Which failed items a retry would take, and why each other one would not be."""

    eligible: list[dict[str, Any]] = field(default_factory=list)
    not_eligible: list[tuple[dict[str, Any], str]] = field(default_factory=list)


def plan_retries(failed: Iterable[tuple[dict[str, Any], dict[str, Any]]]) -> RetryPlan:
    """The plan for (item, its run) pairs, by ``check_retry_eligible`` alone: a single retry and a bulk one
    can never disagree about an item. An item's ``disposition`` key holds its disposition kind, if any."""
    plan = RetryPlan()
    for item, run in failed:
        try:
            check_retry_eligible(item, run, item.get("disposition"))
            plan.eligible.append(item)
        except NotEligible as exc:
            plan.not_eligible.append((item, str(exc)))
    return plan


def plan_retry(engine: Engine, run_id: str) -> RetryPlan:
    """Which failed items of a run a retry would take, and why the others would not be."""
    run = find_run(engine, run_id)
    with engine.ws.read() as conn:
        failed = item_store.read_items(conn, run_id, ITEM_FAILED)
        kinds = {i: d["kind"] for i, d in disposition_store.read_run_dispositions(conn, run_id).items()}
    return plan_retries(({**item, "disposition": kinds.get(item["item_id"])}, run) for item in failed)


def plan_bulk_retry(failed_items: list[dict[str, Any]]) -> RetryPlan:
    """Bulk retry across runs (the Failed items page): ``failed_items`` as
    ``store.views.oversight.read_failed_items`` gives them, each with its run's cancel facts."""
    return plan_retries((row, {"run_id": row["run_id"], "cancel_requested_at": row["cancel_requested_at"],
                               "cancel_requested_by": row["cancel_requested_by"]}) for row in failed_items)


def retry_items(engine: Engine, actor: Actor, item_ids: list[str],
                progress: Callable[[int, int], object] | None = None) -> dict[str, str]:
    """Retry the given items (all eligible, checked again under the claim); returns item → outcome."""
    results: dict[str, str] = {}
    for n, item_id in enumerate(item_ids, 1):
        item, run = find_item(engine, item_id)
        check_permission(engine.ws, actor, "retry", "run_item", item_id)
        with engine.ws.read() as conn:
            disposition = disposition_store.read_disposition(conn, item_id)
        check_retry_eligible(item, run, disposition["kind"] if disposition else None)
        worker = engine.executor.worker()
        with engine.ws.transaction() as tx:
            # Checked again under the write lock: a cancel, or another member's retry, may have committed
            # since the reads above, and the retry is of the failure the member saw, in a run not cancelled.
            item_now, run_now = check_still_retryable(tx, item)
            taken = item_store.claim_items(tx, [item_id], (ITEM_FAILED,), worker)
            if not taken:
                raise AlreadyDone(_ALREADY_RETRIED.format(item_id=item_id))
            # Read again once the claim holds the item's row: on PostgreSQL a disposition that committed while
            # the claim waited for that row is seen only now, and the claim is rolled back with this refusal.
            if disposition_store.read_disposition(tx.conn, item_id) is not None:
                raise AlreadyDone(f"Item {item_id} was dispositioned by someone else since you saw it; it is "
                                  "not retried.")
            tx.audit(actor.audit_name, "item.retried", "run_item", item_id,
                     {"run_id": run_now["run_id"], "previous_cause": item_now["failure_cause"],
                      "attempt": item_now["attempts"] + 1})
            settle_run_status(tx, run["run_id"], actor.audit_name)
        engine.executor.process_items(find_run(engine, run["run_id"]), taken, actor.audit_name)
        with engine.ws.read() as conn:
            results[item_id] = item_store.require_item(conn, item_id)["outcome"]
        if progress:
            progress(n, len(item_ids))
    return results


def retry_item(engine: Engine, actor: Actor, item_id: str) -> str:
    return retry_items(engine, actor, [item_id])[item_id]


def retry_run(engine: Engine, actor: Actor, run_id: str,
              progress: Callable[[int, int], object] | None = None) -> tuple[RetryPlan, dict[str, str]]:
    check_permission(engine.ws, actor, "retry", "run", run_id)
    plan = plan_retry(engine, run_id)
    return plan, retry_items(engine, actor, [i["item_id"] for i in plan.eligible], progress)
