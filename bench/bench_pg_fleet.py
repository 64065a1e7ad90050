"""The 100,000-item run on PostgreSQL, worked by 1, 2 and 4 engine workers, beside PostgreSQL's own floor.

Run by hand (not part of pytest; it starts its own throwaway PostgreSQL server, as the tests do)::

    .venv/bin/python bench/bench_pg_fleet.py                  # 100,000 items; 1, 2, 4 workers
    .venv/bin/python bench/bench_pg_fleet.py --subjects 20000 --workers 1 2

For each fleet size, a fresh database with the demo organization's accounts register and ``--subjects`` active
accounts (bench_executor's definition: a finding for each). One process creates and matches the run and works
it (the run's worker); the others, started first, help (``Engine.help_with_runs``: their claims skip the rows
another worker's claim holds). Timed: from the match's end to the run's completion. Each worker process
reports its own peak RSS and how many items it settled. Then SQL checks that it was all really done (every
item succeeded, one finding, ledger entry, attempt and audit entry each, the chain intact).

The floor: the same rows — findings, ledger entries, attempts, item outcomes — written by PostgreSQL itself
with ``INSERT … SELECT`` / ``UPDATE`` from the matched items, no Python per item (and no audit chain).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_executor import _check, _machine, seed_workspace  # noqa: E402


def _database(server: str, name: str) -> str:
    import sqlalchemy as sa

    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server.rsplit("/", 1)[0] + f"/{name}"


def owner(url: str, defs: Path, ready: Path, helpers: int) -> dict[str, Any]:
    """Create, match and work the run; the helpers (waiting for ``ready``) join once it is matched."""
    from engine.clock import SystemClock
    from engine.runtime import Engine
    from store.runs import claim_event, create_run, read_undispatched_events
    from store.subjects import record_trigger_event
    from store.workspace import Workspace

    ws = Workspace(url)
    engine = Engine(ws, SystemClock(), defs, registers_dir=ROOT / "registers")
    engine.load_definitions(actor="bench")
    while len(list(ready.parent.glob("helper-*"))) < helpers:  # every helper imported and connected
        time.sleep(0.05)
    t0 = time.perf_counter()
    with ws.transaction() as tx:
        record_trigger_event(tx, kind="manual", event_type="run.requested", source="bench",
                             occurred_at=engine.clock.now(), definition_id="bench-findings")
    with ws.read() as conn:
        event = read_undispatched_events(conn)[0]
    with ws.transaction() as tx:
        run_id = create_run(tx, definition_id="bench-findings", definition_version=1, event=event, actor="bench",
                            worker=engine.executor.worker())
        claim_event(tx, event["event_id"])
    assert run_id
    engine.executor.match_run(run_id, "bench")
    t1 = time.perf_counter()
    ready.write_text(run_id)
    engine.executor.execute_run(run_id, "bench")
    while True:  # the helpers' last batches settle too
        with ws.read() as conn:
            status = conn.exec_driver_sql(f"SELECT status FROM runs WHERE run_id = '{run_id}'").scalar()
        if status == "completed":
            break
        time.sleep(0.01)
    t2 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mine = _settled_by(ws, engine.executor.lease.worker_id)
    engine.shutdown()
    ws.close()
    return {"run_id": run_id, "match_s": t1 - t0, "execute_s": t2 - t1, "rss_mb": rss, "items": mine}


def helper(url: str, defs: Path, ready: Path, name: str) -> dict[str, Any]:
    from engine.clock import SystemClock
    from engine.runtime import Engine
    from store.workspace import Workspace

    ws = Workspace(url)
    engine = Engine(ws, SystemClock(), defs, registers_dir=ROOT / "registers")
    engine.load_definitions(actor="bench")
    engine.executor.worker()
    (ready.parent / f"helper-{name}").touch()
    while not ready.exists():
        time.sleep(0.01)
    run_id = ready.read_text()
    while True:
        engine.help_with_runs()
        with ws.read() as conn:
            status = conn.exec_driver_sql(f"SELECT status FROM runs WHERE run_id = '{run_id}'").scalar()
        if status == "completed":
            break
        time.sleep(0.01)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mine = _settled_by(ws, engine.executor.lease.worker_id)
    engine.shutdown()
    ws.close()
    return {"rss_mb": rss, "items": mine}


def _settled_by(ws: Any, worker: str) -> int:
    import sqlalchemy as sa

    with ws.read() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM run_items WHERE claimed_by = :w"),
                                {"w": worker}).scalar_one())


def floor(url: str, n: int) -> float:
    """The run's rows written by PostgreSQL alone, from pending items: the seconds it took."""
    import sqlalchemy as sa

    from store.workspace import Workspace

    ws = Workspace(url)
    with ws.engine.begin() as conn:  # pending items, as matching leaves them (their insert is not timed)
        conn.execute(sa.text(
            "INSERT INTO run_items (item_id, run_id, position, subject_kind, subject_id, subject_label, "
            "subject_snapshot, action, parameters, idempotency_key, outcome, attempts, updated_at) "
            "SELECT 'F-' || account_id, 'F', row_number() OVER (ORDER BY account_id), 'accounts', account_id, "
            "name, '{}', 'findings.create', '{}', md5(account_id), 'pending', 0, now() FROM accounts"))
    t = time.perf_counter()
    with ws.engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO findings (finding_id, subject_kind, subject_id, title, severity, owner, status, details, "
            "source_item_id, idempotency_key, created_at) SELECT 'FND-' || item_id, 'accounts', subject_id, "
            "'Review ' || subject_label, 'medium', 'm', 'open', '{}', item_id, idempotency_key, now() FROM run_items "
            "WHERE run_id = 'F'"))
        conn.execute(sa.text(
            "INSERT INTO idempotency_records (idempotency_key, actioner, params_hash, outcome, record_ref, "
            "item_id, created_at) SELECT idempotency_key, 'findings.create', md5(parameters), 'succeeded', "
            "'findings:FND-' || item_id, item_id, now() FROM run_items WHERE run_id = 'F'"))
        conn.execute(sa.text(
            "INSERT INTO item_attempts (item_id, attempt, run_id, started_at, finished_at, outcome, record_ref, "
            "actor) SELECT item_id, 1, run_id, now(), now(), 'succeeded', 'findings:FND-' || item_id, 'floor' "
            "FROM run_items WHERE run_id = 'F'"))
        conn.execute(sa.text(
            "UPDATE run_items SET outcome = 'succeeded', attempts = 1, record_ref = 'findings:FND-' || item_id, "
            "updated_at = now() WHERE run_id = 'F'"))
    seconds = time.perf_counter() - t
    ws.close()
    return seconds


