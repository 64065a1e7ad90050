"""The database's floor under the executor: the very rows a 100,000-item run writes, written with SQL alone.

Run by hand (not part of pytest)::

    .venv/bin/python bench/bench_write_floor.py                  # 100,000 items, batches of 4,000
    .venv/bin/python bench/bench_write_floor.py --subjects 20000

Why: the executor's target (bench_executor.py) is a throughput; this script says how much of it the
database alone allows, so that what is left to win in Python is known rather than guessed.

How: the real engine runs the benchmark's run once (``bench_executor.py``'s seed and run scenarios, in
their own processes), leaving a workspace with its items, attempts, findings, ledger entries and audit
entries. A fresh workspace (the same schema, indexes and constraints) then receives exactly those rows in
the executor's pattern — the pending items in one matching transaction; then per batch one transaction that
appends the batch's findings, ledger entries, attempts and audit entries, updates its items' outcomes and
the run's counts, and claims (marks in flight) the next batch — each an ``INSERT … SELECT`` or ``UPDATE …
FROM`` reading the finished workspace, attached read-only. No Python touches a row. Batches are the
executor's largest size from the first one (the executor starts at 16 and doubles), so the floor is, if
anything, lower than the executor's own write pattern could reach.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EXECUTOR_BENCH = ROOT / "bench" / "bench_executor.py"


def _finished_run(path: str, defs: str, n: int) -> None:
    """The real engine's run over ``n`` accounts, left in ``path`` (each step in its own process)."""
    for scenario in ("seed", "run"):
        subprocess.run([sys.executable, str(EXECUTOR_BENCH), "--scenario", scenario, "--db", path, "--defs", defs,
                        "--subjects", str(n)], check=True, capture_output=True, text=True)


def replay(src: str, dst: str, batch: int) -> dict[str, float]:
    """Write ``src``'s run into the fresh workspace ``dst`` in the executor's transactions; time each part."""
    from store.workspace import Workspace

    ws = Workspace(dst)  # creates the schema, indexes and constraints the engine writes under
    timings = {"match_s": 0.0, "execute_s": 0.0}
    with ws.transaction() as tx:
        raw = tx.raw
        raw.execute(f"ATTACH '{src}' AS src (READ_ONLY)")
    with ws.transaction() as tx:  # untimed: the registers and the run itself, as the trigger left them
        raw = tx.raw
        # Registers are declared data (schema 5): the accounts table is the register's, made when the engine
        # loaded its registers folder, so it is copied as the source holds it.
        raw.execute("CREATE TABLE IF NOT EXISTS accounts AS SELECT * FROM src.accounts LIMIT 0")
        for table in ("accounts", "runs", "trigger_events", "definitions", "definition_versions"):
            raw.execute(f"INSERT INTO {table} SELECT * FROM src.{table}")
        raw.execute("UPDATE runs SET started_at = NULL, completed_at = NULL, status = 'pending'")
    (run_id, n), = raw.execute("SELECT run_id, count(*) FROM src.run_items GROUP BY run_id").fetchall()

    t = time.perf_counter()
    with ws.transaction() as tx:  # matching: the subjects read, one pending item each
        raw = tx.raw
        raw.execute("SELECT count(*) FROM accounts WHERE status = 'active'").fetchall()
        raw.execute("INSERT INTO run_items SELECT * REPLACE ('pending' AS outcome, NULL AS record_ref, "
                    "0 AS attempts) FROM src.run_items ORDER BY position")
        raw.execute("UPDATE runs SET started_at = now(), status = 'running'")
    timings["match_s"] = time.perf_counter() - t

    t = time.perf_counter()
    with ws.transaction() as tx:
        _claim(tx.raw, run_id, 1, batch)
    for lo in range(1, n + 1, batch):
        hi = min(n, lo + batch - 1)
        with ws.transaction() as tx:
            raw = tx.raw
            ids = (f"(SELECT item_id FROM src.run_items WHERE run_id = '{run_id}' "
                   f"AND position BETWEEN {lo} AND {hi})")
            for table, key in (("findings", "source_item_id"), ("idempotency_records", "item_id"),
                               ("item_attempts", "item_id")):
                raw.execute(f"INSERT INTO {table} SELECT * FROM src.{table} WHERE {key} IN {ids}")
            raw.execute(f"INSERT INTO audit_log SELECT * FROM src.audit_log WHERE entity_kind = 'run_item' "
                        f"AND entity_id IN {ids}")
            raw.execute(f"UPDATE run_items SET outcome = s.outcome, record_ref = s.record_ref, attempts = s.attempts, "
                        f"updated_at = s.updated_at FROM src.run_items s WHERE run_items.run_id = '{run_id}' "
                        f"AND run_items.position BETWEEN {lo} AND {hi} AND s.item_id = run_items.item_id")
            raw.execute(f"UPDATE runs SET actions_invoked = actions_invoked + {hi - lo + 1}, "
                        f"items_succeeded = items_succeeded + {hi - lo + 1}")
            _claim(raw, run_id, hi + 1, hi + batch)
    with ws.transaction() as tx:
        tx.raw.execute("UPDATE runs SET status = 'completed', completed_at = now()")
    timings["execute_s"] = time.perf_counter() - t
    with ws.transaction() as tx:
        tx.raw.execute("DETACH src")
    t = time.perf_counter()
    with ws.read() as conn:  # what the automatic checkpoints have not yet written into the file
        conn.exec_driver_sql("CHECKPOINT")
    timings["checkpoint_s"] = time.perf_counter() - t
    ws.close()
    return timings | {"items": n}


def _claim(raw: Any, run_id: str, lo: int, hi: int) -> None:
    raw.execute(f"UPDATE run_items SET outcome = 'in-flight', updated_at = now() WHERE run_id = '{run_id}' "
                f"AND outcome = 'pending' AND position BETWEEN {lo} AND {hi}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=4000, help="the executor's largest batch")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="runledger-floor-") as tmp:
        src, dst = os.path.join(tmp, "engine.duckdb"), os.path.join(tmp, "floor.duckdb")
        _finished_run(src, os.path.join(tmp, "defs"), a.subjects)
        r = replay(src, dst, a.batch)
    total = r["match_s"] + r["execute_s"] + r["checkpoint_s"]
    print(f"{r['items']:,} items, batches of {a.batch:,}: matching writes {r['match_s']:.2f} s, execution writes "
          f"{r['execute_s']:.2f} s, the checkpoint left at the end {r['checkpoint_s']:.2f} s, total {total:.2f} s → "
          f"the database alone allows at most "
          f"{r['items'] / total:,.0f} items/s (the target, 20,000 items/s, is {r['items'] / 20_000:.2f} s)")


if __name__ == "__main__":
    main()
