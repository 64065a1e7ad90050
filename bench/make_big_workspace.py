"""Build a large workspace for the dashboard and analytics benchmarks: by default 1,000,000 runs and about
20,000,000 items over three years, generated at run time with DuckDB SQL (never committed).

    .venv/bin/python bench/make_big_workspace.py --out /tmp/big.duckdb [--runs 1000000]

The shape follows what the engine writes: runs numbered in trigger order, items inserted run by run (so
stored clustered by run, as execution writes them), the six demo automations with their trigger kinds,
about 6% of runs `completed-with-failures` (a fifth of their items failed, transient or deterministic), a
few cancelled, failed and still running runs, skipped and awaiting-approval items, one attempt per item
(two for failed transient ones). The schema comes from the store's own migrations, and the definitions
from ``definitions/`` through the real loader; only the bulk rows are made with SQL.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# definition id, trigger kind, trigger source, action, subject kind
DEFINITIONS = [
    ("kyc-weekly-review", "schedule", "scheduler", "evidence_requests.send", "accounts"),
    ("aml-monitor-failure", "event", "aml-monitor", "findings.create", "aml_monitor_results"),
    ("supplier-attestation-renewal", "schedule", "scheduler", "lifecycle_instances.start", "suppliers"),
    ("post-exception-assessment", "event", "workspace", "assessments.schedule", "exceptions"),
    ("post-incident-review-check", "event", "workspace", "findings.create", "incidents"),
    ("regulator-rule-change-intake", "signal", "regulator-feed", "findings.create", "rule_changes"),
]


def prepare(path: str) -> None:
    """Schema via migrations, the demo members (the browser benchmark signs in as sigrid) and the demo
    definitions via the real loader, in a workspace of our own."""
    from demo.seed import seed_members_and_sources
    from engine.runtime import Engine
    from store.workspace import Workspace

    ws = Workspace(path)
    seed_members_and_sources(ws)
    Engine(ws, definitions_dir=ROOT / "definitions").load_definitions(actor="bench:generator")
    ws.close()


def generate(path: str, n_runs: int, threads: int) -> dict[str, float]:
    import duckdb

    con = duckdb.connect(path)
    con.execute(f"SET threads = {threads}")
    defs = ", ".join(f"({i}, '{d}', '{k}', '{s}', '{a}', '{sk}')" for i, (d, k, s, a, sk) in enumerate(DEFINITIONS))
    con.execute(f"CREATE TEMP TABLE defs(i INT, definition_id VARCHAR, kind VARCHAR, source VARCHAR, "
                f"action VARCHAR, subject_kind VARCHAR); INSERT INTO defs VALUES {defs}")
    timings: dict[str, float] = {}
    # The migrations' secondary indexes on the big tables (schema 14's, by subject and by item) are set aside
    # during the load and built again after it from their own definitions, as make_big_pg_workspace.py does:
    # a 20 M-row append into an ART is slower and holds more memory than building the index once.
    set_aside = con.execute("SELECT index_name, sql FROM duckdb_indexes() WHERE table_name IN "
                            "('run_items', 'item_attempts')").fetchall()
    for name, _ in set_aside:
        con.execute(f"DROP INDEX {name}")
    t = time.perf_counter()
    # One row per run: its shape decided from its number (deterministic, no RNG state to carry).
    con.execute(f"""
        CREATE TEMP TABLE gen AS
        SELECT r AS n,
               printf('RUN-%06d', r) AS run_id,
               d.definition_id, d.kind, d.source, d.action, d.subject_kind,
               TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(r * 94) AS triggered_at,
               1 + ((r * 7919) % 39) AS n_items,
               CASE WHEN r > {n_runs} - 40 THEN 'running'
                    WHEN r % 997 = 0 THEN 'cancelled'
                    WHEN r % 1999 = 0 THEN 'failed'
                    WHEN r % 17 = 0 THEN 'completed-with-failures'
                    ELSE 'completed' END AS status,
               5 + ((r * 104729) % 600) AS duration_s
        FROM range(1, {n_runs} + 1) t(r)
        JOIN defs d ON d.i = r % 6
    """)
    con.execute("""
        INSERT INTO trigger_events (event_id, kind, event_type, source, subject_kind, subject_id, definition_id,
                                    occurred_at, received_at, payload, dispatched_at)
        SELECT 'EVT-' || run_id, kind, CASE kind WHEN 'schedule' THEN 'schedule.fired'
                 WHEN 'signal' THEN 'signal.received' ELSE 'record.changed' END, source,
               CASE WHEN kind = 'schedule' THEN NULL ELSE subject_kind END,
               CASE WHEN kind = 'schedule' THEN NULL ELSE 'SUBJ-' || n END,
               definition_id, triggered_at, triggered_at, '{"generated": true}', triggered_at
        FROM gen
    """)
    timings["trigger_events_s"] = time.perf_counter() - t
    t = time.perf_counter()
    con.execute("""
        INSERT INTO runs (run_id, run_number, definition_id, definition_version, trigger_kind, trigger_source,
                          trigger_event_id, triggered_at, status, subjects_matched, actions_invoked, started_at,
                          completed_at, cancel_requested_by, cancel_requested_at, cancel_reason, failure_cause,
                          created_at)
        SELECT run_id, n, definition_id, 1, kind, source, 'EVT-' || run_id, triggered_at, status,
               n_items, CASE WHEN status = 'failed' THEN 0 ELSE n_items END,
               triggered_at + INTERVAL 1 SECOND,
               CASE WHEN status = 'running' THEN NULL ELSE triggered_at + to_seconds(duration_s) END,
               CASE WHEN status = 'cancelled' THEN 'member:sigrid' END,
               CASE WHEN status = 'cancelled' THEN triggered_at + INTERVAL 2 SECOND END,
               CASE WHEN status = 'cancelled' THEN 'stopped for review' END,
               CASE WHEN status = 'failed' THEN 'definition condition could not be evaluated' END,
               triggered_at
        FROM gen ORDER BY n
    """)
    timings["runs_s"] = time.perf_counter() - t
    t = time.perf_counter()
    con.execute("""
        CREATE TEMP TABLE gen_items AS
        SELECT g.run_id, g.n, g.definition_id, g.action, g.subject_kind, g.status, g.triggered_at, g.duration_s,
               p AS position,
               CASE WHEN g.status = 'failed' THEN 'skipped'
                    WHEN g.status = 'completed-with-failures' AND p % 5 = 0 THEN 'failed'
                    WHEN g.status = 'cancelled' AND p > 3 THEN 'skipped'
                    WHEN g.status = 'running' AND p > 5 THEN 'pending'
                    WHEN (g.n * 31 + p) % 97 = 0 THEN 'skipped'
                    WHEN g.definition_id IN ('post-incident-review-check', 'regulator-rule-change-intake')
                         AND g.n > 999000 AND p = 1 THEN 'awaiting-approval'
                    ELSE 'succeeded' END AS outcome
        FROM gen g, range(1, g.n_items + 1) s(p)
    """)
    con.execute("""
        INSERT INTO run_items (item_id, run_id, position, subject_kind, subject_id, subject_label, subject_snapshot,
                               action, parameters, idempotency_key, outcome, record_ref, skip_reason, failure_cause,
                               failure_class, attempts, retry_due_at, updated_at)
        SELECT printf('%s-%06d', run_id, position), run_id, position, subject_kind,
               printf('S-%07d', (n * 13 + position) % 500000), 'Subject ' || ((n * 13 + position) % 500000),
               '{"status": "active"}', action, '{"title": "generated"}',
               md5(run_id || '/' || position), outcome,
               CASE WHEN outcome = 'succeeded' THEN 'findings:FND-' || md5(run_id || '/' || position)[:12] END,
               CASE WHEN outcome = 'skipped' AND status = 'cancelled' THEN 'cancelled'
                    WHEN outcome = 'skipped' THEN 'the subject no longer matched the condition' END,
               CASE WHEN outcome = 'failed' AND position % 10 = 0 THEN 'messaging integration timed out'
                    WHEN outcome = 'failed' THEN 'recipient has no e-mail address on file' END,
               CASE WHEN outcome = 'failed' AND position % 10 = 0 THEN 'transient'
                    WHEN outcome = 'failed' THEN 'deterministic' END,
               CASE WHEN outcome IN ('pending', 'skipped') THEN 0 WHEN outcome = 'failed' AND position % 10 = 0
                    THEN 2 ELSE 1 END,
               NULL, triggered_at + to_seconds(duration_s)
        FROM gen_items ORDER BY n, position
    """)
    timings["run_items_s"] = time.perf_counter() - t
    t = time.perf_counter()
    con.execute("""
        INSERT INTO item_attempts (item_id, attempt, run_id, actor, started_at, finished_at, outcome, failure_cause,
                                   failure_class, record_ref)
        SELECT printf('%s-%06d', run_id, position), a, run_id, 'engine:schedule',
               triggered_at + INTERVAL 1 SECOND, triggered_at + to_seconds(duration_s),
               outcome,
               CASE WHEN outcome = 'failed' THEN 'generated failure' END,
               CASE WHEN outcome = 'failed' THEN 'transient' END, NULL
        FROM gen_items, range(1, CASE WHEN outcome = 'failed' AND position % 10 = 0 THEN 3 ELSE 2 END) s(a)
        WHERE outcome NOT IN ('pending', 'skipped', 'awaiting-approval')
        ORDER BY n, position, a
    """)
    timings["item_attempts_s"] = time.perf_counter() - t
    t = time.perf_counter()
    con.execute("""
        INSERT INTO approvals (approval_id, item_id, run_id, definition_id, definition_version, opened_at, decision,
                               decided_by, decided_at, reason)
        SELECT 'APR-' || printf('%s-%06d', run_id, position), printf('%s-%06d', run_id, position), run_id,
               definition_id, 1, triggered_at, NULL, NULL, NULL, NULL
        FROM gen_items WHERE outcome = 'awaiting-approval'
    """)
    timings["approvals_s"] = time.perf_counter() - t
    t = time.perf_counter()
    for _, definition in set_aside:
        con.execute(definition)
    timings["indexes_s"] = time.perf_counter() - t
    t = time.perf_counter()
    con.close()
    _count_items_per_run(path)
    timings["run_item_counts_s"] = time.perf_counter() - t
    con = duckdb.connect(path)
    con.execute("CHECKPOINT")
    counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
              for t in ("runs", "run_items", "item_attempts", "trigger_events", "approvals")}
    con.close()
    return {**timings, **{f"{k}_rows": v for k, v in counts.items()}}


def _count_items_per_run(path: str) -> None:
    """Each run's item counts by outcome and failure summary, as the engine keeps them (store.run_counts)."""
    from store.failure_accounts import backfill_failure_accounts
    from store.rollups import backfill_event_rollups, backfill_rollups
    from store.run_counts import backfill_failure_causes, backfill_item_counts
    from store.workspace import Workspace

    ws = Workspace(path)
    with ws.engine.begin() as conn:
        backfill_item_counts(conn)
        backfill_failure_causes(conn)
        backfill_rollups(conn)
        backfill_failure_accounts(conn)
        backfill_event_rollups(conn)
    ws.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="the workspace file to create (must not exist)")
    p.add_argument("--runs", type=int, default=1_000_000)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    a = p.parse_args()
    if Path(a.out).exists():
        raise SystemExit(f"{a.out} exists; choose a new path (the generator never overwrites a workspace)")
    t0 = time.perf_counter()
    prepare(a.out)
    figures = generate(a.out, a.runs, a.threads)
    print({**figures, "total_s": round(time.perf_counter() - t0, 1),
           "file_mb": round(os.path.getsize(a.out) / 2**20)})


if __name__ == "__main__":
    main()