def measure(server: str, n: int, workers: int, tmp: Path) -> dict[str, Any]:
    url = _database(server, f"fleet_{workers}")
    defs = tmp / f"defs-{workers}"
    t = time.perf_counter()
    seed_workspace(url, defs, n)
    seeded = time.perf_counter() - t
    gate = tmp / f"gate-{workers}"
    gate.mkdir()
    ready = gate / "run"
    procs = [subprocess.Popen([sys.executable, __file__, "--role", "helper", "--db", url, "--defs", str(defs),
                               "--ready", str(ready), "--name", str(k)], stdout=subprocess.PIPE, text=True)
             for k in range(workers - 1)]
    own = subprocess.run([sys.executable, __file__, "--role", "owner", "--db", url, "--defs", str(defs),
                          "--ready", str(ready), "--helpers", str(workers - 1)], capture_output=True, text=True)
    if own.returncode:
        raise SystemExit(own.stderr)
    result = json.loads(own.stdout.strip().splitlines()[-1])
    helpers = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        helpers.append(json.loads(out.strip().splitlines()[-1]))
    from store.workspace import Workspace
    ws = Workspace(url)
    check = _check(ws, result["run_id"], n)
    with ws.read() as conn:  # what the run left on disk, tables and their indexes, per item
        sizes = {t: int(conn.exec_driver_sql(f"SELECT pg_total_relation_size('{t}')").scalar_one()) for t in (
            "run_items", "item_attempts", "audit_log", "findings", "idempotency_records")}
    ws.close()
    return {"workers": workers, "seed_s": seeded, "owner": result, "helpers": helpers,
            "bytes_per_item": {t: b / n for t, b in sizes.items()}, **check}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, default=100_000)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--role", choices=["owner", "helper"])
    p.add_argument("--db")
    p.add_argument("--defs")
    p.add_argument("--ready")
    p.add_argument("--helpers", type=int, default=0)
    p.add_argument("--name")
    a = p.parse_args()
    if a.role == "owner":
        print(json.dumps(owner(a.db, Path(a.defs), Path(a.ready), a.helpers)))
        return 0
    if a.role == "helper":
        print(json.dumps(helper(a.db, Path(a.defs), Path(a.ready), a.name)))
        return 0
    from tests.pg_server import postgres_server

    print(f"Machine: {_machine()}", flush=True)
    with postgres_server() as server, tempfile.TemporaryDirectory(prefix="runledger-pgfleet-") as tmp:
        url = _database(server, "floor")
        seed_workspace(url, Path(tmp) / "defs-floor", a.subjects)
        floor_s = floor(url, a.subjects)
        print(f"floor (PostgreSQL alone, INSERT … SELECT / UPDATE): {floor_s:.2f} s, "
              f"{a.subjects / floor_s:,.0f} items/s", flush=True)
        print("| workers | match s | execute s | items/s | × floor time | items per worker | RSS MB per worker |"
              " verified |", flush=True)
        print("|---:|---:|---:|---:|---:|---|---|---|", flush=True)
        for w in a.workers:
            r = measure(server, a.subjects, w, Path(tmp))
            o = r["owner"]
            per = [o["items"], *(h["items"] for h in r["helpers"])]
            rss = [o["rss_mb"], *(h["rss_mb"] for h in r["helpers"])]
            print(f"| {w} | {o['match_s']:.2f} | {o['execute_s']:.2f} | {a.subjects / o['execute_s']:,.0f} | "
                  f"{o['execute_s'] / floor_s:.1f} | {' / '.join(f'{x:,}' for x in per)} | "
                  f"{' / '.join(f'{x:.0f}' for x in rss)} | {r['verified']} |", flush=True)
            last = r
        print("bytes per item on disk (table and indexes): " + ", ".join(
            f"{t} {b:,.0f}" for t, b in last["bytes_per_item"].items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
