"""Worker leases on a real PostgreSQL server: a dead worker's work is taken over once its lease lapses, never
while it holds; a worker whose work was taken over writes nothing of it; claims by many workers take each item
once. (Processes killed for real, many at a time: tests/faults/test_fleet_kills.py.)"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa

from demo.seed import seed_members_and_sources
from engine.actioners.modules import default_actioners
from engine.authz import load_actor
from engine.clock import SimulatedClock
from engine.executor import LeaseLapsed
from engine.runtime import Engine
from store import items as item_store
from store import runs as run_store
from store import workers as worker_store
from store.errors import WorkTakenOver
from store.subjects import insert_subjects, record_trigger_event
from store.workspace import Workspace
from tests.backends import create_database, pg_server_fixture  # noqa: F401
from tests.support import (
    DEMO_REGISTERS,
    START,
    account_rows,
    finding_definition,
    items_of,
    quick_password_hash,
    run_of,
    scalar,
)

pytestmark = pytest.mark.slow  # a PostgreSQL server


@pytest.fixture
def pg_url(pg_server: str) -> str:
    """A database of its own for each test, on the module's server."""
    return create_database(pg_server)


class Fleet:
    """Engines on one workspace, as separate processes would have them (a Workspace object each)."""

    def __init__(self, url: str, tmp_path: Path, accounts: int = 30) -> None:
        self.url, self.defs = url, tmp_path / "definitions"
        self.defs.mkdir()
        (self.defs / "d.yaml").write_text(finding_definition("d"))
        self.clock = SimulatedClock(START)
        self.engines: list[Engine] = []
        first = self.engine(setup=accounts)
        assert first is self.engines[0]

    def engine(self, setup: int = 0, lease_seconds: float = 30.0) -> Engine:
        ws = Workspace(self.url, now=self.clock.now)
        if setup:
            with mock.patch("demo.seed.hash_password", quick_password_hash):
                seed_members_and_sources(ws)
        engine = Engine(ws, self.clock, self.defs, actioners=default_actioners(), registers_dir=DEMO_REGISTERS)
        engine.executor.lease.seconds = lease_seconds
        if setup:
            assert not engine.load_registers(actor="member:admin").errors
            with ws.transaction() as tx:
                insert_subjects(tx, "accounts", account_rows(setup))
        assert not engine.load_definitions(actor="member:admin").errors
        self.engines.append(engine)
        return engine

    def close(self) -> None:
        for engine in self.engines:
            engine.shutdown()
            engine.ws.close()


