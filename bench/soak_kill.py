"""Soak the engine under SIGKILL: the kill-anywhere harness (tests/faults/kill_harness.py) for as many kills
as asked, over fresh workspaces of ``--epoch-kills`` kills each, then the tally per kill category and the
verdict of every invariant check. Stops at the first violation and exits 1 (that workspace is kept); stopped
by hand (Ctrl-C), prints the tally so far and exits 2.

    .venv/bin/python bench/soak_kill.py --kills 1000 --seed 1
    .venv/bin/python bench/soak_kill.py --postgres --workers 3 --kills 1000 --seed 1

``--postgres --workers N``: the distributed harness (tests/faults/fleet_harness.py) instead — a fleet of N engine
workers on one PostgreSQL workspace (a throwaway server this script starts), killed ones never restarted.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "faults")]

from fleet_harness import run_fleet_epoch  # noqa: E402
from kill_harness import Tally, run_epoch  # noqa: E402

from tests.pg_server import postgres_server  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--epoch-kills", type=int, default=50, help="kills per workspace before a fresh one")
    p.add_argument("--workdir", help="where the workspaces go (default: a new temporary directory)")
    p.add_argument("--verbose", action="store_true", help="a line per kill")
    p.add_argument("--postgres", action="store_true", help="a fleet of workers on one PostgreSQL workspace")
    p.add_argument("--workers", type=int, default=3, help="with --postgres: the fleet's size")
    a = p.parse_args()
    if a.postgres:
        with postgres_server() as server:
            return soak(a, lambda where, kills, rng, tally, say: run_fleet_epoch(
                server, where, kills, rng, tally, workers=a.workers, say=say))
    return soak(a, run_epoch)


def soak(a: argparse.Namespace, epoch_of: Callable[..., bool]) -> int:
    workdir = Path(a.workdir or tempfile.mkdtemp(prefix="soak-kill-"))
    rng, tally, epoch, interrupted = random.Random(a.seed), Tally(), 0, False
    print(f"soak: {a.kills} kills, seed {a.seed}, {a.epoch_kills} per workspace, under {workdir}", flush=True)
    try:
        while sum(tally.kills.values()) < a.kills:
            epoch += 1
            before, started = sum(tally.kills.values()), time.monotonic()
            ok = epoch_of(workdir / f"epoch-{epoch:03d}", min(a.epoch_kills, a.kills - before), rng, tally,
                           say=(lambda line: print(line, flush=True)) if a.verbose else (lambda _: None))
            print(f"epoch {epoch}: {sum(tally.kills.values()) - before} kills in {time.monotonic() - started:.0f} "
                  f"s, {'ok' if ok else 'VIOLATED'} (total {sum(tally.kills.values())}/{a.kills})", flush=True)
            if not ok:
                break
            shutil.rmtree(workdir / f"epoch-{epoch:03d}")
    except KeyboardInterrupt:  # stopped by hand (SIGINT): the tally so far
        print(f"interrupted during epoch {epoch}")
        interrupted = True
    print(tally.report())
    return 1 if tally.violations else 2 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
