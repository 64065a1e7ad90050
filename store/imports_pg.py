"""A register file bound for a PostgreSQL workspace: read and checked on a private DuckDB database, the rows
that pass streamed into the workspace's transaction.

Why DuckDB at all on PostgreSQL: the file's readers (CSV with its dialect, Parquet, JSON lines), their row
numbers and complaints, and every check of a value against its declared type are DuckDB SQL; running the
very same statements on a private DuckDB makes a file refused with the same sentence on either backend, and
keeps a gigabyte out of Python. The private database is a file in a temporary folder (``TMPDIR``), held to
the import's memory limit like the workspace's, spilling into that folder beyond it, and removed afterwards.

The checked, typed rows travel as CSV that DuckDB writes into the same folder, streamed to PostgreSQL by
``COPY … FROM STDIN`` in blocks of a mebibyte (psycopg 3; its writer waits for the server, so memory stays
bounded however big the file). Every string is quoted in that CSV: PostgreSQL then reads an empty string as
empty and only an unquoted nothing as NULL, and a value ``\\.`` as a value, not as the end of the data.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import sqlalchemy as sa

from store.import_files import sql_literal
from store.tx import Now, Tx

BLOCK = 1 << 20  # bytes per COPY message: big enough to cost nothing per block, small enough to hold
_DATABASE = "import.duckdb"


@contextlib.contextmanager
def private_duckdb(memory: str, now: Now) -> Iterator[Tx]:
    """A transaction on a private DuckDB database, in a temporary folder removed on exit, its memory held
    to ``memory``. Nothing of it is kept: it is rolled back, and its folder removed."""
    with tempfile.TemporaryDirectory(prefix="runledger-import-read-") as folder:
        engine = sa.create_engine(f"duckdb:///{Path(folder) / _DATABASE}")
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f"SET memory_limit = {sql_literal(memory)}")  # begins its transaction
                try:
                    yield Tx(conn, now)
                finally:
                    conn.rollback()
        finally:
            engine.dispose()


def copy_into_postgres(reader: Tx, query: str, tx: Tx, table: sa.Table, columns: Sequence[str]) -> int:
    """The rows of ``query`` (on the private DuckDB of ``private_duckdb``; its columns are ``columns``)
    into ``table`` (created in the PostgreSQL transaction ``tx``); returns the bytes streamed."""
    database = reader.conn.engine.url.database
    if database is None or Path(database).name != _DATABASE:
        raise ValueError("copy_into_postgres reads from a private_duckdb() transaction")
    out = Path(database).parent / f"{table.name}.csv"
    strings = [c for c in columns if isinstance(table.c[c].type, sa.String)]
    quoted = f", FORCE_QUOTE ({_names(strings)})" if strings else ""
    reader.conn.exec_driver_sql(f"COPY ({query}) TO {sql_literal(str(out))} (FORMAT csv, HEADER false{quoted})")
    sent = 0
    try:
        statement = f"COPY \"{table.name}\" ({_names(columns)}) FROM STDIN (FORMAT csv, ENCODING 'UTF8')"
        with tx.raw.cursor() as cursor, out.open("rb") as f, cursor.copy(statement) as copy:
            for block in iter(lambda: f.read(BLOCK), b""):
                copy.write(block)
                sent += len(block)
    finally:
        out.unlink(missing_ok=True)
    # Temporary tables are never analysed by autovacuum: without this the planner guesses their size when it
    # joins them to the register (a million rows taken for a few hundred).
    tx.conn.exec_driver_sql(f'ANALYZE "{table.name}"')
    return sent


def _names(columns: Sequence[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)
