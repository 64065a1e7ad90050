"""Group-commit fast paths: many rows in one statement.

On DuckDB, rows travel as NumPy object arrays registered on the transaction's own connection, and DuckDB
converts the Python values itself (measured as fast as building Arrow arrays in Python and appending them,
without the per-value datetime work, and without ``pyarrow``, which ``pa.array`` drags ``pandas`` in with:
~95 MB of a 100,000-item run's peak RSS). On PostgreSQL, appends travel by ``COPY … FROM STDIN`` and updates
as one ``UPDATE … FROM unnest(arrays)`` (SQLAlchemy's ``executemany`` spent most of a batch waiting on one
round of the protocol per row). A few rows go through SQLAlchemy on either. Either way the rows land in the
caller's transaction.

Callers hand rows over column by column (``append_columns``): one Python list per column is several times
cheaper to build than a dict per row. A column whose every row holds the same value is passed as
``same(value)`` and travels as one bound parameter, not as a list.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from store.tx import Tx

if TYPE_CHECKING:  # pyarrow is imported only by the Arrow entry points, which the engine does not use
    import pyarrow as pa

_FAST_PATH_MIN_ROWS = 32
_names = itertools.count()


class Same:
    """A column whose every row holds ``value``."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def same(value: Any) -> Same:
    return Same(value)


Columns = Mapping[str, "Sequence[Any] | Same"]


def listed(values: Sequence[Any] | Same) -> Sequence[Any]:
    """A column that must hold its own values (a key, the outcomes), not one value for every row."""
    if isinstance(values, Same):
        raise TypeError("this column must list a value per row, not one value for all")
    return values


_UTC = dt.UTC


def _length(columns: Columns) -> int:
    for values in columns.values():
        if not isinstance(values, Same):
            return len(values)
    return 0


def _expanded(columns: Columns, n: int) -> dict[str, Sequence[Any]]:
    return {c: [v.value] * n if isinstance(v, Same) else v for c, v in columns.items()}


def _rows_to_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    return {c: [r.get(c) for r in rows] for c in rows[0].keys()}


def _columns_to_rows(columns: Columns) -> list[dict[str, Any]]:
    full = _expanded(columns, _length(columns))
    names = list(full)
    return [dict(zip(names, values, strict=True)) for values in zip(*(full[c] for c in names), strict=True)]


def _use_fast_path(tx: Tx, n: int) -> bool:
    return tx.conn.dialect.name == "duckdb" and n >= _FAST_PATH_MIN_ROWS


def _use_pg_path(tx: Tx, n: int) -> bool:
    return tx.conn.dialect.name == "postgresql" and n >= _FAST_PATH_MIN_ROWS


def _pg_type(col: sa.Column) -> str:
    """The PostgreSQL type an array of the column's values is cast to."""
    t = col.type
    if isinstance(t, sa.DateTime):
        return "timestamptz" if t.timezone else "timestamp"
    if isinstance(t, sa.Date):
        return "date"
    if isinstance(t, sa.Boolean):
        return "boolean"
    if isinstance(t, sa.Integer):
        return "bigint"
    if isinstance(t, sa.Float):
        return "double precision"
    return "text"


def _pg_values(values: Sequence[Any], col: sa.Column) -> list[Any]:
    """Naive datetimes bound for a timezone-aware column are UTC (PostgreSQL would take the session's zone)."""
    if _is_aware_ts(col):
        return [v.replace(tzinfo=_UTC) if v is not None and v.tzinfo is None else v for v in values]
    return list(values)


def _pg_copy(tx: Tx, table: sa.Table, columns: Columns) -> None:
    """Append by ``COPY … FROM STDIN`` on the transaction's own connection."""
    full = _expanded(columns, _length(columns))
    names = list(full)
    cols = ", ".join(f'"{c}"' for c in names)
    values = [_pg_values(full[c], table.c[c]) for c in names]
    with tx.raw.cursor() as cur, cur.copy(f'COPY "{table.name}" ({cols}) FROM STDIN') as copy:
        for row in zip(*values, strict=True):
            copy.write_row(row)


