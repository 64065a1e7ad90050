"""Loading a register from a file (CSV, Parquet, XLSX, JSON lines): read by DuckDB, checked, then applied
through the one load path (``store.subjects.apply_load``) in the caller's transaction.

The file is read as text into a temporary table (``store.import_files``), every value is checked against
its field's declared type in SQL, and a problem is refused with the file, the row, the field and the value —
the whole file by default, or, when asked, that row alone (listed). Nothing is written before the checks
pass. Only the refused rows' messages pass through Python; the diff, the evidence and the writes stay in the
database.

On a DuckDB workspace all of it happens on the workspace's own connection, its memory bounded for the
import. On PostgreSQL the file is read and checked by the same SQL on a private DuckDB database
(``store.imports_pg``), so a file is refused with the same words on either backend; the checked rows then
stream into the workspace's transaction (``COPY … FROM STDIN``), where the same load path diffs and writes
them.

Rows are numbered as the file's own viewer shows them: in a CSV or an XLSX sheet the header is row 1, so
the first subject is row 2 (a spreadsheet's row number, a text editor's line); in Parquet and JSON lines the
first record is row 1.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from store.import_files import FileFacts, ImportRefused, RawTable, file_facts, read_raw, sql_literal
from store.imports_pg import copy_into_postgres, private_duckdb
from store.registers import Register
from store.subjects import LoadResult, apply_load, staging_table
from store.tx import Tx

__all__ = ["FileFacts", "ImportOutcome", "ImportRefused", "file_facts", "import_file"]

SQL_CAST = {"integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN", "date": "DATE",
            "timestamp": "TIMESTAMPTZ"}
TYPE_WORDS = {"integer": "a whole number", "number": "a number", "boolean": "true or false",
              "date": "a date like 2026-09-30", "timestamp": "a time like 2026-09-30 14:00:00+00"}
LISTED = 50  # refused rows listed by name; the count is always whole
# DuckDB's memory while an import runs (its buffers spill to the workspace's .tmp folder beyond it, or to the
# private database's folder for a PostgreSQL workspace), so a gigabyte file costs the process a bounded few
# hundred MB; RUNLEDGER_IMPORT_MEMORY overrides it.
IMPORT_MEMORY = os.environ.get("RUNLEDGER_IMPORT_MEMORY", "256MB")
NOTHING = "Nothing was loaded"


@dataclass
class ImportOutcome:
    result: LoadResult
    file: FileFacts
    refused_rows: list[str] = field(default_factory=list)  # "row 7: field 'x' …", the first LISTED of them


# --- the checks ------------------------------------------------------------------------------------------
@dataclass
class Checks:
    """What the declaration refuses in the file, as SQL over its text table: each check a condition on a
    row and the sentence that says why; and the keys more than one row holds."""

    raw: str
    row: str  # the row's number in the file, as SQL
    key: str
    checks: list[tuple[str, str]]  # (where the row is bad, why)

    @property
    def duplicated(self) -> str:
        """A query of the keys more than one row holds."""
        k = f'"{self.key}"'
        return f"SELECT {k} FROM \"{self.raw}\" WHERE {k} IS NOT NULL AND trim({k}) <> '' GROUP BY {k} " \
               "HAVING count(*) > 1"

    def bad(self) -> str:
        """A row any check refuses."""
        return " OR ".join([*(w for w, _ in self.checks), f'"{self.raw}"."{self.key}" IN ({self.duplicated})'])


def _blank(col: str) -> str:
    """No value: missing, or only spaces (a regular expression is cheaper than ``trim`` over a million rows)."""
    return f"({col} IS NULL OR regexp_full_match({col}, '\\s*'))"


def _typed(col: str, ftype: str) -> str:
    """The text as its field's type, NULL where it is not one (DuckDB's casts allow spaces around numbers,
    dates and times, not around true and false)."""
    return f"TRY_CAST({f'trim({col})' if ftype == 'boolean' else col} AS {SQL_CAST[ftype]})"


def _checks(raw: str, row: str, reg: Register, present: list[str], storable_text: bool = False) -> Checks:
    """The declaration's checks; ``storable_text`` adds the one a PostgreSQL workspace needs beyond them (its
    text cannot hold a NUL character, which DuckDB's readers and text take)."""
    checks: list[tuple[str, str]] = []
    for f in present:
        ftype, col = reg.fields[f], f'"{raw}"."{f}"'
        if f == reg.key:
            checks.append((_blank(col), f"'row ' || {row} || ': no {f} (the key of {reg.kind}; every row needs "
                                        "one)'"))
        elif f in reg.spec.required:
            checks.append((_blank(col), f"'row ' || {row} || ': field ''{f}'' is empty; every row of {reg.kind} "
                                        "must hold it'"))
        if ftype in SQL_CAST:
            wrong = f"{_typed(col, ftype)} IS NULL"
            if ftype == "integer":  # DuckDB rounds '2.5' to 3: a whole number must be one ('3.0' and '1e3' are)
                wrong = f"({wrong} OR TRY_CAST({col} AS DOUBLE) <> {_typed(col, ftype)})"
            checks.append((f"({wrong} AND NOT {_blank(col)})",
                           f"'row ' || {row} || ': field ''{f}'' must be {TYPE_WORDS[ftype]}, not ''' || "
                           f"left({col}, 60) || ''''"))
        elif ftype == "string" and storable_text:
            checks.append((f"strpos({col}, chr(0)) > 0",
                           f"'row ' || {row} || ': field ''{f}'' holds a NUL character (byte 0), which the "
                           "workspace''s database cannot store; remove it from the value'"))
    return Checks(raw, row, reg.key, checks)


