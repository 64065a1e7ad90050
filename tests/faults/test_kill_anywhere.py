"""Kill anywhere: a real engine process is SIGKILLed at seeded random points — before, during and after
group commits, during a retry, a cancel and an approval, and after random wall-clock delays — restarted, and
killed again, over a workload of many runs and items (``kill_workload``). After each kill the file is
consistent; after each restart the engine recovers to rest with every invariant holding; at the end every
item has its final outcome, downstream records equal the items that acted, each created once, no
idempotency key acted twice, no run is left running without work, and the audit chain verifies.

The workload reaches a tracker outside the engine too (a webhook to a receiver in this process, which dedupes
by Idempotency-Key): at the end it has seen no key acted on twice with different bodies, and every ticket
item names the one ticket the tracker issued for its key.

Two seeds of 16 kills each here (32 kill points, every category landed under each seed);
``bench/soak_kill.py`` runs a thousand.

DuckDB only, by nature: one process, killed and restarted on its file. PostgreSQL's fleet, whose killed
workers are taken over and never restarted: tests/faults/test_fleet_kills.py.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from kill_harness import CATEGORIES, Tally, killed_file_violations, run_epoch

from store.workspace import Workspace
from tests.support import finding_definition, fire_one

pytestmark = pytest.mark.slow  # engine processes killed at 32 points

KILLS_PER_SEED = 16


@pytest.mark.parametrize("seed", [20261, 20262])
def test_an_engine_killed_anywhere_recovers_and_every_invariant_holds(tmp_path: Path, seed: int) -> None:
    tally = Tally()
    ok = run_epoch(tmp_path / f"seed-{seed}", KILLS_PER_SEED, random.Random(seed), tally)
    print(tally.report())
    assert ok and not tally.violations, tally.report()
    assert sum(tally.kills.values()) >= KILLS_PER_SEED
    assert set(tally.kills) == set(CATEGORIES), tally.kills  # each category landed at least once
    # Every kill's file was checked, every restart that got to rest checked itself, and the end was checked.
    assert tally.checks["the file as killed"] == sum(tally.kills.values())
    assert tally.checks["after a restart, at rest"] >= sum(tally.kills.values()) // 2
    assert tally.checks["at the end"] == 1
    assert tally.checks["the tracker at the end"] == 1  # no key acted on twice with different bodies


def test_the_check_of_a_killed_file_catches_a_half_applied_batch(make_engine) -> None:  # noqa: ANN001
    """The per-kill check is not vacuous: an outcome written without its record and counts fails it."""
    engine = make_engine({"d": finding_definition("d")}, accounts=3)
    fire_one(engine)
    engine.shutdown()
    engine.ws.close()
    db = Path(engine.ws.path)
    assert killed_file_violations(db) == []
    ws = Workspace(str(db))
    try:
        with ws.transaction() as tx:  # what a settlement that lost its other writes would leave
            tx.conn.exec_driver_sql("UPDATE run_items SET outcome = 'idempotent-replay', record_ref = NULL "
                                    "WHERE item_id = (SELECT min(item_id) FROM run_items)")
    finally:
        ws.close()
    problems = killed_file_violations(db)
    assert any(p.startswith("succeeded or replayed items whose record") for p in problems), problems
    assert any("carries counts" in p for p in problems), problems
