"""Loading a register from a file (CSV, Parquet, XLSX, JSON lines): read by the database, checked, then
applied through the one load path (``store.subjects.apply_load``) in the caller's transaction.

The file is read as text into a temporary table by the database (a gigabyte streams through DuckDB, whose
memory is bounded for the import, and never sits in Python), every value is checked against its field's
declared type in SQL, and a problem is refused with the file, the row, the field and the value — the whole
file by default, or, when asked, that row alone (listed). Nothing is written before the checks pass. Only
the refused rows' messages pass through Python; the diff, the evidence and the writes stay in the database.

Rows are numbered as the file's own viewer shows them: in a CSV or an XLSX sheet the header is row 1, so
the first subject is row 2 (a spreadsheet's row number, a text editor's line); in Parquet and JSON lines the
first record is row 1.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import hashlib
import itertools
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from store.bulk import append_rows
from store.registers import Register
from store.subjects import LoadResult, apply_load, staging_table
from store.tx import Tx

FORMATS = {".csv": "csv", ".parquet": "parquet", ".xlsx": "xlsx", ".jsonl": "jsonl", ".ndjson": "jsonl"}
FORMAT_NAMES = {"csv": "CSV", "parquet": "Parquet", "xlsx": "XLSX", "jsonl": "JSON lines"}
A_FORMAT = {"csv": "a CSV file", "parquet": "a Parquet file", "xlsx": "an XLSX workbook", "jsonl": "a JSON lines file"}
SQL_CAST = {"integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN", "date": "DATE",
            "timestamp": "TIMESTAMPTZ"}
TYPE_WORDS = {"integer": "a whole number", "number": "a number", "boolean": "true or false",
              "date": "a date like 2026-09-30", "timestamp": "a time like 2026-09-30 14:00:00+00"}
LISTED = 50  # refused rows listed by name; the count is always whole
# DuckDB's memory while an import runs (its buffers spill to the workspace's .tmp folder beyond it), so a
# gigabyte file costs the process a bounded few hundred MB; RUNLEDGER_IMPORT_MEMORY overrides it.
IMPORT_MEMORY = os.environ.get("RUNLEDGER_IMPORT_MEMORY", "256MB")
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


# --- the file: its facts, and what it really holds --------------------------------------------------------
def _holds(head: bytes) -> tuple[str | None, str]:
    """(format, words) for what the file's first bytes say it is, whatever its name says."""
    if head.startswith(b"PAR1"):
        return "parquet", "is a Parquet file"
    if head.startswith(b"PK\x03\x04"):
        return "xlsx", "is a ZIP archive, such as an XLSX workbook"
    if b"\x00" in head:
        return None, "holds binary data"
    try:
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
    except UnicodeDecodeError:
        return None, "holds text that is not UTF-8"
    if text.lstrip().startswith("{"):
        return "jsonl", "holds JSON lines"
    return "csv", "holds text that looks like CSV"


def file_facts(path: Path, fmt: str | None) -> FileFacts:
    """Name, size, SHA-256 (streamed) and format (by extension unless given) of the file to load; a file
    whose content is not what its format says is refused here, before anything is read into the database."""
    if path.is_dir():
        raise ImportRefused(f"{path} is a folder, not a file; name the file to import")
    if not path.is_file():
        raise ImportRefused(f"there is no file {path}; check the path and the file's name (nothing was loaded)")
    chosen = fmt or FORMATS.get(path.suffix.lower())
    if chosen is None or chosen not in FORMATS.values():
        raise ImportRefused(f"{path.name}: cannot tell the format from the extension {path.suffix or '(none)'!r}; "
                            f"name the file .csv, .parquet, .xlsx or .jsonl, or pass --format "
                            f"({', '.join(sorted(set(FORMATS.values())))})")
    digest, size, head = hashlib.sha256(), 0, b""
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            if not head:
                head = block[:4096]
            digest.update(block)
            size += len(block)
    if size == 0:
        raise ImportRefused(f"{path.name} is empty (0 bytes); nothing was loaded. Export it again: the file "
                            "needs a header row naming the columns, then one row per subject")
    held, words = _holds(head)
    if held != chosen:
        fix = (f"rename it .{held} or pass --format {held}" if held
               else "export it again as CSV (UTF-8), Parquet, XLSX or JSON lines")
        raise ImportRefused(f"{path.name} is not {A_FORMAT[chosen]}: it {words}; {fix}. Nothing was loaded")
    return FileFacts(path.name, size, digest.hexdigest(), chosen)


