"""The audit log: append-only and hash-chained, written in the same transaction as the change it records;
verification proves the chain intact or names the first broken entry — in code and on the command line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from cli.main import main
from engine import commands
from store.audit import GENESIS_HASH, entry_hash
from store.subjects import insert_subjects
from store.workspace import Workspace
from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import make_engine_fixture, pg_server_fixture, pg_template_fixture  # noqa: F401
from tests.support import FailsTransiently, actor, audit_of, finding_definition, fire_one, items_of, scalar


def _busy_workspace(make_engine):
    """A workspace with definitions loaded, runs, a failure, a retry, an approval and a cancel."""
    engine = make_engine({"d": finding_definition("d"), "gated": finding_definition("gated", approval=True)},
                         accounts=4, actioners={"findings.create": FailsTransiently({"ACC-002": 1})})
    run_id = fire_one(engine, "d")
    sigrid = actor(engine, "sigrid")
    commands.retry_item(engine, sigrid, items_of(engine, run_id)["ACC-002"]["item_id"])
    gated = fire_one(engine, "gated")
    commands.approve_item(engine, sigrid, items_of(engine, gated)["ACC-001"]["item_id"])
    commands.dismiss_item(engine, sigrid, items_of(engine, gated)["ACC-002"]["item_id"], "not applicable")
    commands.cancel_run(engine, sigrid, gated, "the rest can wait")
    return engine


def _verify(path: str):
    ws = Workspace(path)
    try:
        return ws.verify_audit()
    finally:
        ws.close()


@contextmanager
def _forger(path: str) -> Iterator[sa.Connection]:
    """A connection to the workspace's database from outside Runledger, as someone with write access to the
    file or the server has: none of the store's code runs, so no audit entry is added or checked."""
    db = sa.create_engine(path if "://" in path else f"duckdb:///{path}")
    try:
        with db.begin() as conn:
            yield conn
    finally:
        db.dispose()


def _cli(path: str) -> tuple[int, list[str]]:
    out: list[str] = []
    code = main(["--db", path, "verify-audit"], out=out.append)
    return code, out


def test_a_busy_workspace_verifies_intact(make_engine) -> None:
    engine = _busy_workspace(make_engine)
    verdict = engine.ws.verify_audit()
    total = scalar(engine, "SELECT count(*) FROM audit_log")
    assert verdict.intact and verdict.first_broken_seq is None and verdict.problem is None
    assert verdict.entries == total > 30
    assert verdict.head_hash == scalar(engine, "SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    entries = audit_of(engine)
    assert [e["seq"] for e in entries] == list(range(1, total + 1))
    assert entries[0]["prev_hash"] == GENESIS_HASH
    # Every member action is there with its actor.
    member_events = {(e["event"], e["actor"]) for e in entries if e["actor"] == "member:sigrid"}
    assert {("item.retried", "member:sigrid"), ("item.approved", "member:sigrid"),
            ("item.dismissed", "member:sigrid"), ("run.cancel_requested", "member:sigrid")} <= member_events
    # Every settled item outcome has its entry.
    assert len(audit_of(engine, "item.succeeded")) == scalar(
        engine, "SELECT count(*) FROM item_attempts WHERE outcome = 'succeeded'")


def test_a_rolled_back_change_leaves_no_audit_entry(make_engine) -> None:
    engine = make_engine({"d": finding_definition("d")}, accounts=1)
    before = scalar(engine, "SELECT count(*) FROM audit_log")
    with pytest.raises(RuntimeError, match="changed my mind"):
        with engine.ws.transaction() as tx:
            insert_subjects(tx, "accounts", [{"account_id": "ACC-900", "name": "Ghost", "manager": "m",
                                              "status": "active", "kyc_review_due": engine.clock.now().date(),
                                              "risk_rating": "low"}])
            raise RuntimeError("changed my mind")
    assert scalar(engine, "SELECT count(*) FROM audit_log") == before
    assert scalar(engine, "SELECT count(*) FROM accounts WHERE account_id = 'ACC-900'") == 0
    assert engine.ws.verify_audit().intact


def test_an_edited_payload_is_named_as_the_first_broken_entry(make_engine) -> None:
    engine = _busy_workspace(make_engine)
    path = engine.ws.path
    engine.ws.close()
    assert _cli(path) == (0, [f"audit chain intact: {_verify(path).entries} entries, head {_verify(path).head_hash}"])

    with _forger(path) as con:
        seq = con.execute(sa.text("SELECT min(seq) FROM audit_log WHERE event = 'item.retried'")).scalar_one()
        con.execute(sa.text("UPDATE audit_log SET payload = replace(payload, 'timed out', 'was fine') WHERE seq = :s"),
                    {"s": seq})

    verdict = _verify(path)
    assert not verdict.intact
    assert verdict.first_broken_seq == seq and verdict.entries == seq - 1
    assert verdict.problem == f"entry {seq} was altered: its content no longer matches its hash"
    code, out = _cli(path)
    assert code == 3 and code != 0
    assert out == [f"audit chain BROKEN at entry {seq}: entry {seq} was altered: its content no longer matches "
                   f"its hash ({seq - 1} entries verified before it)"]


def test_a_deleted_entry_is_reported_missing(make_engine) -> None:
    engine = _busy_workspace(make_engine)
    path = engine.ws.path
    engine.ws.close()
    with _forger(path) as con:
        seq = con.execute(sa.text("SELECT min(seq) FROM audit_log WHERE event = 'run.cancel_requested'")).scalar_one()
        con.execute(sa.text("DELETE FROM audit_log WHERE seq = :s"), {"s": seq})

    verdict = _verify(path)
    assert (verdict.intact, verdict.first_broken_seq) == (False, seq)
    assert verdict.problem == f"entry {seq} is missing (the next entry is {seq + 1})"
    code, out = _cli(path)
    assert code != 0 and out[-1].startswith(f"audit chain BROKEN at entry {seq}: entry {seq} is missing")


def test_an_entry_rewritten_with_a_fresh_hash_breaks_the_next_link(make_engine) -> None:
    """A forger who recomputes the edited entry's own hash still breaks the entry after it."""
    engine = _busy_workspace(make_engine)
    path = engine.ws.path
    engine.ws.close()
    with _forger(path) as con:
        seq, at, actor_, event, kind, eid, payload, prev = con.execute(sa.text(
            "SELECT seq, occurred_at, actor, event, entity_kind, entity_id, payload, prev_hash FROM audit_log "
            "WHERE event = 'item.dismissed'")).one()
        forged = payload.replace("not applicable", "approved after all")
        con.execute(sa.text("UPDATE audit_log SET payload = :p, hash = :h WHERE seq = :s"),
                    {"p": forged, "h": entry_hash(seq, at, actor_, event, kind, eid, forged, prev), "s": seq})

    verdict = _verify(path)
    assert (verdict.intact, verdict.first_broken_seq) == (False, seq + 1)
    assert verdict.problem == f"entry {seq + 1} does not link to entry {seq}"
    assert _cli(path)[0] != 0