def _pg_update(tx: Tx, table: sa.Table, key: str, columns: Columns, guard: tuple[str, Sequence[str]] | None,
               fence: tuple[str, str] | None) -> list[Any]:
    """One ``UPDATE … FROM unnest(…)``: the keys it updated. A guard and a fence are in its WHERE, which
    PostgreSQL checks again on the newest version of a row another transaction changed meanwhile."""
    listed_cols = [c for c, v in columns.items() if not isinstance(v, Same)]
    if key not in listed_cols:
        raise TypeError("the key column must list a value per row")
    arrays = ", ".join(f"%s::{_pg_type(table.c[c])}[]" for c in listed_cols)
    names = ", ".join(f'"{c}"' for c in listed_cols)
    sets, params = [], [_pg_values(listed(columns[c]), table.c[c]) for c in listed_cols]
    for c, v in columns.items():
        if c == key:
            continue
        if isinstance(v, Same):
            sets.append(f'"{c}" = %s::{_pg_type(table.c[c])}')
        else:
            sets.append(f'"{c}" = v."{c}"')
    set_params = [_param(v.value, table.c[c]) for c, v in columns.items() if c != key and isinstance(v, Same)]
    where = f'"{table.name}"."{key}" = v."{key}"'
    tail: list[Any] = []
    if guard is not None:
        where += f' AND "{table.name}"."{guard[0]}" = ANY(%s)'
        tail.append(list(guard[1]))
    if fence is not None:
        where += f' AND "{table.name}"."{fence[0]}" = %s'
        tail.append(fence[1])
    sql = (f'UPDATE "{table.name}" SET {", ".join(sets)} FROM unnest({arrays}) AS v({names}) WHERE {where} '
           f'RETURNING "{table.name}"."{key}"')
    with tx.raw.cursor() as cur:
        cur.execute(sql, [*set_params, *params, *tail])
        return [r[0] for r in cur.fetchall()]


def _is_aware_ts(col: sa.Column) -> bool:
    return isinstance(col.type, sa.DateTime) and bool(col.type.timezone)


def _values(values: Sequence[Any], col: sa.Column) -> np.ndarray:
    """One column as a NumPy object array. DuckDB refuses a column mixing naive and aware datetimes, so
    naive values bound for a timezone-aware column are taken as UTC (as the Arrow path took them)."""
    if _is_aware_ts(col) and any(v is not None and v.tzinfo is None for v in values):
        values = [v.replace(tzinfo=_UTC) if v is not None and v.tzinfo is None else v for v in values]
    return np.fromiter(values, dtype=object, count=len(values))


def _param(value: Any, col: sa.Column) -> Any:
    if _is_aware_ts(col) and value is not None and value.tzinfo is None:
        return value.replace(tzinfo=_UTC)
    return value


def _cast(col: sa.Column) -> str:
    """The DuckDB type an incoming value is cast to, so that an object column (or a NULL parameter)
    whose values DuckDB would type differently lands as the table's type."""
    t = col.type
    if isinstance(t, sa.DateTime):
        return "TIMESTAMPTZ" if t.timezone else "TIMESTAMP"
    if isinstance(t, sa.Date):
        return "DATE"
    if isinstance(t, sa.Boolean):
        return "BOOLEAN"
    if isinstance(t, sa.Integer):
        return "BIGINT"
    if isinstance(t, sa.Float):
        return "DOUBLE"
    return "VARCHAR"


def _source(table: sa.Table, columns: Columns, name: str) -> tuple[dict[str, str], dict[str, np.ndarray],
                                                                   list[Any]]:
    """For each column, the SQL expression that reads it (from the registered arrays, or a parameter)."""
    exprs: dict[str, str] = {}
    arrays: dict[str, np.ndarray] = {}
    params: list[Any] = []
    for c, values in columns.items():
        col = table.c[c]
        if isinstance(values, Same):
            exprs[c] = f"CAST(? AS {_cast(col)})"
            params.append(_param(values.value, col))
        else:
            exprs[c] = f'CAST({name}."{c}" AS {_cast(col)})'
            arrays[c] = _values(values, col)
    return exprs, arrays, params


