"""What serialising the audit chain's append costs on PostgreSQL: write transactions with one audit entry each,
from 1, 2 and 4 processes at once, against the same transactions with no audit entry (the floor: the
transaction and its one insert, no chain, no lock).

    .venv/bin/python bench/bench_pg_audit.py [--transactions 400]

Starts its own throwaway PostgreSQL server (tests/pg_server.py). Prints a Markdown table for
bench/RESULTS.md: transactions per second over all processes, and each transaction's p50 / p95 latency.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.load_report import machine, percentile  # noqa: E402 - importable only after the path insert
from tests.pg_server import postgres_server  # noqa: E402 - likewise

WORKER = textwrap.dedent("""\
    import json, pathlib, sys, time
    import sqlalchemy as sa
    from store.workspace import Workspace
    url, folder, name, n, workers, audited = sys.argv[1:7]
    ws = Workspace(url)
    pathlib.Path(f"{folder}/ready-{name}").touch()
    while len(list(pathlib.Path(folder).glob("ready-*"))) < int(workers):
        time.sleep(0.001)
    released, took = time.time(), []
    for i in range(int(n)):
        t = time.perf_counter()
        with ws.transaction() as tx:
            tx.conn.execute(sa.text("INSERT INTO bench_rows VALUES (:k)"), {"k": f"{workers}{audited}-{name}-{i}"})
            if audited == "1":
                tx.audit(f"member:{name}", "bench.appended", "bench", f"{name}-{i}", {"i": i})
        took.append(time.perf_counter() - t)
    print(json.dumps({"took": took, "released": released, "end": time.time()}))
    """)


def run(url: str, workers: int, total: int, audited: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="runledger-pgaudit-") as folder:
        n = total // workers
        procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, folder, f"w{k}", str(n), str(workers),
                                   "1" if audited else "0"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
                 for k in range(workers)]
        outs = [json.loads(p.communicate()[0]) for p in procs]
    took = sorted(t for o in outs for t in o["took"])
    wall = max(o["end"] for o in outs) - min(o["released"] for o in outs)  # all released together
    return {"tps": len(took) / max(wall, 1e-9), "p50_ms": percentile(took, .5) * 1000,
            "p95_ms": percentile(took, .95) * 1000}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--transactions", type=int, default=400)
    a = p.parse_args()
    from store.workspace import Workspace

    with postgres_server() as url:
        ws = Workspace(url)
        with ws.transaction() as tx:
            tx.conn.exec_driver_sql("CREATE TABLE bench_rows (k TEXT PRIMARY KEY)")
        ws.close()
        print(f"Machine: {machine()}; {a.transactions} transactions per line\n")
        print("| processes | audited | transactions/s | p50 ms | p95 ms |")
        print("|---:|---|---:|---:|---:|")
        for workers in (1, 2, 4):
            for audited in (False, True):
                r = run(url, workers, a.transactions, audited)
                print(f"| {workers} | {'yes (chain, lock)' if audited else 'no (floor)'} | {r['tps']:.0f} | "
                      f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
