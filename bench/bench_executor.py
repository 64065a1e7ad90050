"""Executor throughput: a run over many subjects, every outcome durable, against a commit-per-item baseline.

Run by hand (not part of pytest)::

    .venv/bin/python bench/bench_executor.py                 # 100,000 grouped + 2,000 per-item baseline
    .venv/bin/python bench/bench_executor.py --subjects 20000 --profile   # cProfile the grouped run

Each scenario runs in its own subprocess so its peak RSS (``ru_maxrss``) is its own. The grouped scenario
is the real engine path: ``Engine.fire(kind="manual")`` → match (one pending item per subject) → execute
in adaptive group-committed batches, each batch's outcomes, attempts, findings, idempotency entries and
audit entries written in one transaction. The baseline is the same executor with ``batch_max=1`` (one
claim transaction and one settle transaction per item), run on fewer items and extrapolated linearly to
the grouped run's size — labelled as an extrapolation wherever it is printed.

After each scenario the script checks, with SQL, that what it timed was really done: every item final,
one finding and one idempotency entry per succeeded item, the audit chain intact.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import os
import platform
import pstats
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFINITION = textwrap.dedent("""\
    id: bench-findings
    title: Benchmark — a finding for every active account
    trigger: {kind: schedule, cron: "0 6 * * mon"}
    condition:
      subject: accounts
      where:
        - {field: status, op: eq, value: active, reason: the account is no longer active}
    actions:
      - actioner: findings.create
        params:
          title: "Review {{ subject.name }} ({{ subject.account_id }})"
          severity: medium
          owner: "{{ subject.manager }}"
          description: "Risk rating {{ subject.risk_rating }}"
    policies:
      retry: {max_attempts: 1}
    """)


def _seed(ws: Any, n: int) -> None:
    from engine.registers import load_register_folder
    from store.subjects import insert_subjects

    load_register_folder(ws, ROOT / "registers", "bench")  # the demo organization's registers
    for start in range(1, n + 1, 10_000):  # in chunks: the seeding is not what is measured, RSS included
        rows = [{"account_id": f"ACC-{i:07d}", "name": f"Member {i}", "manager": f"manager.{i % 40}",
                 "status": "active", "kyc_review_due": dt.date(2026, 7, 1),
                 "risk_rating": ("low", "medium", "high")[i % 3]} for i in range(start, min(n + 1, start + 10_000))]
        with ws.transaction() as tx:
            insert_subjects(tx, "accounts", rows)


def _check(ws: Any, run_id: str, n: int) -> dict[str, Any]:
    """What was timed was really done and is durable: counted with SQL after the run."""
    import sqlalchemy as sa

    with ws.read() as conn:
        q = lambda sql: conn.execute(sa.text(sql), {"r": run_id}).one()  # noqa: E731
        outcomes = dict(conn.execute(sa.text(
            "SELECT outcome, count(*) FROM run_items WHERE run_id = :r GROUP BY outcome"), {"r": run_id}).all())
        findings, distinct_keys = q("SELECT count(*), count(DISTINCT idempotency_key) FROM findings")
        ledger = q("SELECT count(*) FROM idempotency_records")[0]
        attempts = q("SELECT count(*) FROM item_attempts WHERE run_id = :r")[0]
        status = q("SELECT status FROM runs WHERE run_id = :r")[0]
        item_audit = q("SELECT count(*) FROM audit_log WHERE entity_kind = 'run_item'")[0]
    verdict = ws.verify_audit()
    ok = (outcomes == {"succeeded": n} and findings == distinct_keys == ledger == attempts == item_audit == n
          and status == "completed" and verdict.intact)
    return {"outcomes": outcomes, "findings": findings, "ledger": ledger, "attempts": attempts,
            "item_audit_entries": item_audit, "run_status": status, "audit_chain_intact": verdict.intact,
            "audit_entries": verdict.entries, "verified": ok}


def _tune(ws: Any) -> None:
    """Experiments only: ``CKPT=256MB`` / ``MEMLIMIT=…`` set DuckDB's checkpoint threshold / memory limit."""
    for env, setting in (("CKPT", "checkpoint_threshold"), ("MEMLIMIT", "memory_limit")):
        if os.environ.get(env):
            with ws.read() as c:
                c.exec_driver_sql(f"SET GLOBAL {setting} = '{os.environ[env]}'")


def seed_workspace(path: str, defs: Path, n: int) -> dict[str, Any]:
    """A workspace with ``n`` active accounts and the definition loaded — made in its own process, as an
    engine opens a workspace that already holds its registers."""
    from store.workspace import Workspace

    defs.mkdir(exist_ok=True)
    (defs / "bench-findings.yaml").write_text(DEFINITION)
    ws = Workspace(path)
    t = time.perf_counter()
    _seed(ws, n)
    seed_s = time.perf_counter() - t
    ws.close()
    return {"seed_s": seed_s}