def _run_registered(tx: Tx, name: str, data: Any, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """Run ``sql`` (which reads the registered ``data`` as ``name``) on the transaction's own connection;
    returns its result rows (an INSERT's or UPDATE's count, or what a RETURNING clause names)."""
    raw = tx.raw
    raw.complete()  # duckdb 2.0: a statement's unread result (an UPDATE's count) blocks the next one
    raw.register(name, data)
    try:
        raw.execute(sql, list(params)) if params else raw.execute(sql)
        rows = raw.fetchall()
    except BaseException:
        # The failed statement aborted the transaction, so unregistering fails too: raise the cause (a
        # constraint the rows broke), not "transaction is aborted".
        with contextlib.suppress(Exception):
            raw.unregister(name)
        raise
    raw.unregister(name)
    return rows


def append_columns(tx: Tx, table: sa.Table, columns: Columns) -> None:
    """Append rows given as equal-length columns (name → values, or ``same(value)``)."""
    n = _length(columns)
    if not n:
        return
    if _use_pg_path(tx, n):
        _pg_copy(tx, table, columns)
        return
    if not _use_fast_path(tx, n):
        tx.conn.execute(table.insert(), _columns_to_rows(columns))
        return
    name = f"_append_{next(_names)}"
    exprs, arrays, params = _source(table, columns, name)
    cols = ", ".join(f'"{c}"' for c in exprs)
    _run_registered(tx, name, arrays, f'INSERT INTO "{table.name}" ({cols}) SELECT {", ".join(exprs.values())} '
                                      f"FROM {name}", params)


def append_rows(tx: Tx, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        return
    if not _use_fast_path(tx, len(rows)) and not _use_pg_path(tx, len(rows)):
        tx.conn.execute(table.insert(), [dict(r) for r in rows])
        return
    append_columns(tx, table, _rows_to_columns(rows))


def update_columns(tx: Tx, table: sa.Table, key: str, columns: Columns,
                   guard: tuple[str, Sequence[str]] | None = None, fence: tuple[str, str] | None = None
                   ) -> set[Any]:
    """Set each row's columns on the row with the same ``key`` (a column of ``columns``): one
    ``UPDATE … FROM`` the registered columns. ``guard`` (column, allowed values) updates only rows still
    holding one of the values — a transition checked against the stored state in the write itself — and
    the keys it kept from the update are returned (empty without a guard). ``fence`` (column, value) with a
    guard keeps from the update, the same way, rows whose column no longer holds the value (an item another
    worker took over)."""
    n = _length(columns)
    if not n:
        return set()
    others = [c for c in columns if c != key]
    keys = listed(columns[key])
    if _use_pg_path(tx, n):
        if guard is None and fence is not None:
            raise TypeError("a fence applies with a guard")
        updated = _pg_update(tx, table, key, columns, guard, fence)
        return set() if guard is None else set(keys) - set(updated)
    if not _use_fast_path(tx, n):
        kept: set[Any] = set()
        if guard is not None:  # a few rows: read which the guard keeps, then update only the others
            # On PostgreSQL, other processes write too: the rows are locked as they are read (reading their
            # newest committed state), so none can move between this check and the update below.
            found = sa.select(table.c[key], table.c[guard[0]], *([table.c[fence[0]]] if fence else [])).where(
                table.c[key].in_(list(keys)))
            if tx.conn.dialect.name == "postgresql":
                found = found.with_for_update()
            present: set[Any] = set()
            for row in tx.conn.execute(found).all():
                present.add(row[0])
                if row[1] not in guard[1] or (fence is not None and row[2] != fence[1]):
                    kept.add(row[0])
            kept |= set(keys) - present  # rows that are gone are kept from it too
        rows = [r for r in _columns_to_rows(columns) if r[key] not in kept]
        if rows:
            stmt = table.update().where(table.c[key] == sa.bindparam("_k")).values(
                **{c: sa.bindparam(f"_{c}") for c in others})
            tx.conn.execute(stmt, [{"_k": r[key], **{f"_{c}": r[c] for c in others}} for r in rows])
        return kept
    name = f"_update_{next(_names)}"
    exprs, arrays, params = _source(table, {c: columns[c] for c in others}, name)
    arrays[key] = _values(keys, table.c[key])
    sets = ", ".join(f'"{c}" = {e}' for c, e in exprs.items())
    guarded, returning = "", ""
    fenced: tuple[str, ...] = ()
    if guard is not None:
        guarded = f' AND "{table.name}"."{guard[0]}" IN ({", ".join("?" for _ in guard[1])})'
        returning = f' RETURNING "{table.name}"."{key}"'
        if fence is not None:
            guarded += f' AND "{table.name}"."{fence[0]}" = ?'
            fenced = (fence[1],)
    # The keys' range, besides the join: the table is read only where it can hold them (zone maps skip
    # the rest) instead of joining every row of it — a workspace holds millions of items, a batch 4,000.
    # (DuckDB orders strings by their UTF-8 bytes, which is the order of min and max here.)
    updated = _run_registered(tx, name, arrays, f'UPDATE "{table.name}" SET {sets} FROM {name} '
                                             f'WHERE "{table.name}"."{key}" BETWEEN ? AND ? '
                                             f'AND "{table.name}"."{key}" = {name}."{key}"{guarded}{returning}',
                           [*params, min(keys), max(keys), *(guard[1] if guard else ()), *fenced])
    if guard is None:
        return set()
    return set(keys) - {row[0] for row in updated}


def update_rows(tx: Tx, table: sa.Table, key: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Set each row's columns on the row with the same ``key``; every row names the same columns."""
    if not rows:
        return
    update_columns(tx, table, key, _rows_to_columns(rows))


def dicts(result: sa.CursorResult[Any], rows: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """A result's rows (or the given ``rows`` of it) as dicts: a third cheaper than ``.mappings()``."""
    keys = list(result.keys())
    return [dict(zip(keys, r, strict=True)) for r in (result.all() if rows is None else rows)]


def columns_of(result: sa.CursorResult[Any]) -> dict[str, list[Any]]:
    """A result as columns (name → values), with no object per row: what a batch is worked from."""
    keys = list(result.keys())
    rows = result.all()
    if not rows:
        return {k: [] for k in keys}
    return dict(zip(keys, map(list, zip(*rows, strict=True)), strict=True))


# --- Arrow ---------------------------------------------------------------------------------------
# Kept for callers that already hold Arrow data; importing pyarrow is left to them.
def _arrow_type(col: sa.Column) -> pa.DataType:
    import pyarrow as pa

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


def _array(values: Sequence[Any], typ: pa.DataType) -> pa.Array:
    import pyarrow as pa

    if isinstance(typ, pa.TimestampType) and typ.tz is not None:
        # pyarrow converts an aware datetime ~15x slower than a naive one: hand it naive UTC values.
        naive = [v if v is None or v.tzinfo is None else
                 (v if v.tzinfo is _UTC else v.astimezone(_UTC)).replace(tzinfo=None) for v in values]
        return pa.array(naive, type=pa.timestamp("us")).cast(typ)
    return pa.array(values, type=typ)


def pack(table: sa.Table, columns: Columns) -> pa.Table:
    """Columns as a compact Arrow table typed for ``table`` (``append_packed`` appends it)."""
    import pyarrow as pa

    full = _expanded(columns, _length(columns))
    return pa.Table.from_arrays([_array(full[c], _arrow_type(table.c[c])) for c in full], names=list(full))


def append_packed(tx: Tx, table: sa.Table, data: pa.Table) -> None:
    if not data.num_rows:
        return
    if _use_pg_path(tx, data.num_rows):
        _pg_copy(tx, table, data.to_pydict())
        return
    if not _use_fast_path(tx, data.num_rows):
        tx.conn.execute(table.insert(), data.to_pylist())
        return
    name = f"_packed_{next(_names)}"
    cols = ", ".join(f'"{c}"' for c in data.column_names)
    _run_registered(tx, name, data, f'INSERT INTO "{table.name}" ({cols}) SELECT {cols} FROM {name}')
