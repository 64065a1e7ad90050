"""Recovery inside one process: a run interrupted with a batch in flight is finished without acting twice.

(Kept from the first core suite; the crash-recovery suite proper — a real process killed mid-run — is
``test_crash_recovery.py``.)
"""

from __future__ import annotations

from store import items as item_store
from store import runs as run_store
from store.subjects import record_trigger_event
from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import make_engine_fixture, pg_server_fixture, pg_template_fixture  # noqa: F401
from tests.support import finding_definition, items_of, run_of, scalar


def test_recovery_finishes_an_interrupted_run_without_acting_twice(make_engine) -> None:
    engine = make_engine({"d": finding_definition("d")}, accounts=30)
    # Interrupt by hand: the run is matched and a batch claimed (in flight), then the process "dies".
    with engine.ws.transaction() as tx:
        record_trigger_event(tx, kind="manual", event_type="run.requested", source="member:sigrid",
                             occurred_at=engine.clock.now(), definition_id="d")
    with engine.ws.read() as conn:
        [event] = run_store.read_undispatched_events(conn)
    with engine.ws.transaction() as tx:
        [(_, version)] = engine.catalog.listeners(event)
        run_id = run_store.create_run(tx, definition_id="d", definition_version=version, event=event,
                                      actor="member:sigrid")
        run_store.claim_event(tx, event["event_id"])
    engine.executor.match_run(run_id, "member:sigrid")
    with engine.ws.transaction() as tx:
        claimed = item_store.claim_pending_item_columns(tx, run_id, 7)
    assert len(claimed["item_id"]) == 7 and run_of(engine, run_id)["status"] == "running"

    assert engine.recover() == [run_id]
    items = items_of(engine, run_id).values()
    assert {i["outcome"] for i in items} == {"succeeded"} and len(items) == 30
    assert run_of(engine, run_id)["status"] == "completed"
    assert engine.recover() == []  # nothing left to recover
    assert scalar(engine, "SELECT count(*) FROM findings") == 30
    assert scalar(engine, "SELECT count(DISTINCT idempotency_key) FROM findings") == 30
