"""What the Run page reads to compare a run's matched population with the previous run's (core.population).

Each run's items hold every matched subject as it stood at matching (``subject_snapshot``); the register's
recorded changes (``subject_changes``, one row per subject a load added, changed, withdrew or restored) say
what moved in between. So a subject's fields at the other run's time are its snapshot with the recorded
changes between the two trigger times applied — forwards for one that left, backwards for one that entered.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from core.states import ACTED_OUTCOMES
from store.schema import run_items, runs, subject_changes


def read_previous_run(conn: sa.Connection, run: dict[str, Any]) -> dict[str, Any] | None:
    """The same automation's run just before this one (by trigger time), whatever its trigger."""
    q = (sa.select(runs).where(runs.c.definition_id == run["definition_id"],
                               runs.c.triggered_at < run["triggered_at"])
         .order_by(runs.c.triggered_at.desc(), runs.c.run_number.desc()).limit(1))
    row = conn.execute(q).mappings().first()
    return dict(row) if row else None


def read_matched(conn: sa.Connection, run_id: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Subject id → (label, fields as matched) for every subject the run matched (one per subject, however
    many actions it had)."""
    first = (sa.select(run_items.c.subject_id, sa.func.min(run_items.c.position).label("position"))
             .where(run_items.c.run_id == run_id).group_by(run_items.c.subject_id).subquery())
    q = (sa.select(run_items.c.subject_id, run_items.c.subject_label, run_items.c.subject_snapshot)
         .select_from(run_items.join(first, sa.and_(run_items.c.subject_id == first.c.subject_id,
                                                    run_items.c.position == first.c.position)))
         .where(run_items.c.run_id == run_id))
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for sid, label, snapshot in conn.execute(q):
        try:
            fields = json.loads(snapshot) if snapshot else {}
        except ValueError:
            fields = {}
        out[str(sid)] = (str(label), fields if isinstance(fields, dict) else {})
    return out


def read_changes_between(conn: sa.Connection, register: str, subject_ids: Sequence[str], start: dt.datetime,
                         end: dt.datetime) -> dict[str, list[dict[str, Any]]]:
    """Subject id → its recorded changes in (start, end], oldest first."""
    if not subject_ids:
        return {}
    q = (sa.select(subject_changes.c.subject_id, subject_changes.c.change, subject_changes.c.before,
                   subject_changes.c.after, subject_changes.c.changed_at)
         .where(subject_changes.c.register_id == register, subject_changes.c.subject_id.in_(list(subject_ids)),
                subject_changes.c.changed_at > start, subject_changes.c.changed_at <= end)
         .order_by(subject_changes.c.changed_at, subject_changes.c.import_id))
    out: dict[str, list[dict[str, Any]]] = {}
    for r in conn.execute(q).mappings():
        out.setdefault(str(r["subject_id"]), []).append(dict(r))
    return out


def count_items_matched(conn: sa.Connection, run_id: str) -> int:
    return int(conn.execute(sa.select(sa.func.count(sa.distinct(run_items.c.subject_id)))
                            .where(run_items.c.run_id == run_id)).scalar_one())


def read_acted(conn: sa.Connection, run_id: str, subject_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Subject id → the run's items that acted on it (succeeded or replayed), with their action and record."""
    if not subject_ids:
        return {}
    q = (sa.select(run_items.c.subject_id, run_items.c.item_id, run_items.c.action, run_items.c.record_ref)
         .where(run_items.c.run_id == run_id, run_items.c.subject_id.in_(list(subject_ids)),
                run_items.c.outcome.in_(ACTED_OUTCOMES))
         .order_by(run_items.c.position))
    out: dict[str, list[dict[str, Any]]] = {}
    for r in conn.execute(q).mappings():
        out.setdefault(str(r["subject_id"]), []).append(dict(r))
    return out


def count_population_moves(conn: sa.Connection, run: dict[str, Any]) -> tuple[str, int, int, int] | None:
    """(previous run, its matched subjects, entered, left) for the Runs page's population flag; None for an
    automation's first run. Counted in SQL over the two runs' items (two runs' rows, by run id)."""
    previous = read_previous_run(conn, run)
    if previous is None:
        return None
    cur = sa.select(run_items.c.subject_id).where(run_items.c.run_id == run["run_id"]).distinct()
    prev = sa.select(run_items.c.subject_id).where(run_items.c.run_id == previous["run_id"]).distinct()

    def count(q: Any) -> int:
        return int(conn.execute(sa.select(sa.func.count()).select_from(q.subquery())).scalar_one())

    return previous["run_id"], count(prev), count(sa.except_(cur, prev)), count(sa.except_(prev, cur))