def _count_problems(tx: Tx, ch: Checks) -> tuple[int, int]:
    """(problems, rows refused) in one pass over the file's rows (a good file, the usual case, costs that),
    each check evaluated once per row."""
    named = [f"{w} AS c{i}" for i, (w, _) in enumerate(ch.checks)]
    named.append(f'"{ch.raw}"."{ch.key}" IN ({ch.duplicated}) AS c{len(ch.checks)}')
    flags = [f"c{i}" for i in range(len(named))]
    total = " + ".join(f"coalesce(sum({c}::INTEGER), 0)" for c in flags)
    problems, bad = tx.conn.exec_driver_sql(
        f"SELECT {total}, count(*) FILTER (WHERE {' OR '.join(flags)}) "
        f'FROM (SELECT {", ".join(named)} FROM "{ch.raw}")').one()
    return int(problems), int(bad)


_ROWS = re.compile(r"appears in rows ((?:\d+, )*)(\d+), (\d+);")


def _problems(tx: Tx, ch: Checks, kind: str, limit: int) -> list[tuple[int, str]]:
    """(row, sentence) of the first ``limit`` problems in row order: each value the declaration refuses, and
    every row whose key another row holds too (which of them is right cannot be told, so each is refused)."""
    raw, row, k = f'"{ch.raw}"', ch.row, f'"{ch.key}"'
    parts = [f"SELECT {row} AS r, {why} AS why FROM {raw} WHERE {where}" for where, why in ch.checks]
    parts.append(f"SELECT {row} AS r, 'row ' || {row} || ': key ''' || {raw}.{k} || ''' appears in rows ' || "
                 f"d.rows || '; each {kind} key may appear once' AS why FROM {raw} JOIN "
                 f"(SELECT {k}, string_agg(CAST({row} AS VARCHAR), ', ' ORDER BY {row}) AS rows FROM {raw} "
                 f"WHERE {k} IN ({ch.duplicated}) GROUP BY {k}) d ON d.{k} = {raw}.{k}")
    sql = " UNION ALL ".join(parts) + f" ORDER BY 1, 2 LIMIT {limit}"
    # "rows 2, 3, 9" said as "rows 2, 3 and 9"
    return [(int(r), _ROWS.sub(lambda m: f"appears in rows {m.group(1)}{m.group(2)} and {m.group(3)};", why))
            for r, why in tx.conn.exec_driver_sql(sql).all()]


@contextlib.contextmanager
def _bounded_memory(tx: Tx) -> Iterator[None]:
    """DuckDB's memory limited while the import runs. The setting is the database's, for every connection
    of the process: set and restored on a connection of its own (a cursor), so that a statement that failed
    and aborted the import's transaction does not keep the limit in place."""
    if tx.conn.dialect.name != "duckdb":
        yield
        return
    with tx.conn.engine.connect() as own:
        before = own.exec_driver_sql("SELECT current_setting('memory_limit')").scalar_one()
        own.exec_driver_sql(f"SET memory_limit = {sql_literal(IMPORT_MEMORY)}")
        try:
            yield
        finally:
            # RESET restores the default exactly (the setting reads back rounded: "18.7 GiB"); a limit that
            # someone set is set again, to its rounded value.
            own.exec_driver_sql("RESET memory_limit")
            if own.exec_driver_sql("SELECT current_setting('memory_limit')").scalar_one() != before:
                own.exec_driver_sql(f"SET memory_limit = {sql_literal(before)}")


def import_file(tx: Tx, reg: Register, path: Path, *, actor: str, fmt: str | None = None, mode: str = "upsert",
                skip_bad_rows: bool = False, ignore_extra_columns: bool = False, origin: str = "file",
                source: str | None = None) -> ImportOutcome:
    """Load ``path`` into the register in this transaction; ``ImportRefused`` says why not (nothing loaded).
    ``origin``/``source`` name where the rows came from when the file only carries them (a SQL source's
    query result: origin ``sql``, source the URL's variable)."""
    facts = file_facts(path, fmt)
    options = _Options(mode, skip_bad_rows, ignore_extra_columns, origin, source)
    if tx.conn.dialect.name == "duckdb":
        with _bounded_memory(tx):
            return _import(tx, tx, reg, path, facts, actor, options)
    with private_duckdb(IMPORT_MEMORY, tx.now) as reader:
        return _import(tx, reader, reg, path, facts, actor, options)


@dataclass(frozen=True)
class _Options:
    mode: str
    skip_bad_rows: bool
    ignore_extra_columns: bool
    origin: str
    source: str | None


