"""Conditions compiled to SQL: one compiler for matching subjects and for re-checking them per item.

The engine's declarative clauses (``engine.conditions``) become SQLAlchemy expressions here, so the
filter runs in the database, and the re-check evaluates every clause as its own boolean column to name
the first one that stopped holding.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Sequence

import sqlalchemy as sa

from engine.conditions import Clause, Compare, Condition, Related, literal_for
from store.registers import REGISTERS


def _coerce(value: Any, field_type: str) -> Any:
    if isinstance(value, list):
        return [_coerce(v, field_type) for v in value]
    if field_type == "date" and isinstance(value, str):
        return dt.date.fromisoformat(value)
    if field_type == "date" and isinstance(value, dt.datetime):
        return value.date()
    if field_type == "timestamp" and isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    return value


def _compare(table: sa.Table, kind: str, c: Compare, trigger_at: dt.datetime) -> sa.ColumnElement[bool]:
    col = table.c[c.field]
    ftype = REGISTERS[kind].fields[c.field]
    v = _coerce(literal_for(c.value, trigger_at, ftype), ftype)
    match c.op:
        case "eq": return col == v
        case "ne": return col != v
        case "lt": return col < v
        case "lte": return col <= v
        case "gt": return col > v
        case "gte": return col >= v
        case "in": return col.in_(v)
        case "not_in": return col.not_in(v)
        case "is_null": return col.is_(None)
        case "not_null": return col.is_not(None)
    raise ValueError(f"unknown operator {c.op}")


def _clause(subject: sa.Table, kind: str, clause: Clause, trigger_at: dt.datetime) -> sa.ColumnElement[bool]:
    t = clause.test
    if isinstance(t, Compare):
        return _compare(subject, kind, t, trigger_at)
    assert isinstance(t, Related)
    other = REGISTERS[t.register].table.alias(f"rel_{t.register}")
    conds = [other.c[theirs] == subject.c[ours] for theirs, ours in t.match]
    conds += [_compare(other, t.register, w, trigger_at) for w in t.where]
    found = sa.exists().where(*conds)
    return found if t.exists else ~found


def match_subjects(conn: sa.Connection, condition: Condition, trigger_at: dt.datetime,
                   only_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Subjects for which the ``where`` clauses hold now, in key order (the run's item order)."""
    reg = REGISTERS[condition.subject]
    t = reg.table
    q = sa.select(t).where(*[_clause(t, reg.kind, c, trigger_at) for c in condition.where])
    if only_ids is not None:
        q = q.where(t.c[reg.key].in_(list(only_ids)))
    return [dict(r) for r in conn.execute(q.order_by(t.c[reg.key])).mappings()]


def read_subjects(conn: sa.Connection, kind: str, ids: Sequence[str]) -> list[dict[str, Any]]:
    reg = REGISTERS[kind]
    q = sa.select(reg.table).where(reg.table.c[reg.key].in_(list(ids))).order_by(reg.table.c[reg.key])
    return [dict(r) for r in conn.execute(q).mappings()]


def check_subjects(conn: sa.Connection, condition: Condition, trigger_at: dt.datetime,
                   ids: Sequence[str]) -> dict[str, tuple[str | None, dict[str, Any]]]:
    """For each id: the reason the first failing clause gives (None if all hold), and the subject now.

    A subject that no longer exists is reported with that reason and an empty snapshot.
    """
    reg = REGISTERS[condition.subject]
    t = reg.table
    clauses = condition.all_clauses
    flags = [sa.case((_clause(t, reg.kind, c, trigger_at), sa.true()), else_=sa.false()).label(f"c{i}")
             for i, c in enumerate(clauses)]
    q = sa.select(t, *flags).where(t.c[reg.key].in_(list(ids)))
    out: dict[str, tuple[str | None, dict[str, Any]]] = {}
    for row in conn.execute(q).mappings():
        snapshot = {k: row[k] for k in t.c.keys()}
        failing = next((clauses[i].reason for i in range(len(clauses)) if not row[f"c{i}"]), None)
        out[row[reg.key]] = (failing, snapshot)
    for i in ids:
        out.setdefault(i, (f"the {reg.kind} record {i} no longer exists", {}))
    return out
