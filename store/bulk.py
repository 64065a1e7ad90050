"""Group-commit fast paths: many rows in one statement.

On DuckDB, rows travel as an Arrow table registered on the transaction's own connection (measured
70,000–300,000 rows/s against ~500/s for a commit per row); on any other backend the same call falls
back to SQLAlchemy ``executemany``. Either way the rows land in the caller's transaction.
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import pyarrow as pa
import sqlalchemy as sa

from store.workspace import Tx

_FAST_PATH_MIN_ROWS = 32
_names = itertools.count()


def _arrow_type(col: sa.Column) -> pa.DataType:
    t = col.type
    if isinstance(t, sa.DateTime):
        return pa.timestamp("us", tz="UTC")
    if isinstance(t, sa.Date):
        return pa.date32()
    if isinstance(t, sa.Boolean):
        return pa.bool_()
    if isinstance(t, sa.Integer):
        return pa.int64()
    if isinstance(t, sa.Float):
        return pa.float64()
    return pa.string()


def _arrow(table: sa.Table, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> pa.Table:
    schema = pa.schema([(c, _arrow_type(table.c[c])) for c in columns])
    return pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows], schema=schema)


def _use_fast_path(tx: Tx, rows: Sequence[Any]) -> bool:
    return tx.conn.dialect.name == "duckdb" and len(rows) >= _FAST_PATH_MIN_ROWS


def append_rows(tx: Tx, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    if not _use_fast_path(tx, rows):
        tx.conn.execute(table.insert(), list(rows))
        return
    columns = list(rows[0].keys())
    name = f"_append_{next(_names)}"
    raw = tx.raw
    raw.register(name, _arrow(table, columns, rows))
    try:
        cols = ", ".join(f'"{c}"' for c in columns)
        raw.execute(f'INSERT INTO "{table.name}" ({cols}) SELECT {cols} FROM {name}')
    finally:
        raw.unregister(name)


def update_rows(tx: Tx, table: sa.Table, key: str, rows: Sequence[dict[str, Any]]) -> None:
    """Set each row's columns on the row with the same ``key``; every row names the same columns."""
    if not rows:
        return
    columns = [c for c in rows[0].keys() if c != key]
    if not _use_fast_path(tx, rows):
        stmt = table.update().where(table.c[key] == sa.bindparam("_k")).values(
            **{c: sa.bindparam(f"_{c}") for c in columns})
        tx.conn.execute(stmt, [{"_k": r[key], **{f"_{c}": r[c] for c in columns}} for r in rows])
        return
    name = f"_update_{next(_names)}"
    raw = tx.raw
    raw.register(name, _arrow(table, [key, *columns], rows))
    try:
        sets = ", ".join(f'"{c}" = {name}."{c}"' for c in columns)
        raw.execute(f'UPDATE "{table.name}" SET {sets} FROM {name} '
                    f'WHERE "{table.name}"."{key}" = {name}."{key}"')
    finally:
        raw.unregister(name)