@pytest.fixture
def fleet(pg_url: str, tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(pg_url, tmp_path)
    yield f
    f.close()


def interrupted_run(engine: Engine, claim: int = 7) -> tuple[str, list[str]]:
    """A run created and matched by ``engine``'s worker, with a batch claimed (in flight) and not acted on:
    what a worker killed in the middle of its batch leaves."""
    worker = engine.executor.worker()
    with engine.ws.transaction() as tx:
        record_trigger_event(tx, kind="manual", event_type="run.requested", source="member:sigrid",
                             occurred_at=engine.clock.now(), definition_id="d")
    with engine.ws.read() as conn:
        [event] = run_store.read_undispatched_events(conn)
    with engine.ws.transaction() as tx:
        [(_, version)] = engine.catalog.listeners(event)
        run_id = run_store.create_run(tx, definition_id="d", definition_version=version, event=event,
                                      actor="member:sigrid", worker=worker)
        assert run_id is not None
        run_store.claim_event(tx, event["event_id"])
    engine.executor.match_run(run_id, "member:sigrid")
    with engine.ws.transaction() as tx:
        claimed = item_store.claim_pending_item_columns(tx, run_id, claim, worker=worker)
    return run_id, list(claimed["item_id"])


def lapse(engine: Engine, seconds_ago: float = 3600) -> None:
    """The worker dies: its heartbeats stop, and its last one is ``seconds_ago`` old."""
    engine.executor.lease._stop.set()
    with engine.ws.engine.begin() as conn:
        conn.execute(sa.text("UPDATE workers SET heartbeat_at = now() - make_interval(secs => :s) "
                             "WHERE worker_id = :w"), {"s": seconds_ago, "w": engine.executor.lease.worker_id})


def test_a_dead_workers_run_is_taken_over_once_its_lease_lapses_and_never_before(fleet: Fleet) -> None:
    a = fleet.engines[0]
    run_id, claimed = interrupted_run(a)
    b = fleet.engine()
    assert b.resume_interrupted() == [] and b.recover() == []  # a's lease holds: its work is its own
    assert {i["outcome"] for i in items_of(b, run_id).values()} == {"pending", "in-flight"}

    lapse(a)
    assert b.resume_interrupted() == [run_id]
    items = items_of(b, run_id).values()
    assert {i["outcome"] for i in items} == {"succeeded"} and len(items) == 30
    assert {i["claimed_by"] for i in items if i["item_id"] in claimed} == {b.executor.lease.worker_id}
    assert run_of(b, run_id)["status"] == "completed" and run_of(b, run_id)["worked_by"] == b.executor.worker()
    assert scalar(b, "SELECT count(*) FROM findings") == 30
    assert scalar(b, "SELECT count(DISTINCT idempotency_key) FROM findings") == 30
    with b.ws.read() as conn:
        [payload] = conn.execute(sa.text("SELECT payload FROM audit_log WHERE event = 'run.resumed'")).scalars()
    assert json.loads(payload) == {"status": "running", "worker": b.executor.lease.worker_id,
                                   "taken_from": a.executor.lease.worker_id, "in_flight_items_taken": 7}
    assert b.ws.verify_audit().intact
    assert b.resume_interrupted() == []  # nothing left


@pytest.mark.parametrize("batch", [5, 40])  # a few rows, and the many-rows path (UPDATE … FROM unnest)
def test_a_worker_whose_items_were_taken_over_writes_nothing_of_them(pg_url: str, tmp_path: Path,
                                                                     batch: int) -> None:
    fleet = Fleet(pg_url, tmp_path, accounts=batch)
    try:
        _taken_over_writes_nothing(fleet, batch)
    finally:
        fleet.close()


def _taken_over_writes_nothing(fleet: Fleet, batch: int) -> None:
    a = fleet.engines[0]
    run_id, claimed = interrupted_run(a, claim=batch)
    lapse(a)
    b = fleet.engine()
    with b.ws.transaction() as tx:  # b takes the run over (and is about to replay the batch)
        assert worker_store.take_over_run(tx.conn, run_id, b.executor.worker(),
                                          b.executor.lease.lapsed_workers()) == (True, batch)
    # a was only paused, not dead: it wakes with its batch acted on and tries to settle it.
    a.executor.lease._renewed = float("inf")  # as if it had renewed just now, so it gets as far as its write
    with a.ws.read() as conn:
        run = run_store.require_run(conn, run_id)
        held = item_store.as_claimed_columns([item_store.require_item(conn, i) for i in claimed])
    for k in range(len(held["outcome"])):
        held["outcome"][k] = "in-flight"  # what a held it as
    d = a.catalog.get(run["definition_id"], run["definition_version"])
    settlement = a.executor._act_on(run, d, held, "engine:a")
    with pytest.raises(WorkTakenOver, match="took it over after the lease"):
        a.executor._commit(run_id, settlement, "engine:a", None)
    assert scalar(b, "SELECT count(*) FROM findings") == 0  # nothing of a's batch was written
    assert scalar(b, "SELECT count(*) FROM item_attempts") == 0
    assert b.recover() == [run_id]  # b replays it (a start's recovery takes its own held work at once)
    assert scalar(b, "SELECT count(*) FROM findings") == scalar(b, "SELECT count(*) FROM item_attempts") == batch
    assert run_of(b, run_id)["status"] == "completed"


def test_a_worker_that_cannot_renew_its_lease_acts_on_nothing(fleet: Fleet) -> None:
    a = fleet.engines[0]
    run_id, _ = interrupted_run(a, claim=0)
    a.executor.lease._renewed -= a.executor.lease.seconds  # its renewals failed for a whole lease
    with pytest.raises(LeaseLapsed):
        with a.ws.transaction() as tx:
            claimed = item_store.claim_pending_item_columns(tx, run_id, 4, worker=a.executor.worker())
        with a.ws.read() as conn:
            run = run_store.require_run(conn, run_id)
        a.executor._act_on(run, a.catalog.get("d", run["definition_version"]), claimed, "engine:a")
    a.executor.execute_run(run_id, "engine:a")  # claims nothing more either
    assert scalar(a, "SELECT count(*) FROM findings") == 0
    assert scalar(a, "SELECT count(*) FROM run_items WHERE outcome = 'pending'") == 26


def test_workers_claiming_due_retries_at_once_take_each_item_once(fleet: Fleet) -> None:
    a = fleet.engines[0]
    others = [fleet.engine() for _ in range(2)]
    run_id, _ = interrupted_run(a, claim=0)
    a.executor.execute_run(run_id, "engine:a")
    with a.ws.transaction() as tx:  # every item failed, its automatic retry due now
        tx.conn.execute(sa.text("UPDATE run_items SET outcome = 'failed', failure_class = 'transient', "
                                "retry_due_at = :t"), {"t": START - dt.timedelta(minutes=1)})
    connections = [e.ws.engine.connect() for e in (a, *others)]
    txs = [c.begin() for c in connections]
    taken: list[list[dict[str, Any]]] = []
    for engine, conn in zip((a, *others), connections, strict=True):
        from store.tx import Tx
        taken.append(item_store.claim_due_retries(Tx(conn, engine.clock.now), START, limit=12,
                                                  worker=engine.executor.worker()))
    for t in txs:
        t.commit()
    for c in connections:
        c.close()
    ids = [i["item_id"] for batch in taken for i in batch]
    assert [len(batch) for batch in taken] == [12, 12, 6] and len(set(ids)) == 30
    assert scalar(a, "SELECT count(DISTINCT claimed_by) FROM run_items") == 3


def test_two_processes_settling_one_run_at_once_leave_its_counts_those_of_its_items(fleet: Fleet) -> None:
    """A worker's batch and a member's command settle the same run at the same moment: the second counts the
    run's items only once the first committed (the run's row is locked first), never a stale count."""
    import threading

    from engine.status import settle_run_status
    from store.tx import Tx

    a = fleet.engines[0]
    b = fleet.engine()
    run_id, _ = interrupted_run(a, claim=0)
    first, second = sorted(items_of(a, run_id).values(), key=lambda i: i["position"])[:2]
    conn_a, conn_b = a.ws.engine.connect(), b.ws.engine.connect()
    tx_a, tx_b = conn_a.begin(), conn_b.begin()
    item_store.skip_item(Tx(conn_a, a.clock.now), first["item_id"], "pending", "the account closed")
    settle_run_status(Tx(conn_a, a.clock.now), run_id, "engine:a")
    errors: list[BaseException] = []

    def other() -> None:
        try:
            item_store.skip_item(Tx(conn_b, b.clock.now), second["item_id"], "pending", "the account closed")
            settle_run_status(Tx(conn_b, b.clock.now), run_id, "engine:b")
            tx_b.commit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive()  # b waits for a's transaction
    tx_a.commit()
    thread.join(10)
    conn_a.close()
    conn_b.close()
    assert not errors, errors
    assert run_of(a, run_id)["items_skipped"] == 2
    assert scalar(a, "SELECT count(*) FROM run_items WHERE outcome = 'skipped'") == 2


def test_a_cancel_racing_another_workers_completion_of_the_run_is_decided_on_its_locked_row(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A member's cancel (through an app replica) checks that the run is still open, then settles it. Another
    worker finishing the run's last items in between left a cancel of a completed run, refused as a transition
    no run makes (``TransitionRefused``: a traceback; tests/test_fleet_processes.py met it). The check reads the
    run's row locked, so the worker's settlement waits for the cancel: the run ends cancelled, its items acted
    on once and recorded."""
    import threading

    from engine import commands
    from engine.commands import cancel as cancel_command

    fleet = Fleet(pg_url, tmp_path, accounts=2)
    try:
        a, b = fleet.engines[0], fleet.engine()
        run_id, _ = interrupted_run(a, claim=0)  # a's run, its two items pending
        finished = threading.Event()
        checked: list[str] = []
        real_check = cancel_command.check_cancellable

        def check_cancellable(run: dict[str, Any]) -> None:
            checked.append(run["status"])
            if len(checked) == 2:  # in the cancel's transaction: a works the whole run meanwhile, if it can
                threading.Thread(target=lambda: (a.executor.execute_run(run_id, "engine:a"), finished.set()),
                                 daemon=True).start()
                deadline = time.monotonic() + 30
                while scalar(a, "SELECT count(*) FROM run_items WHERE outcome = 'pending'") and \
                        time.monotonic() < deadline:  # a has claimed both items (in flight, committed)
                    time.sleep(0.02)
                finished.wait(2)  # and settles them, and the run, unless the cancel holds the run's row
            real_check(run)
        monkeypatch.setattr(cancel_command, "check_cancellable", check_cancellable)
        said = commands.cancel_run(b, load_actor(b.ws, "sigrid"), run_id, "started by mistake")
        assert checked == ["running", "running"] and said == "running"  # its items were still a's, in flight
        assert finished.wait(30)
        assert run_of(a, run_id)["status"] == "cancelled"
        assert {i["outcome"] for i in items_of(a, run_id).values()} == {"succeeded"}
        assert scalar(a, "SELECT count(*) FROM findings") == 2
        assert scalar(a, "SELECT count(*) FROM audit_log WHERE event = 'run.cancelled'") == 1
    finally:
        fleet.close()
