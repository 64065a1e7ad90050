"""Loading a register from a file (CSV, Parquet, XLSX, JSON lines): read by the database, checked, then
applied through the one load path (``store.subjects.apply_load``) in the caller's transaction.

The file is read as text into a temporary table (the database streams it: a gigabyte never sits in
Python), every value is checked against its field's declared type in SQL, and a problem is refused with the
row, the field and the value — the whole file by default, or, when asked, that row alone (listed). Nothing
is written before the checks pass.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from store.bulk import append_rows
from store.registers import Register
from store.subjects import LoadResult, apply_load, staging_table
from store.tx import Tx

FORMATS = {".csv": "csv", ".parquet": "parquet", ".xlsx": "xlsx", ".jsonl": "jsonl", ".ndjson": "jsonl"}
SQL_CAST = {"integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN", "date": "DATE",
            "timestamp": "TIMESTAMPTZ"}
TYPE_WORDS = {"integer": "a whole number", "number": "a number", "boolean": "true or false",
              "date": "a date like 2026-09-30", "timestamp": "a time like 2026-09-30 14:00:00+00"}
LISTED = 50  # refused rows listed by name; the count is always whole
_names = itertools.count()


class ImportRefused(ValueError):
    """The file cannot be loaded as it is; the message says what is wrong and what to do. Nothing was loaded."""


@dataclass
class FileFacts:
    name: str
    bytes: int
    sha256: str
    format: str


@dataclass
class ImportOutcome:
    result: LoadResult
    file: FileFacts
    refused_rows: list[str] = field(default_factory=list)  # "row 7: field 'x' …", the first LISTED of them


def file_facts(path: Path, fmt: str | None) -> FileFacts:
    """Name, size, SHA-256 (streamed) and format (by extension unless given) of the file to load."""
    if not path.is_file():
        raise ImportRefused(f"there is no file {path}; check the path")
    chosen = fmt or FORMATS.get(path.suffix.lower())
    if chosen is None or chosen not in FORMATS.values():
        raise ImportRefused(f"{path.name}: cannot tell the format from the extension {path.suffix or '(none)'!r}; "
                            f"name the file .csv, .parquet, .xlsx or .jsonl, or pass --format "
                            f"({', '.join(sorted(set(FORMATS.values())))})")
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    if size == 0:
        raise ImportRefused(f"{path.name} is empty; nothing was loaded")
    return FileFacts(path.name, size, digest.hexdigest(), chosen)


def _raw_from_duckdb(tx: Tx, path: Path, fmt: str) -> str:
    """The file as a temporary table of text columns, numbered by row (``_row``), read by DuckDB."""
    name = f"_raw_{next(_names)}"
    reader = {"csv": "read_csv(?, all_varchar = true, header = true)", "parquet": "read_parquet(?)",
              "jsonl": "read_json(?, format = 'newline_delimited', records = true)"}[fmt]
    raw = tx.raw
    raw.complete()
    try:
        raw.execute(f'CREATE TEMPORARY TABLE "{name}" AS SELECT * FROM {reader}', [str(path)])
    except Exception as exc:  # noqa: BLE001 - the reader's message says what it could not read
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ImportRefused(f"{path.name} could not be read as {fmt.upper()} ({first}); check the file's "
                            "format, or pass --format") from None
    columns = [r[0] for r in raw.execute(f'DESCRIBE "{name}"').fetchall()]
    typed = f'"{name}_t"'
    text_columns = ", ".join(f'CAST("{c}" AS VARCHAR) AS "{c}"' for c in columns)
    # Row numbers in file order (DuckDB keeps insertion order), counted from 1 for the first data row.
    raw.execute(f'CREATE TEMPORARY TABLE {typed} AS SELECT row_number() OVER () AS _row, {text_columns} '
                f'FROM "{name}"')
    raw.execute(f'DROP TABLE "{name}"')
    return f"{name}_t"


def _raw_from_xlsx(tx: Tx, path: Path) -> str:
    """An XLSX sheet (the first) as text columns, read row by row (openpyxl's streaming reader)."""
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl's message names the problem
        raise ImportRefused(f"{path.name} could not be read as XLSX ({exc}); check the file, or pass --format") \
            from None
    rows = book.worksheets[0].iter_rows(values_only=True)
    header = next(rows, None)
    if not header or not any(h is not None for h in header):
        raise ImportRefused(f"{path.name} has no header row; the first row must name the columns")
    columns = [str(h).strip() for h in header]
    name = f"_raw_{next(_names)}_t"
    table = sa.Table(name, sa.MetaData(), sa.Column("_row", sa.BigInteger),
                     *(sa.Column(c, sa.String) for c in columns), prefixes=["TEMPORARY"])
    table.create(tx.conn)
    batch: list[dict[str, Any]] = []
    for n, values in enumerate(rows, 1):
        batch.append({"_row": n, **{c: None if v is None else str(v) for c, v in zip(columns, values, strict=False)}})
        if len(batch) == 10_000:
            append_rows(tx, table, batch)
            batch = []
    append_rows(tx, table, batch)
    return name


def _problems(tx: Tx, raw: str, reg: Register, present: list[str], limit: int | None) -> list[tuple[int, str]]:
    """(row, sentence) for each value the declaration refuses, in row order (at most ``limit``)."""
    checks = []
    for f in present:
        ftype = reg.fields[f]
        col = f'"{f}"'
        if f == reg.key:
            checks.append(f"SELECT _row, 'row ' || _row || ': no {f} (the key of {reg.kind}; every row needs one)' "
                          f"AS why FROM \"{raw}\" WHERE {col} IS NULL OR trim({col}) = ''")
        elif f in reg.spec.required:
            checks.append(f"SELECT _row, 'row ' || _row || ': field ''{f}'' is empty; every row of {reg.kind} must "
                          f"hold it' AS why FROM \"{raw}\" WHERE {col} IS NULL OR trim({col}) = ''")
        if ftype in SQL_CAST:
            checks.append(f"SELECT _row, 'row ' || _row || ': field ''{f}'' must be {TYPE_WORDS[ftype]}, not ' || "
                          f"'''' || left({col}, 60) || '''' AS why FROM \"{raw}\" WHERE {col} IS NOT NULL AND "
                          f"trim({col}) <> '' AND TRY_CAST(trim({col}) AS {SQL_CAST[ftype]}) IS NULL")
    if not checks:
        return []
    sql = " UNION ALL ".join(checks) + " ORDER BY 1, 2" + (f" LIMIT {limit}" if limit else "")
    return [(int(r[0]), str(r[1])) for r in tx.conn.exec_driver_sql(sql).all()]


def _duplicates(tx: Tx, raw: str, key: str, kind: str) -> list[tuple[int, str]]:
    sql = (f'SELECT min(_row), \'key \' || "{key}" || \' appears in rows \' || string_agg(CAST(_row AS VARCHAR), '
           f'\', \' ORDER BY _row) || \'; each {kind} key may appear once\' FROM "{raw}" WHERE "{key}" IS NOT NULL '
           f'GROUP BY "{key}" HAVING count(*) > 1 ORDER BY 1')
    return [(int(r[0]), str(r[1])) for r in tx.conn.exec_driver_sql(sql).all()]


def import_file(tx: Tx, reg: Register, path: Path, *, actor: str, fmt: str | None = None, mode: str = "upsert",
                skip_bad_rows: bool = False, ignore_extra_columns: bool = False, origin: str = "file",
                source: str | None = None) -> ImportOutcome:
    """Load ``path`` into the register in this transaction; ``ImportRefused`` says why not (nothing loaded).
    ``origin``/``source`` name where the rows came from when the file only carries them (a SQL source's
    query result: origin ``sql``, source the URL's variable)."""
    facts = file_facts(path, fmt)
    raw = _raw_from_xlsx(tx, path) if facts.format == "xlsx" else _raw_from_duckdb(tx, path, facts.format)
    columns = [c for c in tx.conn.execute(sa.text(f'SELECT * FROM "{raw}" LIMIT 0')).keys() if c != "_row"]
    rows = int(tx.conn.exec_driver_sql(f'SELECT count(*) FROM "{raw}"').scalar_one())
    if rows == 0:
        raise ImportRefused(f"{path.name} has a header but no rows; nothing was loaded")
    if reg.key not in columns:
        raise ImportRefused(f"{path.name} has no column '{reg.key}', the key of {reg.kind}; its columns are "
                            f"{', '.join(columns)}")
    unknown = [c for c in columns if c not in reg.fields]
    if unknown and not ignore_extra_columns:
        raise ImportRefused(f"{path.name} has column(s) {', '.join(unknown)} that {reg.kind} does not declare "
                            f"(its fields: {', '.join(reg.fields)}); declare them in the register's file, or "
                            "pass --ignore-extra-columns to load the rest")
    missing_required = [f for f in reg.spec.required if f not in columns]
    if missing_required:
        raise ImportRefused(f"{path.name} has no column {', '.join(missing_required)}, which every row of "
                            f"{reg.kind} must hold")
    present = [f for f in reg.fields if f in columns]
    problems = sorted(_problems(tx, raw, reg, present, None if skip_bad_rows else 1)
                      + _duplicates(tx, raw, reg.key, reg.kind))
    if problems and not skip_bad_rows:
        row, why = problems[0]
        more = f" (and {len(problems) - 1:,} more problems)" if len(problems) > 1 else ""
        raise ImportRefused(f"{path.name}: {why}{more}. Nothing was loaded; correct the file, or pass "
                            "--skip-bad-rows to load the other rows")
    bad_rows = sorted({r for r, _ in problems})
    staged = staging_table(reg)
    staged.create(tx.conn)
    exprs = ", ".join(
        (f'TRY_CAST(NULLIF(trim("{f}"), \'\') AS {SQL_CAST[reg.fields[f]]})' if reg.fields[f] in SQL_CAST
         else f'"{f}"') + f' AS "{f}"' for f in present)
    skip = ""
    if bad_rows:
        tx.conn.exec_driver_sql(f'CREATE TEMPORARY TABLE "{raw}_bad" (_row BIGINT)')
        tx.conn.execute(sa.text(f'INSERT INTO "{raw}_bad" VALUES (:r)'), [{"r": r} for r in bad_rows])
        skip = f' WHERE _row NOT IN (SELECT _row FROM "{raw}_bad")'
    names = ", ".join(f'"{f}"' for f in present)
    tx.conn.exec_driver_sql(f'INSERT INTO "{staged.name}" (_row, {names}) SELECT _row, {exprs} FROM "{raw}"{skip}')
    listed = None
    if bad_rows and mode == "replace":  # a key on a refused row is still listed: it is not withdrawn
        listed = sa.Table(f"{raw}_keys", sa.MetaData(), sa.Column("key", reg.table.c[reg.key].type),
                          prefixes=["TEMPORARY"])
        key_type = "BIGINT" if reg.fields[reg.key] == "integer" else "VARCHAR"
        tx.conn.exec_driver_sql(f'CREATE TEMPORARY TABLE "{listed.name}" AS SELECT DISTINCT '
                                f'TRY_CAST("{reg.key}" AS {key_type}) AS key FROM "{raw}" '
                                f'WHERE "{reg.key}" IS NOT NULL')
    tx.conn.exec_driver_sql(f'DROP TABLE "{raw}"')
    if bad_rows:
        tx.conn.exec_driver_sql(f'DROP TABLE "{raw}_bad"')
    result = apply_load(tx, reg, staged, origin=origin, source=source or facts.name, actor=actor, mode=mode,
                        only=present, refused=len(bad_rows), listed_keys=listed,
                        meta={"format": facts.format, "bytes": facts.bytes, "sha256": facts.sha256,
                              "refused_rows": [why for _, why in problems[:LISTED]] or None})
    if listed is not None:
        tx.conn.exec_driver_sql(f'DROP TABLE "{listed.name}"')
    return ImportOutcome(result, facts, [why for _, why in problems[:LISTED]])
