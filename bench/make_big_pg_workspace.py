"""The dashboard and analytics benchmarks' big workspace on PostgreSQL: the very rows of
``make_big_workspace.py`` (1,000,000 runs, ~20,000,000 items), copied from its DuckDB file into a PostgreSQL
workspace that the store's own migrations created.

    .venv/bin/python bench/pg_bench_server.py start --dir /tmp/pgbench/pg        # prints URL (once)
    .venv/bin/python bench/make_big_pg_workspace.py --pg URL --duckdb /tmp/big.duckdb [--runs N]

``--duckdb`` names the DuckDB workspace to copy; it is built first (``make_big_workspace.py``) when it does not
exist. The PostgreSQL side: ``Workspace(URL)`` creates the schema by the migrations, the demo members and the
definitions are written through the store and the engine's loader (their audit entries form the workspace's own
chain), then each bulk table — trigger events, runs, items, attempts, approvals, failure summaries — is
written by DuckDB to a CSV file and streamed into PostgreSQL by ``COPY … FROM STDIN`` (psycopg 3), two tables at
a time. For speed the table's indexes and keys are set aside during its load and built again afterwards from
their own definitions (so exactly the indexes the migrations made), then every table is vacuumed and analyzed:
a workspace the engine filled over three years has had autovacuum's visibility map and statistics all along.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The tables the generator fills with bulk rows, biggest first (two load at once).
BULK_TABLES = ("run_items", "item_attempts", "runs", "trigger_events", "run_failure_causes", "approvals")
NULL = "\\N"  # what stands for NULL in the CSV files (an unquoted empty field is then an empty string)


def _libpq_url(url: str) -> str:
    """psycopg's connection string for a SQLAlchemy URL."""
    import sqlalchemy as sa

    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _columns(pg: object, table: str) -> list[str]:
    import psycopg

    assert isinstance(pg, psycopg.Connection)
    rows = pg.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                      "ORDER BY ordinal_position", (table,)).fetchall()
    return [r[0] for r in rows]


def load_table(duck_path: str, url: str, table: str, tmp: Path) -> dict[str, float]:
    """One table: DuckDB writes it as CSV, PostgreSQL takes it by COPY in the transaction that truncated it (no
    WAL at ``wal_level=minimal``), its keys and indexes built afterwards from their saved definitions."""
    import duckdb
    import psycopg

    t0 = time.perf_counter()
    with psycopg.connect(_libpq_url(url)) as pg:
        columns = _columns(pg, table)
        quoted = ", ".join(f'"{c}"' for c in columns)
        duck = duckdb.connect(duck_path, read_only=True)
        try:
            csv = tmp / f"{table}.csv"
            duck.execute(f"COPY (SELECT {quoted} FROM {table}) TO '{csv}' (HEADER false, NULLSTR '{NULL}')")
            rows = int(duck.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]
        finally:
            duck.close()
        exported = time.perf_counter()
        constraints = pg.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
            "AND contype IN ('p', 'u')", (table,)).fetchall()
        indexes = pg.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT IN "
            "(SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass)", (table, table)).fetchall()
        with pg.transaction():
            pg.execute(f"TRUNCATE {table}")
            for name, _ in indexes:
                pg.execute(f'DROP INDEX "{name}"')
            for name, _ in constraints:
                pg.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            with pg.cursor().copy(f"COPY {table} ({quoted}) FROM STDIN (FORMAT csv, NULL '{NULL}')") as copy, \
                    csv.open("rb") as f:
                while block := f.read(1 << 20):
                    copy.write(block)
        csv.unlink()
        copied = time.perf_counter()
        with pg.transaction():
            for name, definition in constraints:
                pg.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
            for _, definition in indexes:
                pg.execute(definition)
        indexed = time.perf_counter()
    return {f"{table}_rows": rows, f"{table}_export_s": round(exported - t0, 1),
            f"{table}_copy_s": round(copied - exported, 1), f"{table}_index_s": round(indexed - copied, 1)}


def copy_workspace(duck_path: str, url: str) -> dict[str, float]:
    import psycopg

    from bench.make_big_workspace import prepare

    prepare(url)  # schema by the migrations, members, definitions: through the store, on PostgreSQL itself
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="big-pg-", dir=os.environ.get("TMPDIR")) as tmp:
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            for done in pool.map(lambda t: load_table(duck_path, url, t, Path(tmp)), BULK_TABLES):
                figures.update(done)
                print(done, flush=True)
    t = time.perf_counter()
    with psycopg.connect(_libpq_url(url), autocommit=True) as pg:
        for table in BULK_TABLES:
            pg.execute(f"VACUUM (ANALYZE) {table}")
        # The next run the engine numbers follows the generated ones.
        pg.execute("SELECT setval('run_number_seq', (SELECT max(run_number) FROM runs))")
        figures["database_gib"] = round(int(pg.execute(  # type: ignore[index]
            "SELECT pg_database_size(current_database())").fetchone()[0]) / 2**30, 1)
    figures["vacuum_analyze_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    _sum_for_the_analytics(url)
    figures["rollups_s"] = round(time.perf_counter() - t, 1)
    return figures


def _sum_for_the_analytics(url: str) -> None:
    """Schema 13's rollups, from the rows just copied, as the migration fills them on an existing workspace
    (measured 2026-12-07: 38 s for 1,000,000 runs, load 3)."""
    from store.failure_accounts import backfill_failure_accounts
    from store.rollups import backfill_event_rollups, backfill_rollups
    from store.workspace import Workspace

    ws = Workspace(url)
    with ws.transaction() as tx:
        backfill_rollups(tx.conn)
        backfill_failure_accounts(tx.conn)
        backfill_event_rollups(tx.conn)
    with ws.transaction() as tx:
        for table in ("run_rollups", "run_duration_rollups", "run_failure_accounts", "event_rollups"):
            tx.conn.exec_driver_sql(f"ANALYZE {table}")
    ws.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pg", required=True, help="the PostgreSQL workspace's URL (an empty database)")
    p.add_argument("--duckdb", required=True, help="the DuckDB workspace to copy (built first when missing)")
    p.add_argument("--runs", type=int, default=1_000_000, help="runs, when the DuckDB workspace is built")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    a = p.parse_args()
    from bench.make_big_workspace import generate, prepare
    from store.workspace import Workspace

    t0 = time.perf_counter()
    if not Path(a.duckdb).exists():
        prepare(a.duckdb)
        print(generate(a.duckdb, a.runs, a.threads), flush=True)
    ws = Workspace(a.pg)
    try:
        with ws.read() as conn:
            if conn.exec_driver_sql("SELECT EXISTS (SELECT 1 FROM runs)").scalar():
                raise SystemExit(f"{ws.shown} already holds runs; the copy goes into an empty database only")
    finally:
        ws.close()
    figures = copy_workspace(a.duckdb, a.pg)
    print({**figures, "total_s": round(time.perf_counter() - t0, 1)})


if __name__ == "__main__":
    main()
