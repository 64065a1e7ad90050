"""An app replica's members at work, for tests/test_fleet_processes.py: a process that opens the workspace as
``ui.runtime.open_engine`` does with ``RUNLEDGER_ENGINE_LIVE=0`` (no scheduler, no executor loop of its own) and
issues the commands the pages issue — run now, a register change that raises an event, signals posted to an
engine's intake, retries, a cancel, approvals and dismissals — while three ``serve`` workers share the
workspace. Not a pytest module.

    python tests/fleet_app.py --db URL --definitions DIR --registers DIR --integrations DIR --role a|b
        --intake PORT --secret-file FILE

Says ``done {json}`` (what it did) once everything it started is at rest.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from engine import commands  # noqa: E402
from engine.authz import load_actor  # noqa: E402
from engine.intake.client import post_signed  # noqa: E402
from engine.runtime import Engine  # noqa: E402
from store import items as item_store  # noqa: E402
from store.subjects import emit_change  # noqa: E402
from store.workspace import Workspace  # noqa: E402

RACES = (commands.CommandRefused,)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    for name in ("--db", "--definitions", "--registers", "--integrations", "--role", "--secret-file"):
        p.add_argument(name, required=True)
    p.add_argument("--intake", type=int, required=True)
    p.add_argument("--signals", type=int, default=4, help="the signals the other replica posts: wait for their runs")
    a = p.parse_args(argv)
    engine = Engine(Workspace(a.db), definitions_dir=a.definitions, registers_dir=a.registers,
                    integrations_dir=a.integrations)
    engine.load_definitions()  # as the app does when the engine's work is left to `serve`
    sigrid, olga = load_actor(engine.ws, "sigrid"), load_actor(engine.ws, "olga")
    did: dict[str, int] = {}

    def count(what: str, n: int = 1) -> None:
        did[what] = did.get(what, 0) + n

    if a.role == "a":
        for _ in range(2):  # run now, twice: two manual runs of the ticket automation
            count("run now", len(commands.run_now(engine, sigrid, "ticket")))
        for i in range(2, 7):  # five accounts closed in the core system (none of m.1, the tickets'): an event each
            with engine.ws.transaction() as tx:
                emit_change(tx, "account.deactivated", f"ACC-{i:03d}", source="core-banking", actor="member:sigrid")
            count("event")
        engine.dispatch_events()
    else:
        secret = Path(a.secret_file).read_text().strip()
        for i in range(a.signals):
            body = json.dumps({"reference": f"EBA/GL/2026/{10 + i}", "regulator": "EBA",
                               "title": f"Guideline {i}", "effective_date": "2027-01-01"}).encode()
            status, answer = post_signed("127.0.0.1", a.intake, "/signals/regulator-feed", secret, body)
            assert status == 200, (status, answer)
            count("signal")
        [halt] = commands.run_now(engine, sigrid, "halt")
        try:
            commands.cancel_run(engine, sigrid, halt, "started by mistake")
            count("cancel")
        except RACES:
            count("cancel refused (the run had finished)")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # the member's follow-up, until nothing is left for them
        with engine.ws.read() as conn:
            failed = sorted({r for r, _ in item_store.read_failed_item_ids(conn)})
            waiting = item_store.read_open_approval_items(conn)
            left = conn.execute(sa.text("SELECT count(*) FROM run_items WHERE outcome IN "
                                        "('pending', 'in-flight')")).scalar_one()
        for run_id in failed:
            try:
                commands.retry_run(engine, sigrid, run_id)
                count("retry")
            except RACES:
                pass  # the other replica retried it first, or a worker's automatic retry did
        for item in waiting:
            number = int(item["run_id"].removeprefix("RUN-"))
            try:
                if (a.role == "a") == (number % 2 == 0):  # each replica decides its half
                    if number % 4 < 2:
                        commands.approve_item(engine, olga, item["item_id"])
                        count("approve")
                    else:
                        commands.dismiss_item(engine, olga, item["item_id"], "not applicable to us")
                        count("dismiss")
            except RACES:
                pass
        with engine.ws.read() as conn:
            signalled = conn.execute(sa.text("SELECT count(*) FROM runs WHERE trigger_kind = 'signal'")).scalar_one()
        if not failed and not waiting and not left and signalled >= a.signals:
            break
        time.sleep(0.5)
    print("done " + json.dumps({"did": did, "at": dt.datetime.now(dt.UTC).isoformat()}), flush=True)
    engine.shutdown()
    engine.ws.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