# --- reading it into the database, as text ------------------------------------------------------------------
def _header(path: Path) -> tuple[list[str], str]:
    """The CSV's columns and delimiter, from its first row (read here: the database then reads the rest
    with exactly that dialect, so a ragged row is an error with its row number, not a guess)."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        try:
            first = f.readline(1 << 20)
        except UnicodeDecodeError:
            raise ImportRefused(f"{path.name} is not UTF-8 text; save it as UTF-8 CSV and import it again") \
                from None
    delimiter = max(",;\t|", key=first.count)
    columns = [c.strip() for c in next(csv.reader([first], delimiter=delimiter, quotechar='"'), [])]
    return columns, delimiter


def _check_header(path: Path, columns: list[str]) -> None:
    if not any(columns):
        raise ImportRefused(f"{path.name} has no header row; the first row must name the columns")
    for n, c in enumerate(columns, 1):
        if not c:
            raise ImportRefused(f"{path.name}: column {n} of the header has no name; name it or remove the column")
    seen: set[str] = set()
    for c in columns:
        if c in seen:
            raise ImportRefused(f"{path.name}: column '{c}' appears twice in the header; each column may appear "
                                "once")
        seen.add(c)


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _read_error(path: Path, fmt: str, exc: Exception) -> ImportRefused:
    """The reader's complaint as a sentence: the row, what is wrong with it, and what to do."""
    text = str(exc)
    line = re.search(r"CSV Error on Line: (\d+)", text)
    if line:
        row = int(line.group(1))
        counted = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", text)
        if counted:
            return ImportRefused(f"{path.name}: row {row} has {counted.group(2)} values, but the header names "
                                 f"{counted.group(1)} columns; every row needs one value per column (leave it "
                                 "empty between the delimiters if it is unknown). Nothing was loaded")
        if "unterminated quote" in text:
            return ImportRefused(f"{path.name}: row {row} opens a quoted value that never closes; close the "
                                 "quote (a quote inside a value is written twice). Nothing was loaded")
        if "not utf-8" in text.lower() or "unicode" in text.lower():
            return ImportRefused(f"{path.name}: row {row} is not UTF-8 text; save the file as UTF-8 and import "
                                 "it again. Nothing was loaded")
    if fmt == "jsonl" and ("Malformed JSON" in text or "expected records" in text):
        where = _first_bad_json_line(path)
        return ImportRefused(f"{path.name}: {f'line {where}' if where else 'a line'} is not a JSON object; each "
                             'line must hold one object, like {"id": "V-1", "name": "Acme"}. Nothing was loaded')
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    first = first.replace(str(path), path.name)
    return ImportRefused(f"{path.name} could not be read as {FORMAT_NAMES[fmt]} ({first}); check the file, or "
                         "pass --format. Nothing was loaded")


