"""Kill anywhere, distributed: three engine workers on one PostgreSQL workspace (a real server), SIGKILLed at
seeded points — before, during and after group commits, during retries, cancels and approvals, and after
random delays — never restarted: the rest of the fleet takes their work over when their lease lapses.

After each kill the workspace, read in one snapshot while the others go on writing, is consistent; at the end
every invariant at rest holds, each cron occurrence ran once, no idempotency key acted twice (in the workspace,
at the tracker and at the messaging gateway), and the audit chain is one chain. ``bench/soak_kill.py
--postgres --workers 3`` runs a thousand kills.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fleet_harness import run_fleet_epoch
from kill_harness import CATEGORIES, Tally

from tests.pg_server import postgres_server

pytestmark = pytest.mark.slow  # a PostgreSQL server and some forty engine processes

KILLS = 30


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def test_a_fleet_whose_workers_are_killed_anywhere_finishes_the_work_and_every_invariant_holds(
        pg_server: str, tmp_path: Path) -> None:
    tally = Tally()
    ok = run_fleet_epoch(pg_server, tmp_path / "fleet-1", KILLS, random.Random(20263), tally, workers=3,
                         say=print)
    print(tally.report())
    assert ok and not tally.violations, tally.report()
    assert sum(tally.kills.values()) >= KILLS
    assert set(tally.kills) == set(CATEGORIES), tally.kills
    assert tally.checks["the workspace as a kill left it, the fleet still writing"] == sum(tally.kills.values())
    assert tally.checks["at the end"] == 1 and tally.checks["the tracker and the gateway at the end"] == 1
    # The killed workers' work was taken over by others: their runs name the worker that took them.
    engine = sa.create_engine(pg_server.rsplit("/", 1)[0] + "/fleet_fleet_1")
    try:
        with engine.connect() as conn:
            taken = conn.execute(sa.text("SELECT count(*) FROM audit_log WHERE event IN ('run.resumed', "
                                         "'run.recovery_started') AND payload LIKE '%taken_from%'")).scalar_one()
            workers = conn.execute(sa.text("SELECT count(*) FROM workers")).scalar_one()
    finally:
        engine.dispose()
    assert taken >= 1 and workers >= KILLS
