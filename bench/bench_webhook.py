"""A run whose action is a webhook: 10,000 items to a local receiver that answers each request in 50 ms.

Run by hand (not part of pytest)::

    .venv/bin/python bench/bench_webhook.py                          # 10,000 items, concurrency 8, 16, 32, 64
    .venv/bin/python bench/bench_webhook.py --items 2000 --concurrency 8

The receiver is the standard library's threading HTTP server on loopback, in a process of its own (so its
work does not share the engine's interpreter), answering ``201 {"id": …}`` after ``--latency`` seconds and
counting the distinct Idempotency-Keys it received. The engine is the real one: ``Engine.fire`` → match →
execute in group-committed batches, the integration's requests concurrent up to its ``concurrency``, every
outcome, attempt (with the answer as evidence), ledger entry and audit entry written. After the run the
script checks with SQL that every item succeeded with a ``webhook:bench:<id>`` reference and evidence, and
that the receiver saw each key once.

The floor: ``items × latency / concurrency`` — the time the receiver alone needs at that concurrency.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFINITION = textwrap.dedent("""\
    id: bench-webhook
    title: Benchmark — a ticket for every active account
    trigger: {kind: schedule, cron: "0 6 * * mon"}
    condition:
      subject: accounts
      where:
        - {field: status, op: eq, value: active, reason: the account is no longer active}
    actions:
      - actioner: webhook:bench
        params:
          title: "Review {{ subject.name }} ({{ subject.account_id }})"
          owner: "{{ subject.manager }}"
    policies:
      retry: {max_attempts: 1}
    """)


def _receiver(port_out: Any, latency: float, counts: Any) -> None:
    keys: set[str] = set()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            time.sleep(latency)
            key = self.headers.get("Idempotency-Key", "")
            with lock:
                keys.add(key)
                counts.value = len(keys)
            body = json.dumps({"id": key[:12]}).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class Server(ThreadingHTTPServer):
        request_queue_size = 1024  # listen()'s backlog: the default 5 resets connections a burst of 64 opens
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    port_out.put(server.server_address[1])
    server.serve_forever()


def run(items: int, concurrency: int, latency: float) -> dict[str, Any]:
    from bench.bench_executor import _seed
    from engine.clock import SystemClock
    from engine.runtime import Engine
    from store.workspace import Workspace

    port_q: Any = multiprocessing.Queue()
    counts: Any = multiprocessing.Value("i", 0)
    receiver = multiprocessing.Process(target=_receiver, args=(port_q, latency, counts), daemon=True)
    receiver.start()
    port = port_q.get(timeout=10)
    try:
        with tempfile.TemporaryDirectory(prefix="runledger-bench-") as tmp:
            folder = Path(tmp)
            (folder / "definitions").mkdir()
            (folder / "integrations").mkdir()
            (folder / "definitions" / "bench-webhook.yaml").write_text(DEFINITION)
            (folder / "integrations" / "bench.yaml").write_text(
                f"id: bench\nkind: webhook\nurl: http://127.0.0.1:{port}/tickets\nrecord_id: id\n"
                f"concurrency: {concurrency}\ntimeout_seconds: 10\n")
            ws = Workspace(str(folder / "ws.duckdb"))
            _seed(ws, items)
            engine = Engine(ws, SystemClock(), folder / "definitions", registers_dir=ROOT / "registers",
                            integrations_dir=folder / "integrations")
            engine.load_definitions(actor="bench")
            t0 = time.perf_counter()
            [run_id] = engine.fire("bench-webhook", kind="manual", actor_name="bench")
            elapsed = time.perf_counter() - t0
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            import sqlalchemy as sa
            with ws.read() as conn:
                outcomes = dict(conn.execute(sa.text("SELECT outcome, count(*) FROM run_items WHERE run_id = :r "
                                                     "GROUP BY 1"), {"r": run_id}).all())
                refs = conn.execute(sa.text("SELECT count(*) FROM run_items WHERE run_id = :r AND record_ref LIKE "
                                            "'webhook:bench:%'"), {"r": run_id}).scalar()
                evidence = conn.execute(sa.text("SELECT count(*) FROM item_attempts WHERE run_id = :r AND "
                                                "evidence IS NOT NULL"), {"r": run_id}).scalar()
                batches = conn.execute(sa.text("SELECT count(DISTINCT updated_at) FROM run_items WHERE "
                                               "run_id = :r"), {"r": run_id}).scalar()  # one write time a batch
                causes = dict(conn.execute(sa.text("SELECT failure_cause, count(*) FROM run_items WHERE run_id = :r "
                                                   "AND outcome = 'failed' GROUP BY 1"), {"r": run_id}).all())
            intact = ws.verify_audit().intact
            engine.shutdown()
            ws.close()
    finally:
        receiver.terminate()
    floor = items * latency / concurrency
    return {"items": items, "concurrency": concurrency, "latency_s": latency, "elapsed_s": round(elapsed, 2),
            "items_per_s": round(items / elapsed), "floor_s": round(floor, 2), "of_floor": round(floor / elapsed, 2),
            "peak_rss_mb": round(rss), "outcomes": outcomes, "remote_refs": refs, "evidence_rows": evidence,
            "distinct_keys_received": counts.value, "write_batches": batches, "audit_intact": intact,
            "failure_causes": causes,
            "verified": outcomes == {"succeeded": items} and refs == evidence == counts.value == items and intact}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--concurrency", type=int, action="append")
    a = p.parse_args()
    print(f"{os.cpu_count()} CPUs; {a.items:,} items; receiver answers in {a.latency * 1000:g} ms")
    print("| concurrency | elapsed s | items/s | floor s (items × latency / concurrency) | floor / elapsed | "
          "peak RSS MB | write batches | verified |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    for c in a.concurrency or [8, 16, 32, 64]:
        r = run(a.items, c, a.latency)
        print(f"| {c} | {r['elapsed_s']} | {r['items_per_s']:,} | {r['floor_s']} | {r['of_floor']} | "
              f"{r['peak_rss_mb']} | {r['write_batches']} | {r['verified']} |", flush=True)
        if not r["verified"]:
            print(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
