"""Dispositioning a failed item that will not be retried: waived, resolved outside, or superseded.

The outcome stays ``failed``; the disposition is its own record (``store.dispositions``) and audit entry
(``item.dispositioned``), in one transaction. An approver decides it, never the member who started the run
or retried the item (four eyes, refused and audited as an approval's are). One eligibility rule serves a
single disposition and a bulk one (the Failed items page's failure group, planned first as a bulk retry is).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.dispositions import SUPERSEDED, Disposition, DispositionInvalid, make_disposition, run_of
from core.roles import Actor
from core.states import ITEM_FAILED
from engine.authz import check_permission
from engine.commands.approvals import check_four_eyes, four_eyes_conflict
from engine.commands.refusals import AlreadyDone, CommandRefused, NotEligible, find_item
from store import dispositions as disposition_store
from store import items as item_store
from store import runs as run_store

if TYPE_CHECKING:
    from engine.runtime import Engine


def check_disposition_eligible(item: dict[str, Any], disposition_kind: str | None) -> None:
    """Only a failure nobody will retry automatically, and not dispositioned yet."""
    if item["outcome"] != ITEM_FAILED:
        raise NotEligible(f"Item {item['item_id']} is {item['outcome']}, not failed; only a failed item is "
                          "dispositioned.")
    if disposition_kind:
        raise AlreadyDone(f"Item {item['item_id']} is already dispositioned ({disposition_kind}); a disposition "
                          "is recorded once.")
    if item.get("retry_due_at") is not None:
        due = f"{item['retry_due_at']:%Y-%m-%d %H:%M}"
        raise NotEligible(f"Item {item['item_id']} has an automatic retry due at {due} UTC; disposition it if "
                          "that retry fails too.")


def _check_later(engine: Engine, item: dict[str, Any], own_run: dict[str, Any], d: Disposition) -> None:
    """A superseded item names a later run or item that exists, and is not itself or its own run."""
    if d.kind != SUPERSEDED or d.superseded_by is None:
        return
    later = d.superseded_by
    with engine.ws.read() as conn:
        run = run_store.read_run(conn, run_of(later))
        found = run is not None and (later == run["run_id"] or item_store.read_item(conn, later) is not None)
    if not found:
        raise CommandRefused(f"There is no run or item {later!r} to supersede {item['item_id']}; name the later "
                             "run or item that did the work.")
    if run_of(later) == item["run_id"]:
        raise CommandRefused(f"{later} is {item['item_id']}'s own run or item; a superseding run or item is a "
                             "later one.")
    if run is not None and run["run_number"] <= own_run["run_number"]:
        raise CommandRefused(f"{later} is not later than {item['item_id']}'s run {item['run_id']}; name the later "
                             "run or item that did the work.")


def disposition_item(engine: Engine, actor: Actor, item_id: str, kind: str, reason: str | None,
                     reference: str | None = None, superseded_by: str | None = None) -> str:
    """Record the disposition; returns its kind. Refused by role, by four eyes, by state, or as given."""
    item, run = find_item(engine, item_id)
    check_permission(engine.ws, actor, "disposition", "run_item", item_id)
    try:
        d = make_disposition(kind, reason, reference, superseded_by)
    except DispositionInvalid as exc:
        raise CommandRefused(str(exc)) from None
    with engine.ws.read() as conn:
        existing = disposition_store.read_disposition(conn, item_id)
    check_disposition_eligible(item, existing["kind"] if existing else None)
    check_four_eyes(engine, actor, item, run, "disposition")
    _check_later(engine, item, run, d)
    with engine.ws.transaction() as tx:
        if not disposition_store.insert_disposition(tx, item, run["definition_id"], d.kind, d.reason, d.reference,
                                                    d.superseded_by, actor.audit_name):
            raise AlreadyDone(f"Item {item_id} was retried or dispositioned by someone else since you saw it; "
                              "reload to see how it stands.")
        tx.audit(actor.audit_name, "item.dispositioned", "run_item", item_id,
                 {"run_id": run["run_id"], "kind": d.kind, "reason": d.reason, "reference": d.reference,
                  "superseded_by": d.superseded_by, "failure_cause": item["failure_cause"],
                  "attempts": item["attempts"]})
    return d.kind


@dataclass
class DispositionPlan:
    """Which failed items a bulk disposition would record, and why each other one would not be."""

    eligible: list[dict[str, Any]] = field(default_factory=list)
    not_eligible: list[tuple[dict[str, Any], str]] = field(default_factory=list)


def plan_dispositions(engine: Engine, actor: Actor, failed_items: Iterable[dict[str, Any]]) -> DispositionPlan:
    """The plan for failed items as ``store.views.oversight.read_failed_items`` gives them (with their run's
    trigger and any disposition), by the rules a single disposition is held to, four eyes included."""
    plan = DispositionPlan()
    for row in failed_items:
        try:
            check_disposition_eligible(row, row.get("disposition"))
            conflict = four_eyes_conflict(engine, actor, row, row, "disposition")
            if conflict is not None:
                raise CommandRefused(conflict.message)
            plan.eligible.append(row)
        except CommandRefused as exc:
            plan.not_eligible.append((row, str(exc)))
    return plan


def disposition_items(engine: Engine, actor: Actor, item_ids: list[str], kind: str, reason: str | None,
                      reference: str | None = None, superseded_by: str | None = None,
                      progress: Callable[[int, int], object] | None = None) -> dict[str, str]:
    """Disposition each item alike (a failure group); item → its kind, or the sentence it was refused with.
    Each is checked again and recorded in its own transaction, as a single one is."""
    try:
        make_disposition(kind, reason, reference, superseded_by)  # refused whole before any is recorded
    except DispositionInvalid as exc:
        raise CommandRefused(str(exc)) from None
    results: dict[str, str] = {}
    for n, item_id in enumerate(item_ids, 1):
        try:
            results[item_id] = disposition_item(engine, actor, item_id, kind, reason, reference, superseded_by)
        except CommandRefused as exc:
            results[item_id] = f"not dispositioned: {exc}"
        if progress:
            progress(n, len(item_ids))
    return results
