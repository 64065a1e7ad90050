"""Crash recovery with a real process: the engine is SIGKILLed mid-run, restarted, and must finish the run
without losing an item or acting twice.

``crash_driver.py`` runs the real engine over 3,000 accounts with the findings actioner and says how far it
got; the test kills it at a chosen point (while the items are being written, with a batch in flight, while
a batch's settlement is being written, and during recovery itself), restarts it in recover mode
(``Engine.recover()``), and once every process has exited reads the file with plain duckdb: every item
final, the run closed, one finding per succeeded item and none twice, one ledger entry per key, every
finding linked both ways with its item, one attempt and one outcome entry per item, the audit chain intact.

DuckDB only, by nature: one process holds the file, is killed and restarted on it. On PostgreSQL the work of a
killed process is taken over by the others, never restarted (tests/faults/test_fleet_kills.py).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa
from line_process import LineProcess

from store.audit import verify_audit_chain

pytestmark = pytest.mark.slow  # engine processes killed and restarted

DRIVER = Path(__file__).with_name("crash_driver.py")
SUBJECTS = 3000


class Driver(LineProcess):
    """One driver process whose stdout lines arrive on a queue (so waiting for one can time out)."""

    def __init__(self, tmp_path: Path, mode: str) -> None:
        super().__init__([sys.executable, str(DRIVER), "--db", str(tmp_path / "ws.duckdb"), "--defs",
                          str(tmp_path / "defs"), "--mode", mode, "--subjects", str(SUBJECTS)],
                         tmp_path / f"driver-{mode}-{os.getpid()}-{id(self)}.stderr")
        self.seen: list[str] = []

    def _next(self, timeout: float = 60) -> str | None:
        line = self.next_line(timeout)
        if line is not None:
            self.seen.append(line)
        return line

    def kill_at(self, line_wanted: str) -> None:
        """SIGKILL the process as soon as it says ``line_wanted``."""
        while (line := self._next()) is not None:
            if line == line_wanted:
                self.proc.send_signal(signal.SIGKILL)
                assert self.proc.wait(30) == -signal.SIGKILL
                return
        self.proc.wait(30)
        pytest.fail(f"the driver ended before saying {line_wanted!r}: {self.seen[-5:]}\n{self.stderr_tail()}")

    def finish(self) -> dict:
        while self._next() is not None:  # read the driver's output to its end
            pass
        rc = self.proc.wait(60)
        assert rc == 0, f"driver exited {rc}: {self.seen[-5:]}\n{self.stderr_tail()}"
        done = [line for line in self.seen if line.startswith("done ")]
        assert done, self.seen[-5:]
        return json.loads(done[-1].removeprefix("done "))


def check_workspace(db: Path) -> dict:
    """Everything a recovered run must satisfy, read with plain duckdb after every process exited."""
    con = duckdb.connect(str(db), read_only=True)
    q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
    try:
        [(run_id, status, matched, invoked)] = q(
            "SELECT run_id, status, subjects_matched, actions_invoked FROM runs")
        assert status == "completed", status  # not left running
        assert matched == SUBJECTS
        outcomes = dict(q(f"SELECT outcome, count(*) FROM run_items WHERE run_id = '{run_id}' GROUP BY 1"))
        assert outcomes == {"succeeded": SUBJECTS}, outcomes  # every item reached a final outcome
        assert q("SELECT count(DISTINCT subject_id) FROM run_items") == [(SUBJECTS,)]
        # Downstream records equal succeeded items, none twice.
        assert q("SELECT count(*), count(DISTINCT idempotency_key), count(DISTINCT subject_id) FROM findings") \
            == [(SUBJECTS, SUBJECTS, SUBJECTS)]
        # No idempotency key twice in the ledger, and one entry per succeeded item.
        assert q("SELECT count(*), count(DISTINCT idempotency_key) FROM idempotency_records") \
            == [(SUBJECTS, SUBJECTS)]
        # Every finding's source item points back at it (same key), and so does every ledger entry.
        assert q("""SELECT count(*) FROM findings f JOIN run_items i
                    ON i.item_id = f.source_item_id AND i.record_ref = 'findings:' || f.finding_id
                    AND i.idempotency_key = f.idempotency_key""") == [(SUBJECTS,)]
        assert q("""SELECT count(*) FROM idempotency_records l JOIN run_items i
                    ON i.item_id = l.item_id AND i.record_ref = l.record_ref
                    AND i.idempotency_key = l.idempotency_key""") == [(SUBJECTS,)]
        # One attempt kept per item (the interrupted one never committed), one outcome entry per item.
        assert q("SELECT min(attempts), max(attempts) FROM run_items") == [(1, 1)]
        assert q("SELECT count(*), count(DISTINCT item_id) FROM item_attempts WHERE outcome = 'succeeded'") \
            == [(SUBJECTS, SUBJECTS)]
        assert q("""SELECT count(*), count(DISTINCT entity_id) FROM audit_log
                    WHERE event = 'item.succeeded'""") == [(SUBJECTS, SUBJECTS)]
        assert invoked == SUBJECTS, invoked
        assert q(f"SELECT count(*) FROM audit_log WHERE event = 'run.completed' AND entity_id = '{run_id}'") \
            == [(1,)]
        recoveries = q("SELECT count(*) FROM audit_log WHERE event = 'run.recovery_started'")[0][0]
    finally:
        con.close()
    engine = sa.create_engine(f"duckdb:///{db}", connect_args={"read_only": True})
    try:
        with engine.connect() as conn:
            verdict = verify_audit_chain(conn)
    finally:
        engine.dispose()
    assert verdict.intact, verdict
    return {"run_id": run_id, "recoveries": recoveries, "audit_entries": verdict.entries}


@pytest.mark.parametrize("kill_points", [
    pytest.param(["matching"], id="while-the-items-are-written"),
    pytest.param(["acted 700"], id="with-a-batch-in-flight"),
    pytest.param(["settling 4"], id="while-a-settlement-is-written"),
    pytest.param(["acted 1500", "acted 300"], id="again-during-recovery"),
])
def test_a_killed_engine_recovers_without_losing_or_repeating_an_item(tmp_path: Path,
                                                                     kill_points: list[str]) -> None:
    first, *during_recovery = kill_points
    Driver(tmp_path, "run").kill_at(first)
    for point in during_recovery:
        Driver(tmp_path, "recover").kill_at(point)
    done = Driver(tmp_path, "recover").finish()
    facts = check_workspace(tmp_path / "ws.duckdb")
    assert done["recovered"] == [facts["run_id"]]
    assert facts["recoveries"] == 1 + len(during_recovery)
    if during_recovery:  # (once is enough: another engine start finds nothing left to recover)
        assert Driver(tmp_path, "recover").finish() == {"recovered": []}
