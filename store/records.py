"""The owning modules' records, the idempotency ledger, and the messaging integration's state."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from store import schema as s
from store.bulk import Columns, append_columns, append_rows
from store.tx import Tx

RECORD_TABLES: dict[str, sa.Table] = {
    "findings": s.findings, "evidence_requests": s.evidence_requests, "assessments": s.assessments,
    "lifecycle_instances": s.lifecycle_instances,
}


def field_value_types(table: sa.Table) -> dict[str, tuple[tuple[type, ...], str]]:
    """For each column, the exact Python types a value written to it may have, and how to say so.

    Exact: a bool is not a number here, nor a timestamp a date, nor a dict text — the database would
    cast any of them silently into something the writer did not mean."""
    out: dict[str, tuple[tuple[type, ...], str]] = {}
    for col in table.columns:
        t = col.type
        if isinstance(t, sa.DateTime):
            out[col.name] = (dt.datetime,), "a timestamp"
        elif isinstance(t, sa.Date):
            out[col.name] = (dt.date,), "a date"
        elif isinstance(t, sa.Boolean):
            out[col.name] = (bool,), "true or false"
        elif isinstance(t, sa.Integer):
            out[col.name] = (int,), "an integer"
        elif isinstance(t, sa.Float):
            out[col.name] = (int, float), "a number"
        else:
            out[col.name] = (str,), "text"
    return out


def insert_records(tx: Tx, module: str, rows: Sequence[dict[str, Any]]) -> None:
    append_rows(tx, RECORD_TABLES[module], rows)


def read_idempotency(conn: sa.Connection, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    if not keys:
        return {}
    q = sa.select(s.idempotency_records).where(s.idempotency_records.c.idempotency_key.in_(list(keys)))
    return {r["idempotency_key"]: dict(r) for r in conn.execute(q).mappings().all()}


def insert_idempotency(tx: Tx, rows: Sequence[dict[str, Any]] | Columns) -> None:
    """Append ledger entries: a list of rows, or columns (name → values)."""
    if isinstance(rows, Mapping):
        append_columns(tx, s.idempotency_records, rows)
    else:
        append_rows(tx, s.idempotency_records, rows)


def read_record(conn: sa.Connection, module: str, record_id: str) -> dict[str, Any] | None:
    t = RECORD_TABLES[module]
    key = list(t.primary_key.columns)[0]
    row = conn.execute(sa.select(t).where(key == record_id)).mappings().first()
    return dict(row) if row else None
