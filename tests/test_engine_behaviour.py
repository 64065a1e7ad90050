"""Retries, idempotency, cancellation, approvals, authorization and the audit chain, end to end."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import duckdb
import pytest

from engine import commands
from engine.authz import NotAuthorized, load_actor
from engine.executor import params_hash
from store import items as item_store
from store import runs as run_store
from store.records import insert_idempotency
from tests.engine_fixtures import ScriptedFindings, definition, make_engine


def _items(engine, run_id):
    with engine.ws.read() as conn:
        return {i["subject_id"]: i for i in item_store.read_items(conn, run_id)}


def _run(engine, run_id):
    with engine.ws.read() as conn:
        return run_store.read_run(conn, run_id)


def test_deterministic_failure_refuses_retry_and_transient_recovers(tmp_path: Path) -> None:
    act = ScriptedFindings()
    act.deterministic = {"ACC-002"}
    act.transient_left = {"ACC-003": 1}
    engine, _ = make_engine(tmp_path, {"d": definition("d")}, actioner=act)
    [run_id] = engine.fire("d")
    items = _items(engine, run_id)
    assert items["ACC-002"]["failure_class"] == "deterministic"
    assert items["ACC-003"]["failure_class"] == "transient"
    assert _run(engine, run_id)["status"] == "completed-with-failures"
    sigrid = load_actor(engine.ws, "sigrid")
    with pytest.raises(commands.NotEligible, match="failed deterministically .*owner unknown"):
        commands.retry_item(engine, sigrid, items["ACC-002"]["item_id"])
    assert commands.retry_item(engine, sigrid, items["ACC-003"]["item_id"]) == "succeeded"
    with pytest.raises(commands.NotEligible, match="is succeeded; only failed items"):
        commands.retry_item(engine, sigrid, items["ACC-003"]["item_id"])
    with engine.ws.read() as conn:
        attempts = item_store.read_attempts(conn, items["ACC-003"]["item_id"])
    assert [(a["attempt"], a["outcome"], a["actor"]) for a in attempts] == [
        (1, "failed", "schedule:d"), (2, "succeeded", "member:sigrid")]
    assert _run(engine, run_id)["status"] == "completed-with-failures"  # ACC-002 still failed


def test_automatic_retry_with_backoff_on_the_engine_clock(tmp_path: Path) -> None:
    act = ScriptedFindings()
    act.transient_left = {"ACC-001": 2}
    engine, clock = make_engine(tmp_path, {"d": definition(
        "d", retry="max_attempts: 3, backoff_seconds: 300, backoff_multiplier: 2")}, accounts=1, actioner=act)
    [run_id] = engine.fire("d")
    item = _items(engine, run_id)["ACC-001"]
    assert item["outcome"] == "failed" and item["retry_due_at"] == clock.now() + dt.timedelta(seconds=300)
    assert _run(engine, run_id)["status"] == "running"
    assert engine.process_due_retries() == 0  # not due yet
    clock.sleep(300)
    assert engine.process_due_retries() == 1
    item = _items(engine, run_id)["ACC-001"]
    assert item["retry_due_at"] == clock.now() + dt.timedelta(seconds=600)  # backoff doubled
    clock.sleep(600)
    engine.process_due_retries()
    assert _items(engine, run_id)["ACC-001"]["outcome"] == "succeeded"
    assert _run(engine, run_id)["status"] == "completed"
    with engine.ws.read() as conn:
        assert [a["actor"] for a in item_store.read_attempts(conn, item["item_id"])] == [
            "schedule:d", "engine:retry-policy", "engine:retry-policy"]


def test_lost_response_replays_and_key_conflict_is_refused(tmp_path: Path) -> None:
    act = ScriptedFindings()
    act.transient_left = {"ACC-001": 1, "ACC-002": 1}
    engine, _ = make_engine(tmp_path, {"d": definition("d")}, accounts=2, actioner=act)
    [run_id] = engine.fire("d")
    items = _items(engine, run_id)
    # The findings module did act for ACC-001 but its answer was lost: its ledger has the key.
    one, two = items["ACC-001"], items["ACC-002"]
    import json
    with engine.ws.transaction() as tx:
        insert_idempotency(tx, [
            dict(idempotency_key=one["idempotency_key"], actioner="findings.create",
                 params_hash=params_hash(json.loads(one["parameters"])), outcome="succeeded",
                 record_ref="findings:FND-ORIGINAL", item_id=one["item_id"], created_at=tx.now()),
            dict(idempotency_key=two["idempotency_key"], actioner="findings.create",
                 params_hash="different-parameters", outcome="succeeded", record_ref="findings:FND-OTHER",
                 item_id=two["item_id"], created_at=tx.now())])
    sigrid = load_actor(engine.ws, "sigrid")
    calls_before = len(act.calls)
    assert commands.retry_item(engine, sigrid, one["item_id"]) == "idempotent-replay"
    assert commands.retry_item(engine, sigrid, two["item_id"]) == "failed"
    assert len(act.calls) == calls_before  # the actioner was not called again for either
    items = _items(engine, run_id)
    assert items["ACC-001"]["record_ref"] == "findings:FND-ORIGINAL"
    assert "idempotency key conflict" in items["ACC-002"]["failure_cause"]
    assert items["ACC-002"]["failure_class"] == "deterministic"
    assert items["ACC-001"]["idempotency_key"] == one["idempotency_key"]


def test_cancel_skips_unstarted_items_and_records_in_flight_ones(tmp_path: Path) -> None:
    act = ScriptedFindings()
    act.gate = threading.Event()
    engine, _ = make_engine(tmp_path, {"d": definition("d")}, accounts=40, actioner=act)
    worker = threading.Thread(target=engine.fire, args=("d",))
    worker.start()
    assert act.entered.wait(10)
    with engine.ws.read() as conn:
        [run] = run_store.read_open_runs(conn)
    sigrid = load_actor(engine.ws, "sigrid")
    assert commands.cancel_run(engine, sigrid, run["run_id"], "wrong accounts selected") == "running"
    act.gate.set()
    worker.join(10)
    items = list(_items(engine, run["run_id"]).values())
    in_flight = [i for i in items if i["outcome"] == "succeeded"]
    skipped = [i for i in items if i["outcome"] == "skipped"]
    assert in_flight and skipped and len(in_flight) + len(skipped) == 40
    assert {i["skip_reason"] for i in skipped} == {"cancelled"}
    run = _run(engine, run["run_id"])
    assert run["status"] == "cancelled" and run["cancel_requested_by"] == "member:sigrid"
    with pytest.raises(commands.NotEligible, match="is cancelled; only pending or running"):
        commands.cancel_run(engine, sigrid, run["run_id"], "again")


def test_approve_executes_and_dismiss_skips_with_reason(tmp_path: Path) -> None:
    engine, _ = make_engine(tmp_path, {"d": definition("d", approval=True)}, accounts=2)
    [run_id] = engine.fire("d")
    items = _items(engine, run_id)
    assert {i["outcome"] for i in items.values()} == {"awaiting-approval"}
    sigrid = load_actor(engine.ws, "sigrid")
    assert commands.approve_item(engine, sigrid, items["ACC-001"]["item_id"]) == "succeeded"
    commands.dismiss_item(engine, sigrid, items["ACC-002"]["item_id"], "not applicable")
    with pytest.raises(commands.NotEligible):
        commands.approve_item(engine, sigrid, items["ACC-002"]["item_id"])
    items = _items(engine, run_id)
    assert items["ACC-001"]["record_ref"].startswith("findings:FND-")
    assert items["ACC-002"]["skip_reason"] == "dismissed by sigrid: not applicable"
    assert _run(engine, run_id)["status"] == "completed"


def test_author_of_a_version_cannot_approve_its_actions(tmp_path: Path) -> None:
    engine, _ = make_engine(tmp_path, {"d": definition("d", approval=True)}, accounts=1)
    (engine.definitions_dir / "d.yaml").write_text(definition("d", approval=True) + "# v2 by sigrid\n")
    engine.load_definitions(actor="member:sigrid")
    [run_id] = engine.fire("d")
    item = _items(engine, run_id)["ACC-001"]
    with pytest.raises(commands.CommandRefused, match="segregation of duties"):
        commands.approve_item(engine, load_actor(engine.ws, "sigrid"), item["item_id"])


@pytest.mark.parametrize("member", ["viewer", "auditor"])
def test_viewer_and_auditor_commands_are_refused_and_audited(tmp_path: Path, member: str) -> None:
    act = ScriptedFindings()
    act.transient_left = {"ACC-001": 1}
    engine, _ = make_engine(tmp_path, {"d": definition("d")}, accounts=1, actioner=act)
    [run_id] = engine.fire("d")
    item_id = _items(engine, run_id)["ACC-001"]["item_id"]
    actor = load_actor(engine.ws, member)
    for call in (lambda: commands.retry_item(engine, actor, item_id),
                 lambda: commands.cancel_run(engine, actor, run_id, "x"),
                 lambda: commands.approve_item(engine, actor, item_id),
                 lambda: commands.dismiss_item(engine, actor, item_id, "x"),
                 lambda: commands.run_now(engine, actor, "d")):
        with pytest.raises(NotAuthorized, match=f"{member} may not"):
            call()
    path = engine.ws.path
    engine.ws.close()
    con = duckdb.connect(path, read_only=True)
    refused = con.execute("SELECT count(*) FROM audit_log WHERE event='command.refused' AND actor=?",
                          [f"member:{member}"]).fetchone()[0]
    con.close()
    assert refused == 5


def test_verify_catches_an_edited_audit_row(tmp_path: Path) -> None:
    from engine.cli import main
    engine, _ = make_engine(tmp_path, {"d": definition("d")}, accounts=3)
    engine.fire("d")
    path = engine.ws.path
    engine.ws.close()
    out: list[str] = []
    assert main(["--db", path, "verify-audit"], out=out.append) == 0
    assert "intact" in out[-1]
    con = duckdb.connect(path)
    con.execute("UPDATE audit_log SET payload = replace(payload, 'ACC', 'XCC') WHERE seq = "
                "(SELECT min(seq) FROM audit_log WHERE payload LIKE '%ACC%')")
    seq = con.execute("SELECT min(seq) FROM audit_log WHERE payload LIKE '%XCC%'").fetchone()[0]
    con.close()
    assert main(["--db", path, "verify-audit"], out=out.append) != 0
    assert f"BROKEN at entry {seq}" in out[-1]


def test_recovery_finishes_an_interrupted_run_without_acting_twice(tmp_path: Path) -> None:
    engine, clock = make_engine(tmp_path, {"d": definition("d")}, accounts=30)
    # Interrupt by hand: the run is matched and a batch claimed (in flight), then the process "dies".
    with engine.ws.transaction() as tx:
        from store.registers import record_trigger_event
        record_trigger_event(tx, kind="manual", event_type="run.requested", source="member:sigrid",
                             occurred_at=clock.now(), definition_id="d")
    with engine.ws.read() as conn:
        [event] = run_store.read_undispatched_events(conn)
    with engine.ws.transaction() as tx:
        d, version = engine.catalog.listeners(event)[0]
        run_id = run_store.create_run(tx, definition_id="d", definition_version=version, event=event,
                                      actor="member:sigrid")
        run_store.mark_event_dispatched(tx, event["event_id"])
    engine.executor.match_run(run_id, "member:sigrid")
    with engine.ws.transaction() as tx:
        claimed = item_store.claim_pending_items(tx, run_id, 7)
    assert len(claimed) == 7 and _run(engine, run_id)["status"] == "running"
    assert engine.recover() == [run_id]
    items = _items(engine, run_id).values()
    assert {i["outcome"] for i in items} == {"succeeded"} and len(items) == 30
    assert _run(engine, run_id)["status"] == "completed"
    assert engine.recover() == []  # nothing left to recover
    path = engine.ws.path
    engine.ws.close()
    con = duckdb.connect(path, read_only=True)
    assert con.execute("SELECT count(*), count(DISTINCT idempotency_key) FROM findings").fetchone() == (30, 30)
    con.close()
