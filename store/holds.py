"""Legal holds: a run, or a subject (a register's key), that retention must keep whatever its age.

A hold is placed and released, never deleted: the row says who placed it, why, and who released it. What a
standing hold keeps is read here once (``held_runs``), for the retention plan and for the checks its apply
repeats inside its transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from store.schema import hold_number, legal_holds, run_items, runs
from store.tx import Tx

RUN_SCOPE, SUBJECT_SCOPE = "run", "subject"


@dataclass(frozen=True)
class HeldRun:
    """A run a standing hold keeps, and the hold that keeps it (the first, when several do)."""

    run_id: str
    hold_id: str
    why: str  # "run RUN-000012 is on hold" / "accounts ACC-001 is on hold (item RUN-000012-000001)"
    reason: str  # the hold's own reason, as the admin gave it


def new_hold_id(tx: Tx) -> str:
    n = tx.conn.execute(sa.select(hold_number.next_value())).scalar_one()
    return f"HOLD-{n:06d}"


def insert_hold(tx: Tx, scope: str, reason: str, actor: str, *, run_id: str | None = None,
                subject_kind: str | None = None, subject_id: str | None = None) -> str:
    hold_id = new_hold_id(tx)
    tx.conn.execute(legal_holds.insert().values(
        hold_id=hold_id, scope=scope, run_id=run_id, subject_kind=subject_kind, subject_id=subject_id,
        reason=reason, placed_by=actor, placed_at=tx.now()))
    return hold_id


def release_hold(tx: Tx, hold_id: str, actor: str, reason: str | None) -> bool:
    """Release a standing hold; False if it was released meanwhile."""
    done = tx.conn.execute(legal_holds.update().where(legal_holds.c.hold_id == hold_id,
                                                      legal_holds.c.released_at.is_(None))
                           .values(released_by=actor, released_at=tx.now(), release_reason=reason))
    return bool(done.rowcount)


def read_hold(conn: sa.Connection, hold_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(legal_holds).where(legal_holds.c.hold_id == hold_id)).mappings().first()
    return dict(row) if row else None


def read_holds(conn: sa.Connection, *, standing_only: bool = False) -> list[dict[str, Any]]:
    q = sa.select(legal_holds).order_by(legal_holds.c.hold_id)
    if standing_only:
        q = q.where(legal_holds.c.released_at.is_(None))
    return [dict(r) for r in conn.execute(q).mappings()]


def held_subjects(conn: sa.Connection) -> set[tuple[str, str]]:
    """(register, subject id) of every standing subject hold."""
    q = sa.select(legal_holds.c.subject_kind, legal_holds.c.subject_id).where(
        legal_holds.c.scope == SUBJECT_SCOPE, legal_holds.c.released_at.is_(None))
    return {(str(k), str(i)) for k, i in conn.execute(q)}


def held_runs(conn: sa.Connection, among: sa.Select[Any]) -> dict[str, HeldRun]:
    """The runs of ``among`` (a select of run ids) that a standing hold keeps: held themselves, or with an item
    of a held subject."""
    standing = legal_holds.c.released_at.is_(None)
    out: dict[str, HeldRun] = {}
    by_run = (sa.select(legal_holds.c.run_id, legal_holds.c.hold_id, legal_holds.c.reason)
              .where(standing, legal_holds.c.scope == RUN_SCOPE, legal_holds.c.run_id.in_(among))
              .order_by(legal_holds.c.hold_id))
    for run_id, hold_id, reason in conn.execute(by_run):
        out.setdefault(run_id, HeldRun(run_id, hold_id, f"run {run_id} is on hold", reason))
    by_subject = (sa.select(run_items.c.run_id, run_items.c.item_id, legal_holds.c.hold_id, legal_holds.c.reason,
                            legal_holds.c.subject_kind, legal_holds.c.subject_id)
                  .select_from(run_items.join(legal_holds, sa.and_(
                      legal_holds.c.subject_kind == run_items.c.subject_kind,
                      legal_holds.c.subject_id == run_items.c.subject_id)))
                  .where(standing, legal_holds.c.scope == SUBJECT_SCOPE, run_items.c.run_id.in_(among))
                  .order_by(run_items.c.run_id, legal_holds.c.hold_id, run_items.c.item_id))
    for run_id, item_id, hold_id, reason, kind, subject in conn.execute(by_subject):
        out.setdefault(run_id, HeldRun(run_id, hold_id, f"{kind} {subject} is on hold (item {item_id})", reason))
    return out


def runs_exist(conn: sa.Connection, run_ids: Iterable[str]) -> set[str]:
    ids = list(run_ids)
    found: set[str] = set()
    for i in range(0, len(ids), 1000):
        found |= set(conn.execute(sa.select(runs.c.run_id).where(runs.c.run_id.in_(ids[i:i + 1000]))).scalars())
    return found