def run_scenario(path: str, defs: Path, n: int, batch_max: int, profile: bool) -> dict[str, Any]:
    from engine.clock import SystemClock
    from engine.runtime import Engine
    from store.runs import claim_event, create_run, read_undispatched_events
    from store.subjects import record_trigger_event
    from store.workspace import Workspace

    ws = Workspace(path)
    _tune(ws)
    engine = Engine(ws, SystemClock(), defs, batch_max=batch_max, registers_dir=ROOT / "registers")
    engine.load_definitions(actor="bench")
    prof = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    with engine.ws.transaction() as tx:  # the trigger event, as a member's "run now" records it
        record_trigger_event(tx, kind="manual", event_type="run.requested", source="bench",
                             occurred_at=engine.clock.now(), definition_id="bench-findings")
    with engine.ws.read() as conn:
        event = read_undispatched_events(conn)[0]
    with engine.ws.transaction() as tx:
        run_id = create_run(tx, definition_id="bench-findings", definition_version=1, event=event, actor="bench")
        claim_event(tx, event["event_id"])
    assert run_id
    engine.executor.match_run(run_id, "bench")
    t1 = time.perf_counter()
    engine.executor.execute_run(run_id, "bench")
    t2 = time.perf_counter()
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the checks below
    if prof:
        prof.disable()
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(45)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    check = _check(ws, run_id, n)
    ws.close()
    return {"items": n, "batch_max": batch_max, "match_s": t1 - t0, "execute_s": t2 - t1,
            "total_s": t2 - t0, "items_per_s": n / (t2 - t0), "execute_items_per_s": n / (t2 - t1),
            "peak_rss_mb": peak_rss_mb, "db_mb": os.path.getsize(path) / 2**20, **check}


def measure(n: int, batch_max: int, profile: bool) -> dict[str, Any]:
    """Seed in one process, run in another (whose peak RSS is the run's)."""
    with tempfile.TemporaryDirectory(prefix="runledger-bench-") as tmp:
        path, defs = str(Path(tmp) / "bench.duckdb"), Path(tmp) / "defs"
        seeded = _child(["--scenario", "seed", "--db", path, "--defs", str(defs), "--subjects", str(n)])
        ran = _child(["--scenario", "run", "--db", path, "--defs", str(defs), "--subjects", str(n),
                      "--batch-max", str(batch_max)] + (["--profile"] if profile else []))
    return seeded | ran


def _child(args: list[str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    sys.stderr.write(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import duckdb
    import sqlalchemy
    return (f"{os.cpu_count()} CPU ({cpu}), Python {platform.python_version()}, duckdb {duckdb.__version__}, "
            f"SQLAlchemy {sqlalchemy.__version__}, {platform.system()} {platform.release()}")


def report(grouped: dict[str, Any], base: dict[str, Any]) -> str:
    extrap = grouped["items"] / base["items_per_s"]
    lines = [
        f"Date: {dt.date.today().isoformat()}  Machine: {_machine()}",
        "",
        "| scenario | items | batch | match s | execute s | total s | items/s (total) | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| grouped (adaptive batches) | {grouped['items']:,} | ≤{grouped['batch_max']} | {grouped['match_s']:.2f} | "
        f"{grouped['execute_s']:.2f} | {grouped['total_s']:.2f} | **{grouped['items_per_s']:,.0f}** | "
        f"{grouped['peak_rss_mb']:.0f} |",
        f"| per-item commit (batch_max=1), measured | {base['items']:,} | 1 | {base['match_s']:.2f} | "
        f"{base['execute_s']:.2f} | {base['total_s']:.2f} | **{base['items_per_s']:,.0f}** | "
        f"{base['peak_rss_mb']:.0f} |",
        f"| per-item commit, EXTRAPOLATED to {grouped['items']:,} items | ({grouped['items']:,}) | 1 | | | "
        f"~{extrap:,.0f} (≈{extrap / 60:.0f} min) | ~{base['items_per_s']:,.0f} | not measured |",
        "",
        f"Group commit speed-up: {grouped['items_per_s'] / base['items_per_s']:.0f}×. "
        f"Grouped run checked after timing: outcomes {grouped['outcomes']}, findings {grouped['findings']:,}, "
        f"ledger {grouped['ledger']:,}, attempts {grouped['attempts']:,}, item audit entries "
        f"{grouped['item_audit_entries']:,}, run {grouped['run_status']}, audit chain "
        f"{'intact' if grouped['audit_chain_intact'] else 'BROKEN'} ({grouped['audit_entries']:,} entries) → "
        f"{'verified' if grouped['verified'] else 'NOT VERIFIED'}; baseline "
        f"{'verified' if base['verified'] else 'NOT VERIFIED'}. Database file {grouped['db_mb']:.0f} MB. "
        f"Seeding {grouped['items']:,} accounts (untimed) took {grouped['seed_s']:.1f} s.",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, default=100_000, help="items in the grouped run")
    p.add_argument("--baseline-items", type=int, default=2_000, help="items in the per-item-commit run")
    p.add_argument("--batch-max", type=int, default=4000, help="the engine default")
    p.add_argument("--profile", action="store_true", help="cProfile the grouped run (to stderr)")
    p.add_argument("--scenario", choices=["seed", "run"], help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    p.add_argument("--defs", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.scenario == "seed":
        print(json.dumps(seed_workspace(a.db, Path(a.defs), a.subjects)))
        return
    if a.scenario == "run":
        print(json.dumps(run_scenario(a.db, Path(a.defs), a.subjects, a.batch_max, a.profile), default=str))
        return
    grouped = measure(a.subjects, a.batch_max, a.profile)
    base = measure(a.baseline_items, 1, False)
    print(report(grouped, base))
    target = grouped["items_per_s"] >= 20_000 and grouped["peak_rss_mb"] < 400 and grouped["verified"]
    print(f"\nTarget (≥ 20,000 items/s, peak RSS < 400 MB, verified): {'MET' if target else 'NOT MET'}")


if __name__ == "__main__":
    main()
