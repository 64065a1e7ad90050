"""One engine worker of the distributed kill harness (``fleet_harness``): a process of a fleet sharing one
PostgreSQL workspace, killed at a seeded point like a kill-anywhere life. Not a pytest module.

    python tests/faults/fleet_worker.py --db URL --defs DIR --integrations DIR --rounds R [--kill C:N | wall-clock:S]

It does what every process of a fleet does, over and over, until the workload's rounds are worked to rest:
takes over the work of workers whose lease lapsed (``Engine.recover`` at start, ``resume_interrupted`` after),
dispatches waiting events, runs due retries, fires the rounds (each occurrence once, whoever fires it), and the
member's work (retries of failed runs, the approvals) — which other workers may be doing at the same moment,
so a command another worker won is refused and left to it. The kill points are ``kill_driver``'s hooks.

Lines: ``ready``, ``kill CATEGORY POINT`` (then SIGKILL), ``done {json}`` (the rounds at rest; points passed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

import sqlalchemy as sa  # noqa: E402
from kill_driver import HookedWorkspace, KillHooks, install, say  # noqa: E402
from kill_workload import (  # noqa: E402
    DEFINITIONS,
    START,
    WorkloadFindings,
    approval_rule,
    decide_approvals,
    fire_rounds,
    retry_failed_runs,
)

from core.states import TransitionRefused  # noqa: E402
from engine.actioners.modules import default_actioners  # noqa: E402
from engine.clock import SystemClock  # noqa: E402
from engine.commands import CommandRefused  # noqa: E402
from engine.executor import LeaseLapsed  # noqa: E402
from engine.runtime import Engine, schedule_event_id  # noqa: E402
from store import items as item_store  # noqa: E402
from store.errors import WorkTakenOver, WriteConflict  # noqa: E402

# What one worker may meet because another is doing the same at the same moment: left to the other.
RACES = (CommandRefused, TransitionRefused, WorkTakenOver, LeaseLapsed, WriteConflict)
log = logging.getLogger("fleet-worker")


def tolerant(step: Callable[[], object], what: str) -> None:
    try:
        step()
    except RACES as exc:
        log.info("%s: %s: %s", what, type(exc).__name__, exc)


def at_rest(engine: Engine, rounds: int) -> bool:
    """Every round fired and nothing left for any worker to do: no event waiting, no item pending, in flight,
    failed or due a retry, and no approval the member decides still open."""
    wanted = {schedule_event_id(d, START + dt.timedelta(weeks=r))
              for r in range(rounds) for d in DEFINITIONS}
    with engine.ws.read() as conn:
        fired = set(conn.execute(sa.text("SELECT event_id FROM trigger_events")).scalars())
        left = conn.execute(sa.text(
            "SELECT (SELECT count(*) FROM trigger_events WHERE dispatched_at IS NULL) + "
            "(SELECT count(*) FROM run_items WHERE outcome IN ('pending', 'in-flight', 'failed'))")).scalar_one()
    if not wanted <= fired or left:
        return False
    with engine.ws.read() as conn:
        return all(approval_rule(i["subject_id"]) == "open" for i in item_store.read_open_approval_items(conn))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True)
    p.add_argument("--defs", required=True)
    p.add_argument("--integrations", required=True)
    p.add_argument("--rounds", type=int, required=True)
    p.add_argument("--kill")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    hooks = KillHooks(a.kill)
    install(hooks)
    ws = HookedWorkspace(a.db)
    ws.hooks = hooks
    findings = WorkloadFindings(ws, hooks)
    engine = Engine(ws, SystemClock(), a.defs, actioners=default_actioners() | {"findings.create": findings},
                    batch_max=16, batch_target_seconds=60, registers_dir=ROOT / "registers",
                    integrations_dir=a.integrations)
    findings.engine = engine
    report = engine.load_definitions(actor="member:admin")  # the same content as the fleet's: nothing new
    if report.errors:
        raise SystemExit(f"the workload's definitions were rejected: {report.errors}")
    started = time.monotonic()
    say("ready")
    hooks.arm_timer()
    with hooks.during("recovery"):
        tolerant(engine.recover, "recover")
    while not at_rest(engine, a.rounds):
        with hooks.during("recovery"):
            tolerant(engine.resume_interrupted, "resume")
        tolerant(engine.dispatch_events, "dispatch")
        with hooks.during("auto-retry"):
            tolerant(engine.process_due_retries, "due retries")
        tolerant(lambda: fire_rounds(engine, a.rounds), "fire")
        tolerant(lambda: retry_failed_runs(engine, hooks), "retry")
        tolerant(lambda: decide_approvals(engine, hooks), "approvals")
        time.sleep(0.2)
    say("done " + json.dumps({"points": dict(hooks.passed), "seconds": round(time.monotonic() - started, 3)}))
    engine.shutdown()
    ws.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
