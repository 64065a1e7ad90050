"""The load benchmark's workspace: the demo quarter to browse, plus a register the big run matches.

Built once per benchmark (``build_base``) and copied for every round, so the solo and the loaded rounds
start from identical files. Read back (``read_run_timing``) only after the server has stopped: DuckDB
admits one process per file, and while the app holds it nothing else may even read it.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFINITION_ID = "bench-load"
MANAGER = "bench.load"  # only the benchmark's accounts have it, so the demo's accounts stay out of the run

# Like bench_executor's definition (a finding per account), but its condition selects only the benchmark's
# accounts, and its cron fires once a year at 03:00 on 1 January: it runs when the benchmark asks.
DEFINITION = textwrap.dedent(f"""\
    id: {DEFINITION_ID}
    title: Load benchmark — a finding for every benchmark account
    trigger: {{kind: schedule, cron: "0 3 1 1 *"}}
    condition:
      subject: accounts
      where:
        - {{field: manager, op: eq, value: {MANAGER}, reason: the account moved to another manager}}
        - {{field: status, op: eq, value: active, reason: the account is no longer active}}
    actions:
      - actioner: findings.create
        params:
          title: "Review {{{{ subject.name }}}} ({{{{ subject.account_id }}}})"
          severity: medium
          owner: "{{{{ subject.manager }}}}"
          description: "Risk rating {{{{ subject.risk_rating }}}}"
    policies:
      retry: {{max_attempts: 1}}
    """)


def copy_workspace(src: Path, dst: Path) -> None:
    """A DuckDB file and its write-ahead log, if one was left."""
    shutil.copyfile(src, dst)
    if Path(f"{src}.wal").exists():
        shutil.copyfile(f"{src}.wal", f"{dst}.wal")


def build_base(path: Path, defs: Path, subjects: int) -> dict[str, Any]:
    """Demo quarter (by the real engine, in its own process) + ``subjects`` accounts + the definitions folder.

    The accounts' KYC review falls due in 2099, so the demo's weekly KYC review never matches them should its
    Monday cron fire during a round."""
    from store.subjects import insert_subjects
    from store.workspace import Workspace

    subprocess.run([sys.executable, "-m", "engine", "--db", str(path), "demo"], cwd=ROOT, check=True,
                   capture_output=True, text=True)
    shutil.copytree(ROOT / "definitions", defs)
    (defs / f"{DEFINITION_ID}.yaml").write_text(DEFINITION)
    ws = Workspace(str(path))
    try:
        for start in range(1, subjects + 1, 10_000):  # in chunks, as bench_executor seeds
            rows = [{"account_id": f"LOAD-{i:07d}", "name": f"Load Member {i}", "manager": MANAGER,
                     "status": "active", "kyc_review_due": dt.date(2099, 12, 31),
                     "risk_rating": ("low", "medium", "high")[i % 3]}
                    for i in range(start, min(subjects + 1, start + 10_000))]
            with ws.transaction() as tx:
                insert_subjects(tx, "accounts", rows)
        with ws.read() as conn:
            import sqlalchemy as sa
            runs = conn.execute(sa.text("SELECT count(*) FROM runs")).scalar_one()
    finally:
        ws.close()
    return {"demo_runs": int(runs), "subjects": subjects}


def read_run_timing(path: Path, run_id: str, load_end: float | None = None) -> dict[str, Any]:
    """The big run's own timestamps and outcome counts, as the engine wrote them (after the server stopped).

    Throughput is items over (completed_at − triggered_at): matching and execution, the engine's clock on
    both ends, as ``bench_executor`` counts its "total". A batch settles its items with one write time, so
    the items' ``updated_at`` also gives the executor's batches (how many, their median size) and — when the
    sessions stopped (``load_end``) before the run ended — how many items it had settled by then: the
    throughput under load is then those items over (load_end − triggered_at)."""
    import sqlalchemy as sa

    from store.workspace import Workspace

    ws = Workspace(str(path))
    try:
        with ws.read() as conn:
            run = conn.execute(sa.text(
                "SELECT status, triggered_at, started_at, completed_at FROM runs WHERE run_id = :r"),
                {"r": run_id}).mappings().one()
            outcomes = dict(conn.execute(sa.text(
                "SELECT outcome, count(*) FROM run_items WHERE run_id = :r GROUP BY outcome"),
                {"r": run_id}).all())
            settled = conn.execute(sa.text(
                "SELECT updated_at, count(*) FROM run_items WHERE run_id = :r "
                "AND outcome NOT IN ('pending', 'in-flight') GROUP BY updated_at ORDER BY updated_at"),
                {"r": run_id}).all()
        intact = ws.verify_audit().intact
    finally:
        ws.close()
    items = sum(outcomes.values())
    triggered, completed = _epoch(run["triggered_at"]), _epoch(run["completed_at"])
    execute_s = completed - _epoch(run["started_at"])
    sizes = sorted(n for _, n in settled)
    cut_short = load_end is not None and load_end < completed
    window_end = load_end if cut_short else completed
    done = sum(n for t, n in settled if _epoch(t) <= window_end)
    return {"status": run["status"], "items": items, "outcomes": outcomes, "audit_intact": intact,
            "triggered_at": triggered, "completed_at": completed, "window_end": window_end,
            "cut_short": cut_short, "items_in_window": done, "batches": len(sizes),
            "median_batch": float(sizes[len(sizes) // 2]) if sizes else 0.0,
            "match_s": completed - triggered - execute_s, "execute_s": execute_s, "total_s": completed - triggered,
            "items_per_s": done / (window_end - triggered) if window_end > triggered else 0.0}


def _epoch(t: dt.datetime) -> float:
    """Stored times are UTC; DuckDB may hand them back naive."""
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()