def _first_bad_json_line(path: Path) -> int | None:
    """The first line that is not a JSON object (read here, line by line, once the reader refused the file:
    its own line numbers are not the file's)."""
    with path.open(encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                ok = isinstance(json.loads(line), dict)
            except ValueError:
                ok = False
            if not ok:
                return n
    return None


def _raw_from_duckdb(tx: Tx, path: Path, fmt: str) -> tuple[str, int]:
    """The file as a temporary table of text columns in file order, and what to add to a row's ``rowid``
    for its number in the file."""
    name = f"_raw_{next(_names)}"
    raw = tx.raw
    raw.complete()
    literal = _quoted(str(path))
    if fmt == "csv":
        columns, delimiter = _header(path)
        _check_header(path, columns)
        types = "{" + ", ".join(f"{_quoted(c)}: 'VARCHAR'" for c in columns) + "}"
        source = (f"read_csv({literal}, header = true, auto_detect = false, delim = {_quoted(delimiter)}, "
                  f"quote = '\"', escape = '\"', columns = {types})")
        select, first = "*", 2
    else:
        source = (f"read_parquet({literal})" if fmt == "parquet"
                  else f"read_json({literal}, format = 'newline_delimited', records = true)")
        try:
            columns = [r[0] for r in raw.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
        except Exception as exc:  # noqa: BLE001 - the reader's complaint, said as a sentence
            raise _read_error(path, fmt, exc) from None
        _check_header(path, [c.strip() for c in columns])
        select = ", ".join(f'CAST("{c}" AS VARCHAR) AS "{c.strip()}"' for c in columns)
        columns = [c.strip() for c in columns]
        first = 1
    try:
        raw.execute(f'CREATE TEMPORARY TABLE "{name}" AS SELECT {select} FROM {source}')
    except Exception as exc:  # noqa: BLE001 - the reader's complaint, said as a sentence
        raise _read_error(path, fmt, exc) from None
    # Rows keep the file's order; their ids count on from where the transaction's own storage starts.
    raw.execute(f'SELECT min(rowid) FROM "{name}"')
    start = raw.fetchone()[0] or 0
    return name, first - start


def _cell(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        if value.tzinfo is None and value.time() == dt.time():
            return value.date().isoformat()  # a date cell: Excel keeps dates as midnight
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value)
    return text if text.strip() else None


def _raw_from_xlsx(tx: Tx, path: Path) -> tuple[str, int]:
    """An XLSX sheet (the first) as text columns, read row by row (openpyxl's streaming reader)."""
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl's message names the problem
        raise ImportRefused(f"{path.name} could not be read as XLSX ({exc}); check the file, or pass --format. "
                            "Nothing was loaded") from None
    try:
        rows = book.worksheets[0].iter_rows(values_only=True)
        header = list(next(rows, None) or ())
        while header and header[-1] is None:
            header.pop()
        columns = ["" if h is None else str(h).strip() for h in header]
        _check_header(path, columns)
        name = f"_raw_{next(_names)}"
        table = sa.Table(name, sa.MetaData(), sa.Column("_xlsx_row", sa.BigInteger),
                         *(sa.Column(c, sa.String) for c in columns), prefixes=["TEMPORARY"])
        table.create(tx.conn)
        batch: list[dict[str, Any]] = []
        for n, values in enumerate(rows, 2):
            if all(v is None for v in values):
                continue  # a blank row (formatted, or left between blocks)
            if len(values) > len(columns) and any(v is not None for v in values[len(columns):]):
                raise ImportRefused(f"{path.name}: row {n} has a value beyond the header's {len(columns)} "
                                    "columns; name its column in row 1 or remove the value. Nothing was loaded")
            batch.append({"_xlsx_row": n, **{c: _cell(v) for c, v in zip(columns, values, strict=False)}})
            if len(batch) == 10_000:
                append_rows(tx, table, batch)
                batch = []
        append_rows(tx, table, batch)
    finally:
        book.close()
    return name, 0


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


def _checks(raw: str, row: str, reg: Register, present: list[str]) -> Checks:
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
        own.exec_driver_sql(f"SET memory_limit = {_quoted(IMPORT_MEMORY)}")
        try:
            yield
        finally:
            # RESET restores the default exactly (the setting reads back rounded: "18.7 GiB"); a limit that
            # someone set is set again, to its rounded value.
            own.exec_driver_sql("RESET memory_limit")
            if own.exec_driver_sql("SELECT current_setting('memory_limit')").scalar_one() != before:
                own.exec_driver_sql(f"SET memory_limit = {_quoted(before)}")


def import_file(tx: Tx, reg: Register, path: Path, *, actor: str, fmt: str | None = None, mode: str = "upsert",
                skip_bad_rows: bool = False, ignore_extra_columns: bool = False, origin: str = "file",
                source: str | None = None) -> ImportOutcome:
    """Load ``path`` into the register in this transaction; ``ImportRefused`` says why not (nothing loaded).
    ``origin``/``source`` name where the rows came from when the file only carries them (a SQL source's
    query result: origin ``sql``, source the URL's variable)."""
    facts = file_facts(path, fmt)
    with _bounded_memory(tx):
        return _import(tx, reg, path, facts, actor=actor, mode=mode, skip_bad_rows=skip_bad_rows,
                       ignore_extra_columns=ignore_extra_columns, origin=origin, source=source)


def _import(tx: Tx, reg: Register, path: Path, facts: FileFacts, *, actor: str, mode: str, skip_bad_rows: bool,
            ignore_extra_columns: bool, origin: str = "file", source: str | None = None) -> ImportOutcome:
    if facts.format == "xlsx":
        raw, first = _raw_from_xlsx(tx, path)
        row = f'"{raw}"._xlsx_row'
    else:
        raw, first = _raw_from_duckdb(tx, path, facts.format)
        row = f'("{raw}".rowid + ({first}))'
    c = tx.conn
    columns = [col for col in c.execute(sa.text(f'SELECT * FROM "{raw}" LIMIT 0')).keys() if col != "_xlsx_row"]
    rows = int(c.exec_driver_sql(f'SELECT count(*) FROM "{raw}"').scalar_one())
    nothing = "Nothing was loaded"
    if rows == 0:
        raise ImportRefused(f"{path.name} has a header but no rows; nothing was loaded. Export it again with its "
                            "rows (a file with no rows never withdraws a register's subjects)")
    if reg.key not in columns:
        raise ImportRefused(f"{path.name} has no column '{reg.key}', the key of {reg.kind}; its columns are "
                            f"{', '.join(columns)}. Add the column, or name the one that holds each subject's key "
                            f"'{reg.key}'. {nothing}")
    unknown = [col for col in columns if col not in reg.fields]
    if unknown and not ignore_extra_columns:
        raise ImportRefused(f"{path.name} has column(s) {', '.join(unknown)} that {reg.kind} does not declare "
                            f"(its fields: {', '.join(reg.fields)}); declare them in the register's file, or "
                            f"pass --ignore-extra-columns to load the rest. {nothing}")
    missing_required = [f for f in reg.spec.required if f not in columns]
    if missing_required:
        raise ImportRefused(f"{path.name} has no column {', '.join(missing_required)}, which every row of "
                            f"{reg.kind} must hold; add it. {nothing}")
    present = [f for f in reg.fields if f in columns]
    checks = _checks(raw, row, reg, present)
    problems, bad = _count_problems(tx, checks)
    listed = _problems(tx, checks, reg.kind, LISTED if skip_bad_rows else 1) if problems else []
    if problems and not skip_bad_rows:
        more = problems - 1
        also = f" (and {more:,} more problem{'s' if more > 1 else ''})" if more > 0 else ""
        raise ImportRefused(f"{path.name}: {listed[0][1]}{also}. {nothing}; correct the file, or pass "
                            "--skip-bad-rows to load the other rows")
    if bad == rows:
        raise ImportRefused(f"{path.name}: every row was refused ({rows:,}); the first: {listed[0][1]}. "
                            f"{nothing}; correct the file")
    staged = staging_table(reg)
    staged.create(c)
    exprs = ", ".join((_typed(f'"{f}"', reg.fields[f]) if reg.fields[f] in SQL_CAST else f'"{f}"') + f' AS "{f}"'
                      for f in present)
    skip = f" WHERE NOT ({checks.bad()})" if bad else ""
    names = ", ".join(f'"{f}"' for f in present)
    c.exec_driver_sql(f'INSERT INTO "{staged.name}" (_row, {names}) SELECT {row}, {exprs} FROM "{raw}"{skip}')
    kept = None
    if bad and mode == "replace":  # a key on a refused row is still listed: it is not withdrawn
        kept = sa.Table(f"{raw}_keys", sa.MetaData(), sa.Column("key", reg.table.c[reg.key].type),
                        prefixes=["TEMPORARY"])
        key_type = "BIGINT" if reg.fields[reg.key] == "integer" else "VARCHAR"
        c.exec_driver_sql(f'CREATE TEMPORARY TABLE "{kept.name}" AS SELECT DISTINCT '
                          f'TRY_CAST("{reg.key}" AS {key_type}) AS key FROM "{raw}" WHERE "{reg.key}" IS NOT NULL')
    c.exec_driver_sql(f'DROP TABLE "{raw}"')
    refused_rows = [why for _, why in listed]
    result = apply_load(tx, reg, staged, origin=origin, source=source or facts.name, actor=actor, mode=mode,
                        only=present, refused=bad, listed_keys=kept,
                        meta={"format": facts.format, "bytes": facts.bytes, "sha256": facts.sha256,
                              "refused_rows": refused_rows or None})
    if kept is not None:
        c.exec_driver_sql(f'DROP TABLE "{kept.name}"')
    return ImportOutcome(result, facts, refused_rows)
