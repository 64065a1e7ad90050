"""Reading a register file (CSV, Parquet, XLSX, JSON lines) into the database as a table of text columns, in
the file's order, each row numbered as the file's own viewer shows it: what ``store.imports`` then checks
against the register's declaration.

The file is identified first (name, size, SHA-256, and what its first bytes say it is), so a file whose
content is not its format is refused before anything is read. CSV, Parquet and JSON lines are read by
DuckDB's own readers (a gigabyte streams through DuckDB, whose memory is bounded for the import, and never
sits in Python); an XLSX sheet row by row with openpyxl's streaming reader. A reader's complaint becomes a
sentence naming the row, what is wrong with it and what to do. The connection given is always a DuckDB one:
the workspace's, or the private one a PostgreSQL import reads through (``store.imports_pg``).
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from store.bulk import append_rows
from store.tx import Tx

FORMATS = {".csv": "csv", ".parquet": "parquet", ".xlsx": "xlsx", ".jsonl": "jsonl", ".ndjson": "jsonl"}
FORMAT_NAMES = {"csv": "CSV", "parquet": "Parquet", "xlsx": "XLSX", "jsonl": "JSON lines"}
A_FORMAT = {"csv": "a CSV file", "parquet": "a Parquet file", "xlsx": "an XLSX workbook", "jsonl": "a JSON lines file"}
_names = itertools.count()


class ImportRefused(ValueError):
    """The file cannot be loaded as it is; the message says what is wrong and what to do. Nothing was loaded."""


@dataclass
class FileFacts:
    name: str
    bytes: int
    sha256: str
    format: str


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


def sql_literal(value: str) -> str:
    """A text as a SQL string literal (for a reader's arguments, which take no bound parameters)."""
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


def _raise_if_out_of_memory(exc: Exception) -> None:
    """Running out of the import's memory is no fault of the file: raised as it is, for the workspace to say
    which setting to raise (``store.workspace``), not reported as a file that cannot be read."""
    if "Out of Memory" in str(exc):
        raise exc


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
    literal = sql_literal(str(path))
    if fmt == "csv":
        columns, delimiter = _header(path)
        _check_header(path, columns)
        types = "{" + ", ".join(f"{sql_literal(c)}: 'VARCHAR'" for c in columns) + "}"
        source = (f"read_csv({literal}, header = true, auto_detect = false, delim = {sql_literal(delimiter)}, "
                  f"quote = '\"', escape = '\"', columns = {types})")
        select, first = "*", 2
    else:
        source = (f"read_parquet({literal})" if fmt == "parquet"
                  else f"read_json({literal}, format = 'newline_delimited', records = true)")
        try:
            columns = [r[0] for r in raw.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
        except Exception as exc:  # noqa: BLE001 - the reader's complaint, said as a sentence
            _raise_if_out_of_memory(exc)
            raise _read_error(path, fmt, exc) from None
        _check_header(path, [c.strip() for c in columns])
        select = ", ".join(f'CAST("{c}" AS VARCHAR) AS "{c.strip()}"' for c in columns)
        columns = [c.strip() for c in columns]
        first = 1
    try:
        raw.execute(f'CREATE TEMPORARY TABLE "{name}" AS SELECT {select} FROM {source}')
    except Exception as exc:  # noqa: BLE001 - the reader's complaint, said as a sentence
        _raise_if_out_of_memory(exc)
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


@dataclass(frozen=True)
class RawTable:
    """The file as a temporary table of text columns: its name, its columns (the file's header, in order),
    and each row's number in the file as SQL."""

    name: str
    columns: list[str]
    row: str


def read_raw(tx: Tx, path: Path, fmt: str) -> RawTable:
    """Read the file (of format ``fmt``, as ``file_facts`` found it) into a temporary table on ``tx``'s
    DuckDB connection; ``ImportRefused`` names what in it cannot be read."""
    if fmt == "xlsx":
        name, _ = _raw_from_xlsx(tx, path)
        row = f'"{name}"._xlsx_row'
    else:
        name, first = _raw_from_duckdb(tx, path, fmt)
        row = f'("{name}".rowid + ({first}))'
    columns = [c for c in tx.conn.execute(sa.text(f'SELECT * FROM "{name}" LIMIT 0')).keys() if c != "_xlsx_row"]
    return RawTable(name, columns, row)
