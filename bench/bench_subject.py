"""A subject's story at scale: p50/p95 of the Subject page's store calls (the register's row and the story)
for subjects picked at random from a large workspace's items.

    .venv/bin/python bench/make_big_workspace.py --out /tmp/big.duckdb      # once, ~2 min, ~3.4 GB
    .venv/bin/python bench/bench_subject.py --db /tmp/big.duckdb [--subjects 40]
    .venv/bin/python bench/bench_subject.py --db postgresql+psycopg://…   # the PostgreSQL workspace of bench/RESULTS.md

Read-only (the workspace is opened read-only; nothing is written). Target (issue 15): p95 ≤ 100 ms at
1,000,000 runs / 20,000,000 items.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--subjects", type=int, default=40)
    ap.add_argument("--seed", type=int, default=15)
    args = ap.parse_args()
    from store.subjects import read_subject
    from store.views.subject_story import read_subject_story
    from store.workspace import Workspace

    ws = Workspace(args.db, read_only=True)
    with ws.read() as conn:
        runs, items = conn.exec_driver_sql("SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM run_items)"
                                           ).one()
        # Items picked by row id from a seeded generator, so that two runs (before and after a change, or
        # against two copies of a workspace) time the same subjects; ``USING SAMPLE`` picks anew each time.
        if conn.dialect.name == "postgresql":  # no rowid there: a seeded sample of its pages, as repeatable
            percent = min(100.0, 100.0 * args.subjects * 20 / max(1, items))
            picked = conn.exec_driver_sql(
                f"SELECT subject_kind, subject_id FROM run_items TABLESAMPLE BERNOULLI ({percent}) "
                f"REPEATABLE ({args.seed}) LIMIT {args.subjects * 2}").all()
        else:
            rows = random.Random(args.seed).sample(range(items), min(items, args.subjects * 2))
            picked = conn.exec_driver_sql(
                f"SELECT subject_kind, subject_id FROM run_items WHERE rowid IN ({', '.join(map(str, rows))})").all()
    picked.sort()
    random.Random(args.seed).shuffle(picked)
    subjects = list(dict.fromkeys((str(k), str(s)) for k, s in picked))[:args.subjects]
    samples, entries = [], []
    with ws.read() as conn:  # warm: plan caches and the buffer pool
        read_subject_story(conn, *subjects[0])
    for kind, sid in subjects:
        t = time.perf_counter()
        with ws.read() as conn:
            read_subject(conn, kind, sid)
            story, _ = read_subject_story(conn, kind, sid)
        samples.append((time.perf_counter() - t) * 1000)
        entries.append(len(story))
    ws.close()
    samples.sort()
    p95 = samples[max(0, int(len(samples) * 0.95) - 1)]
    print(f"workspace: {runs:,} runs, {items:,} items; {len(subjects)} subjects, "
          f"{statistics.median(entries):.0f} story entries each (median); load {os.getloadavg()[0]:.1f}")
    print(f"| Subject page store calls | {statistics.median(samples):.0f} | {p95:.0f} | {samples[-1]:.0f} | "
          f"≤ 100 | {p95 / 100:.2f} |")


if __name__ == "__main__":
    main()
