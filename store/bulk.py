"""Group-commit fast paths: many rows in one statement.

On DuckDB, rows travel as an Arrow table registered on the transaction's own connection (measured
70,000–300,000 rows/s against ~500/s for a commit per row); on any other backend the same call falls
back to SQLAlchemy ``executemany``. Either way the rows land in the caller's transaction.

Callers that build many rows may hand them over column by column (``append_columns``): building one
Python list per column and one Arrow array from each is several times cheaper than a dict per row.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any, Mapping, Sequence

import pyarrow as pa
import sqlalchemy as sa

from store.workspace import Tx

_FAST_PATH_MIN_ROWS = 32
_names = itertools.count()
Columns = Mapping[str, Sequence[Any]]


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


_UTC = dt.timezone.utc
_NAIVE_US = pa.timestamp("us")


def _array(values: Sequence[Any], typ: pa.DataType) -> pa.Array:
    if isinstance(typ, pa.TimestampType) and typ.tz is not None:
        # pyarrow converts an aware datetime ~15x slower than a naive one: hand it naive UTC values.
        naive = [v if v is None or v.tzinfo is None else
                 (v if v.tzinfo is _UTC else v.astimezone(_UTC)).replace(tzinfo=None) for v in values]
        return pa.array(naive, type=_NAIVE_US).cast(typ)
    return pa.array(values, type=typ)


def _arrow(table: sa.Table, columns: Columns) -> pa.Table:
    names = list(columns)
    return pa.Table.from_arrays([_array(columns[c], _arrow_type(table.c[c])) for c in names], names=names)


def _length(columns: Columns) -> int:
    return len(next(iter(columns.values()))) if columns else 0


def _rows_to_columns(rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    return {c: [r.get(c) for r in rows] for c in rows[0].keys()}


def _columns_to_rows(columns: Columns) -> list[dict[str, Any]]:
    names = list(columns)
    return [dict(zip(names, values)) for values in zip(*(columns[c] for c in names))]


def _use_fast_path(tx: Tx, n: int) -> bool:
    return tx.conn.dialect.name == "duckdb" and n >= _FAST_PATH_MIN_ROWS


def _with_registered(tx: Tx, prefix: str, data: pa.Table, sql: str) -> None:
    """Run ``sql`` (which names the Arrow table ``{name}``) on the transaction's own connection."""
    name = f"_{prefix}_{next(_names)}"
    raw = tx.raw
    raw.complete()  # duckdb 2.0: a statement's unread result (an UPDATE's count) blocks the next one
    raw.register(name, data)
    try:
        raw.execute(sql.format(name=name))
    finally:
        raw.unregister(name)


def pack(table: sa.Table, columns: Columns) -> pa.Table:
    """Columns as a compact Arrow table typed for ``table``: a caller building rows in chunks packs
    each chunk and lets its Python objects go (``append_packed`` appends the concatenation)."""
    return _arrow(table, columns)


def append_packed(tx: Tx, table: sa.Table, data: pa.Table) -> None:
    if not data.num_rows:
        return
    if not _use_fast_path(tx, data.num_rows):
        tx.conn.execute(table.insert(), data.to_pylist())
        return
    cols = ", ".join(f'"{c}"' for c in data.column_names)
    _with_registered(tx, "append", data, f'INSERT INTO "{table.name}" ({cols}) SELECT {cols} FROM {{name}}')


def append_columns(tx: Tx, table: sa.Table, columns: Columns) -> None:
    """Append rows given as equal-length columns (name → values)."""
    n = _length(columns)
    if not n:
        return
    if not _use_fast_path(tx, n):
        tx.conn.execute(table.insert(), _columns_to_rows(columns))
        return
    append_packed(tx, table, _arrow(table, columns))


def append_rows(tx: Tx, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    if not _use_fast_path(tx, len(rows)):
        tx.conn.execute(table.insert(), list(rows))
        return
    append_columns(tx, table, _rows_to_columns(rows))


def update_columns(tx: Tx, table: sa.Table, key: str, columns: Columns) -> None:
    """Set each row's columns on the row with the same ``key`` (a column of ``columns``)."""
    n = _length(columns)
    if not n:
        return
    others = [c for c in columns if c != key]
    if not _use_fast_path(tx, n):
        stmt = table.update().where(table.c[key] == sa.bindparam("_k")).values(
            **{c: sa.bindparam(f"_{c}") for c in others})
        tx.conn.execute(stmt, [{"_k": r[key], **{f"_{c}": r[c] for c in others}}
                               for r in _columns_to_rows(columns)])
        return
    sets = ", ".join(f'"{c}" = {{name}}."{c}"' for c in others)
    _with_registered(tx, "update", _arrow(table, columns),
                     f'UPDATE "{table.name}" SET {sets} FROM {{name}} '
                     f'WHERE "{table.name}"."{key}" = {{name}}."{key}"')


def update_rows(tx: Tx, table: sa.Table, key: str, rows: Sequence[dict[str, Any]]) -> None:
    """Set each row's columns on the row with the same ``key``; every row names the same columns."""
    if not rows:
        return
    update_columns(tx, table, key, _rows_to_columns(rows))


def dicts(result: sa.CursorResult[Any], rows: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """A result's rows (or the given ``rows`` of it) as dicts: a third cheaper than ``.mappings()``,
    which the executor pays for every item it claims and every subject it re-checks."""
    keys = list(result.keys())
    return [dict(zip(keys, r)) for r in (result.all() if rows is None else rows)]