def _check_columns(reader: Tx, raw: RawTable, reg: Register, path: Path,
                   ignore_extra_columns: bool) -> tuple[list[str], int]:
    """The declared fields the file holds, and its number of rows; a file without rows, or whose columns do
    not fit the declaration, is refused."""
    rows = int(reader.conn.exec_driver_sql(f'SELECT count(*) FROM "{raw.name}"').scalar_one())
    if rows == 0:
        raise ImportRefused(f"{path.name} has a header but no rows; nothing was loaded. Export it again with its "
                            "rows (a file with no rows never withdraws a register's subjects)")
    columns = raw.columns
    if reg.key not in columns:
        raise ImportRefused(f"{path.name} has no column '{reg.key}', the key of {reg.kind}; its columns are "
                            f"{', '.join(columns)}. Add the column, or name the one that holds each subject's key "
                            f"'{reg.key}'. {NOTHING}")
    unknown = [col for col in columns if col not in reg.fields]
    if unknown and not ignore_extra_columns:
        raise ImportRefused(f"{path.name} has column(s) {', '.join(unknown)} that {reg.kind} does not declare "
                            f"(its fields: {', '.join(reg.fields)}); declare them in the register's file, or "
                            f"pass --ignore-extra-columns to load the rest. {NOTHING}")
    missing_required = [f for f in reg.spec.required if f not in columns]
    if missing_required:
        raise ImportRefused(f"{path.name} has no column {', '.join(missing_required)}, which every row of "
                            f"{reg.kind} must hold; add it. {NOTHING}")
    return [f for f in reg.fields if f in columns], rows


def _import(tx: Tx, reader: Tx, reg: Register, path: Path, facts: FileFacts, actor: str,
            options: _Options) -> ImportOutcome:
    """Read and check the file on ``reader`` (DuckDB: the workspace's transaction itself, or the private
    database a PostgreSQL import reads through), stage the rows that pass in ``tx``, and load them."""
    raw = read_raw(reader, path, facts.format)
    present, rows = _check_columns(reader, raw, reg, path, options.ignore_extra_columns)
    checks = _checks(raw.name, raw.row, reg, present, storable_text=reader is not tx)
    problems, bad = _count_problems(reader, checks)
    listed = _problems(reader, checks, reg.kind, LISTED if options.skip_bad_rows else 1) if problems else []
    if problems and not options.skip_bad_rows:
        more = problems - 1
        also = f" (and {more:,} more problem{'s' if more > 1 else ''})" if more > 0 else ""
        raise ImportRefused(f"{path.name}: {listed[0][1]}{also}. {NOTHING}; correct the file, or pass "
                            "--skip-bad-rows to load the other rows")
    if bad == rows:
        raise ImportRefused(f"{path.name}: every row was refused ({rows:,}); the first: {listed[0][1]}. "
                            f"{NOTHING}; correct the file")
    staged = staging_table(reg)
    exprs = ", ".join((_typed(f'"{f}"', reg.fields[f]) if reg.fields[f] in SQL_CAST else f'"{f}"') + f' AS "{f}"'
                      for f in present)
    skip = f" WHERE NOT ({checks.bad()})" if bad else ""
    _fill(tx, reader, staged, ["_row", *present], f'SELECT {raw.row} AS _row, {exprs} FROM "{raw.name}"{skip}')
    kept = None
    if bad and options.mode == "replace":  # a key on a refused row is still listed: it is not withdrawn
        kept = sa.Table(f"{raw.name}_keys", sa.MetaData(), sa.Column("key", reg.table.c[reg.key].type),
                        prefixes=["TEMPORARY"])
        key_type = "BIGINT" if reg.fields[reg.key] == "integer" else "VARCHAR"
        _fill(tx, reader, kept, ["key"], f'SELECT DISTINCT TRY_CAST("{reg.key}" AS {key_type}) AS key '
                                         f'FROM "{raw.name}" WHERE "{reg.key}" IS NOT NULL')
    reader.conn.exec_driver_sql(f'DROP TABLE "{raw.name}"')
    refused_rows = [why for _, why in listed]
    result = apply_load(tx, reg, staged, origin=options.origin, source=options.source or facts.name, actor=actor,
                        mode=options.mode, only=present, refused=bad, listed_keys=kept,
                        meta={"format": facts.format, "bytes": facts.bytes, "sha256": facts.sha256,
                              "refused_rows": refused_rows or None})
    if kept is not None:
        kept.drop(tx.conn)
    return ImportOutcome(result, facts, refused_rows)


def _fill(tx: Tx, reader: Tx, table: sa.Table, columns: list[str], query: str) -> None:
    """Create ``table`` in the workspace's transaction and fill it with the rows of ``query`` on the
    reader: in one statement when the reader is the workspace itself, else streamed into PostgreSQL."""
    table.create(tx.conn)
    if reader is tx:
        names = ", ".join(f'"{c}"' for c in columns)
        tx.conn.exec_driver_sql(f'INSERT INTO "{table.name}" ({names}) {query}')
    else:
        copy_into_postgres(reader, query, tx, table, columns)
