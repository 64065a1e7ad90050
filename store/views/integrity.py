"""The integrity facts behind the brief's "0 unintended consequences", counted in SQL over the tables.

The counts are about the items of the runs triggered in a period (and the definitions filter): the
downstream records they made, whether each record and its item name each other, whether any idempotency
key acted twice, whether any item that ended skipped, dismissed or unapproved left a trace of acting.
The counts are what the data shows and nothing more; ``reporting.integrity`` turns them into claims
with pass/fail. Everything is read on the caller's connection (one consistent snapshot).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from core.states import (
    ACTED_OUTCOMES,
    APPROVAL_OPEN,
    APPROVED,
    CANCELLED_REASON,
    DISMISSED,
    IDEMPOTENT_REPLAY,
    SKIP_KINDS,
    SKIPPED,
    SUCCEEDED,
)
from store.records import RECORD_TABLES
from store.schema import approvals, idempotency_records, item_attempts, run_items, runs
from store.views.analytics import AnalyticsFilter, run_period_conds


@dataclass(frozen=True)
class SkipFacts:
    """Items of one skip kind: how many, how many never reached an actioner, how many show any trace of
    acting (a record, a successful attempt, an idempotency-ledger entry or a delivered message)."""

    items: int = 0
    never_attempted: int = 0
    with_trace: int = 0


@dataclass(frozen=True)
class IntegrityFacts:
    """Every count of the integrity statement for one period, read in one snapshot."""

    records_by_definition_module: dict[tuple[str, str], int]  # (definition, module) → records of its items
    records_not_named_back: int  # the item's record_ref or idempotency key does not name the record
    items_with_several_records: int
    orphan_records: int  # created in the period; their source item exists nowhere
    dangling_record_refs: int  # an item's record_ref that resolves to no record
    keys_with_several_records: int
    items_succeeded_twice: int  # more than one successful attempt on one item
    retry_attempts: int  # attempts after an item's first (retries after a failure)
    replays: int  # attempts answered from the idempotency ledger
    replays_not_original: int  # ... whose record differs from the ledger's original
    records_by_unacted_outcome: dict[str, int]  # item outcome (not succeeded/replay) → records
    skipped: dict[str, SkipFacts]  # condition | dismissed | cancelled
    approvals_by_decision: dict[str, int]  # approved | dismissed | cancelled | open
    acted_without_approval_decision: int  # approval not granted (dismissed/cancelled/open) yet a trace
    records_before_approval: int  # record created before its approval was decided
    acted_unapproved_in_approval_versions: int  # a version requiring approval acted without one granted
    actions_invoked: int  # runs.actions_invoked summed
    items_attempted: int  # items with at least one attempt (what actions_invoked counts)
    approval_versions_checked: int = 0

    @property
    def records_by_module(self) -> dict[str, int]:
        out = {m: 0 for m in RECORD_TABLES}  # the owning modules always, a remote system once it has records
        for (_, module), n in self.records_by_definition_module.items():
            out[module] = out.get(module, 0) + n
        return out

    @property
    def records(self) -> int:
        return sum(self.records_by_definition_module.values())


def _period_items(f: AnalyticsFilter) -> sa.Subquery:
    return (sa.select(run_items.c.item_id, run_items.c.outcome, run_items.c.record_ref,
                      run_items.c.idempotency_key, run_items.c.skip_reason, runs.c.definition_id,
                      runs.c.definition_version)
            .select_from(run_items.join(runs, runs.c.run_id == run_items.c.run_id))
            .where(*run_period_conds(f)).subquery("period_items"))


REMOTE_ACTIONERS = ("webhook:", "email:")  # integrations: their records live in the remote system


def _all_records() -> sa.Subquery:
    """Every downstream record as one relation: module, record id, source item, key, creation. The owning
    modules' records are rows of their registers; a remote system's (a webhook's ticket, an e-mail) is known
    here by its ledger entry — the reference the system answered, written with the item's outcome — with the
    integration as its module (``webhook:ticketing`` + ``TCK-1``)."""
    parts = [sa.select(sa.literal(module, sa.String).label("module"),
                       list(t.primary_key.columns)[0].label("record_id"), t.c.source_item_id,
                       t.c.idempotency_key, t.c.created_at)
             for module, t in RECORD_TABLES.items()]
    ledger = idempotency_records.c
    parts.append(sa.select(ledger.actioner.label("module"),
                           sa.func.substr(ledger.record_ref, sa.func.length(ledger.actioner) + 2).label("record_id"),
                           ledger.item_id.label("source_item_id"), ledger.idempotency_key, ledger.created_at)
                 .where(sa.or_(*(ledger.actioner.startswith(p) for p in REMOTE_ACTIONERS))))
    return sa.union_all(*parts).subquery("records")


def _ref(rec: sa.Subquery) -> Any:
    return sa.func.concat(rec.c.module, ":", rec.c.record_id)


def _scalar(conn: sa.Connection, q: Any) -> int:
    return int(conn.execute(q).scalar_one() or 0)


def _count_groups_over_one(conn: sa.Connection, key: Any, q: Any) -> int:
    """How many groups of ``q`` by ``key`` have more than one row."""
    grouped = q.group_by(key).having(sa.func.count() > 1).subquery()
    return _scalar(conn, sa.select(sa.func.count()).select_from(grouped))


def read_integrity_facts(conn: sa.Connection, f: AnalyticsFilter,
                         approval_versions: Sequence[tuple[str, int]] = ()) -> IntegrityFacts:
    """Every fact of the statement for the runs triggered in [f.start, f.end).

    ``approval_versions``: the (definition, version) pairs whose text requires approval (the engine parses
    the stored definition texts; SQL cannot)."""
    items, rec = _period_items(f), _all_records()
    linked = rec.join(items, items.c.item_id == rec.c.source_item_id)

    by_def_module = {(r.definition_id, r.module): int(r.n) for r in conn.execute(
        sa.select(items.c.definition_id, rec.c.module, sa.func.count().label("n")).select_from(linked)
        .group_by(items.c.definition_id, rec.c.module))}
    not_named_back = _scalar(conn, sa.select(sa.func.count()).select_from(linked).where(sa.or_(
        items.c.record_ref.is_distinct_from(_ref(rec)),
        items.c.idempotency_key.is_distinct_from(rec.c.idempotency_key))))
    several_records = _count_groups_over_one(conn, rec.c.source_item_id,
                                             sa.select(rec.c.source_item_id).select_from(linked))
    orphan_conds: list[Any] = [~sa.exists().where(run_items.c.item_id == rec.c.source_item_id)]
    if f.start:
        orphan_conds.append(rec.c.created_at >= f.start)
    if f.end:
        orphan_conds.append(rec.c.created_at < f.end)
    orphans = _scalar(conn, sa.select(sa.func.count()).select_from(rec).where(*orphan_conds))
    dangling = _scalar(conn, sa.select(sa.func.count()).select_from(items).where(
        items.c.record_ref.is_not(None), ~sa.exists().where(_ref(rec) == items.c.record_ref)))

    keyed = rec.join(items, items.c.idempotency_key == rec.c.idempotency_key)
    several_keys = _count_groups_over_one(conn, rec.c.idempotency_key,
                                          sa.select(rec.c.idempotency_key).select_from(keyed))
    attempts = item_attempts.join(items, items.c.item_id == item_attempts.c.item_id)
    twice = _count_groups_over_one(conn, item_attempts.c.item_id, sa.select(item_attempts.c.item_id)
                                   .select_from(attempts).where(item_attempts.c.outcome == SUCCEEDED))
    replay_rows = conn.execute(
        sa.select(sa.func.count().label("replays"),
                  sa.func.count().filter(item_attempts.c.record_ref.is_distinct_from(
                      idempotency_records.c.record_ref)).label("mismatched"))
        .select_from(attempts.outerjoin(idempotency_records,
                                        idempotency_records.c.idempotency_key == items.c.idempotency_key))
        .where(item_attempts.c.outcome == IDEMPOTENT_REPLAY)).one()

    unacted = {r.outcome: int(r.n) for r in conn.execute(
        sa.select(items.c.outcome, sa.func.count().label("n")).select_from(linked)
        .where(items.c.outcome.not_in(ACTED_OUTCOMES)).group_by(items.c.outcome))}

    return IntegrityFacts(
        records_by_definition_module=by_def_module, records_not_named_back=not_named_back,
        items_with_several_records=several_records, orphan_records=orphans, dangling_record_refs=dangling,
        keys_with_several_records=several_keys,
        items_succeeded_twice=twice,
        retry_attempts=_scalar(conn, sa.select(sa.func.count()).select_from(attempts)
                               .where(item_attempts.c.attempt > 1)),
        replays=int(replay_rows.replays or 0),
        replays_not_original=int(replay_rows.mismatched or 0), records_by_unacted_outcome=unacted,
        skipped=_skip_facts(conn, items, rec),
        approvals_by_decision=_approval_decisions(conn, f),
        acted_without_approval_decision=_acted_without_approval(conn, f, rec),
        records_before_approval=_records_before_approval(conn, f, rec),
        acted_unapproved_in_approval_versions=_acted_unapproved(conn, items, rec, approval_versions),
        actions_invoked=_scalar(conn, sa.select(sa.func.coalesce(sa.func.sum(runs.c.actions_invoked), 0))
                                .where(*run_period_conds(f))),
        items_attempted=_scalar(conn, sa.select(sa.func.count(sa.distinct(item_attempts.c.item_id)))
                                .select_from(attempts)),
        approval_versions_checked=len(approval_versions))


def _trace_of_acting(item_id: Any, key: Any, rec: sa.Subquery) -> Any:
    """Any evidence that an item's action ran: a record, a successful attempt, a ledger entry."""
    return sa.or_(
        sa.exists().where(rec.c.source_item_id == item_id),
        sa.exists().where(item_attempts.c.item_id == item_id, item_attempts.c.outcome.in_(ACTED_OUTCOMES)),
        sa.exists().where(idempotency_records.c.idempotency_key == key))


def _skip_kind(reason: Any) -> Any:
    return sa.case((reason == CANCELLED_REASON, CANCELLED_REASON), (reason.like("dismissed by %"), DISMISSED),
                   else_="condition").label("kind")


def _skip_facts(conn: sa.Connection, items: sa.Subquery, rec: sa.Subquery) -> dict[str, SkipFacts]:
    kind = _skip_kind(items.c.skip_reason)
    never = ~sa.exists().where(item_attempts.c.item_id == items.c.item_id)
    trace = _trace_of_acting(items.c.item_id, items.c.idempotency_key, rec)
    rows = conn.execute(
        sa.select(kind, sa.func.count().label("items"), sa.func.count().filter(never).label("never"),
                  sa.func.count().filter(trace).label("trace"))
        .select_from(items).where(items.c.outcome == SKIPPED).group_by(kind)).all()
    out = {k: SkipFacts() for k in SKIP_KINDS}
    for r in rows:
        out[r.kind] = SkipFacts(int(r.items), int(r.never), int(r.trace))
    return out


def _approvals_in_scope(f: AnalyticsFilter) -> Any:
    return approvals.join(runs, runs.c.run_id == approvals.c.run_id)


def _approval_decisions(conn: sa.Connection, f: AnalyticsFilter) -> dict[str, int]:
    decision = sa.func.coalesce(approvals.c.decision, "open").label("decision")
    rows = conn.execute(sa.select(decision, sa.func.count().label("n")).select_from(_approvals_in_scope(f))
                        .where(*run_period_conds(f)).group_by(decision)).all()
    return {r.decision: int(r.n) for r in rows}


def _acted_without_approval(conn: sa.Connection, f: AnalyticsFilter, rec: sa.Subquery) -> int:
    """Items whose approval was dismissed, cancelled or is still open, yet show a trace of acting."""
    key = run_items.c.idempotency_key
    q = (sa.select(sa.func.count()).select_from(
        _approvals_in_scope(f).join(run_items, run_items.c.item_id == approvals.c.item_id))
         .where(*run_period_conds(f), sa.func.coalesce(approvals.c.decision, APPROVAL_OPEN) != APPROVED,
                _trace_of_acting(run_items.c.item_id, key, rec)))
    return _scalar(conn, q)


def _records_before_approval(conn: sa.Connection, f: AnalyticsFilter, rec: sa.Subquery) -> int:
    q = (sa.select(sa.func.count()).select_from(
        _approvals_in_scope(f).join(rec, rec.c.source_item_id == approvals.c.item_id))
         .where(*run_period_conds(f),
                sa.or_(approvals.c.decided_at.is_(None), rec.c.created_at < approvals.c.decided_at)))
    return _scalar(conn, q)


def _acted_unapproved(conn: sa.Connection, items: sa.Subquery, rec: sa.Subquery,
                      approval_versions: Sequence[tuple[str, int]]) -> int:
    """Items of versions that require approval which acted although no approval of them was granted."""
    if not approval_versions:
        return 0
    in_versions = sa.or_(*[sa.and_(items.c.definition_id == d, items.c.definition_version == v)
                           for d, v in approval_versions])
    granted = sa.exists().where(approvals.c.item_id == items.c.item_id, approvals.c.decision == APPROVED)
    q = (sa.select(sa.func.count()).select_from(items)
         .where(in_versions, ~granted, _trace_of_acting(items.c.item_id, items.c.idempotency_key, rec)))
    return _scalar(conn, q)
