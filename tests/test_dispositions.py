"""Failure dispositions: a failed item that will not be retried is waived, resolved outside or superseded by an
approver. The outcome stays ``failed``; the disposition is its own record and audit entry; the member who
started the run or retried the item may not disposition it; a dispositioned item is never retried; a bulk
disposition is planned first, by the same rules."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from cli.main import EXIT_OK, EXIT_REFUSED, main
from core.dispositions import DispositionInvalid, failure_standing, make_disposition
from core.periods import period_from_dates
from engine import commands
from engine.authz import NotAuthorized
from reporting.brief import generate_brief
from reporting.integrity import build_integrity_statement, failures_sentence
from store import dispositions as disposition_store
from store.members import create_member
from store.views.oversight import FailedFilter, read_failed_items
from store.workspace import Workspace
from tests.support import (
    FailsDeterministically,
    FailsTransiently,
    actor,
    attempts_of,
    audit_of,
    build_engine,
    finding_definition,
    fire_one,
    item_of,
    items_of,
    quick_password_hash,
)


def _add_olav(engine: Any) -> None:
    """A second approver, who neither ran nor retried anything."""
    with engine.ws.transaction() as tx:
        create_member(tx, "olav", "Olav Berg", quick_password_hash("olav"), ["approver"], "member:admin")


def _failed_run(make_engine: Any, **kw: Any) -> tuple[Any, str, dict[str, dict[str, Any]]]:
    """Four accounts: ACC-002 refused for good, ACC-003 timed out (no automatic retry)."""
    engine = make_engine({"d": finding_definition("d")}, accounts=4, actioners={"findings.create": _Mixed()}, **kw)
    _add_olav(engine)
    run_id = fire_one(engine)
    return engine, run_id, items_of(engine, run_id)


class _Mixed(FailsDeterministically):
    def __init__(self) -> None:
        super().__init__({"ACC-002"})
        self.transient = FailsTransiently({"ACC-003": 5})

    def before(self, req: Any, ctx: Any) -> None:
        super().before(req, ctx)
        self.transient.before(req, ctx)


# --- the rules (pure) ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "said"), [
    (("forgotten", "x"), "Unknown disposition 'forgotten'; give one of waived, resolved-outside, superseded."),
    (("waived", "  "), "A waived disposition needs a reason: say why the failure may stay failed."),
    (("resolved-outside", "done by hand"), "A resolved-outside disposition needs the external reference"),
    (("superseded", "redone"), "A superseded disposition names the later run or item"),
    (("superseded", "redone", None, "ticket 4"), "'TICKET 4' is not a run or item id"),
    (("waived", "ok", "T-1"), "Only a resolved-outside disposition takes an external reference, not waived."),
    (("waived", "ok", None, "RUN-000009"), "Only a superseded disposition names a later run or item, not waived."),
])
def test_a_disposition_missing_what_its_kind_needs_is_refused_with_what_to_give(args: tuple, said: str) -> None:
    with pytest.raises(DispositionInvalid) as refused:
        make_disposition(*args)
    assert str(refused.value).startswith(said)


def test_failure_standing() -> None:
    assert failure_standing("failed", True, False) == "open"
    assert failure_standing("failed", True, True) == "dispositioned"
    assert failure_standing("succeeded", True, False) == "recovered"
    assert failure_standing("succeeded", False, False) is None


# --- the command --------------------------------------------------------------------------------------------
def test_an_approver_waives_a_failure_its_outcome_stays_failed_and_it_is_audited(make_engine) -> None:
    engine, run_id, items = _failed_run(make_engine)
    item_id = items["ACC-002"]["item_id"]
    kind = commands.disposition_item(engine, actor(engine, "sigrid"), item_id, "waived",
                                     "  Owner retired;  account closed by the board  ")
    assert kind == "waived"
    assert item_of(engine, item_id)["outcome"] == "failed"  # the evidence is not rewritten
    with engine.ws.read() as conn:
        d = disposition_store.read_disposition(conn, item_id)
        assert disposition_store.count_open_failures(conn, run_id) == 1  # ACC-003 is still open
    assert d is not None
    assert (d["kind"], d["reason"], d["decided_by"], d["run_id"], d["definition_id"], d["attempts"]) == (
        "waived", "Owner retired; account closed by the board", "member:sigrid", run_id, "d", 1)
    assert d["failure_cause"] == "findings register refuses ACC-002: owner unknown"
    [entry] = audit_of(engine, "item.dispositioned")
    assert (entry["actor"], entry["entity_id"]) == ("member:sigrid", item_id)
    assert entry["payload"] == {"run_id": run_id, "kind": "waived", "reason": "Owner retired; account closed by "
                                "the board", "reference": None, "superseded_by": None,
                                "failure_cause": "findings register refuses ACC-002: owner unknown", "attempts": 1}
    assert engine.ws.verify_audit().intact

    # Recorded once: a second disposition is refused, and a dispositioned failure is never retried.
    with pytest.raises(commands.AlreadyDone, match="already dispositioned"):
        commands.disposition_item(engine, actor(engine, "olav"), item_id, "waived", "again")
    with engine.ws.transaction() as tx:  # even a transient one (made so here) would not be
        tx.conn.exec_driver_sql(f"UPDATE run_items SET failure_class = 'transient' WHERE item_id = '{item_id}'")
    with pytest.raises(commands.NotEligible, match=r"was dispositioned \(waived\).*It is not retried"):
        commands.retry_item(engine, actor(engine, "sigrid"), item_id)
    assert len(attempts_of(engine, item_id)) == 1
    plan = commands.plan_retry(engine, run_id)
    assert [i["subject_id"] for i in plan.eligible] == ["ACC-003"]
    assert "dispositioned" in dict((i["subject_id"], why) for i, why in plan.not_eligible)["ACC-002"]


def test_resolved_outside_and_superseded_say_where_the_work_was_done(make_engine) -> None:
    engine, run_id, items = _failed_run(make_engine)
    engine.clock.sleep(3600)  # a later occurrence
    later = fire_one(engine)
    olav = actor(engine, "olav")
    assert commands.disposition_item(engine, olav, items["ACC-002"]["item_id"], "resolved-outside",
                                     "finding raised by hand", reference="JIRA-4411") == "resolved-outside"
    with pytest.raises(commands.CommandRefused, match="There is no run or item 'RUN-999999'"):
        commands.disposition_item(engine, olav, items["ACC-003"]["item_id"], "superseded", "redone",
                                  superseded_by="RUN-999999")
    with pytest.raises(commands.CommandRefused, match="own run or item"):
        commands.disposition_item(engine, olav, items["ACC-003"]["item_id"], "superseded", "redone",
                                  superseded_by=run_id)
    assert commands.disposition_item(engine, olav, items["ACC-003"]["item_id"], "superseded", "the next run did it",
                                     superseded_by=later.lower()) == "superseded"
    with engine.ws.read() as conn:
        got = disposition_store.read_run_dispositions(conn, run_id)
        assert disposition_store.count_open_failures(conn, run_id) == 0
    assert {i: (d["kind"], d["reference"], d["superseded_by"]) for i, d in got.items()} == {
        items["ACC-002"]["item_id"]: ("resolved-outside", "JIRA-4411", None),
        items["ACC-003"]["item_id"]: ("superseded", None, later)}


def test_not_an_approver_is_refused_and_the_refusal_audited(make_engine) -> None:
    engine, _, items = _failed_run(make_engine)
    item_id = items["ACC-002"]["item_id"]
    with pytest.raises(NotAuthorized, match="viewer may not disposition run_item .* needs the approver role"):
        commands.disposition_item(engine, actor(engine, "viewer"), item_id, "waived", "no")
    [refused] = audit_of(engine, "command.refused")
    assert refused["payload"]["permission"] == "disposition"
    with engine.ws.read() as conn:
        assert disposition_store.read_disposition(conn, item_id) is None


def test_the_member_who_retried_an_item_may_not_disposition_it(make_engine) -> None:
    engine, _, items = _failed_run(make_engine)
    item_id = items["ACC-003"]["item_id"]
    sigrid = actor(engine, "sigrid")
    assert commands.retry_item(engine, sigrid, item_id) == "failed"  # the timeout again
    with pytest.raises(commands.FourEyesRefused) as refused:
        commands.disposition_item(engine, sigrid, item_id, "waived", "I give up")
    assert str(refused.value) == (f"sigrid retried item {item_id} and so may not disposition it (four eyes); "
                                  "ask another approver.")
    [entry] = audit_of(engine, "command.refused")
    assert entry["payload"]["four_eyes"] == "retried the item"
    assert commands.disposition_item(engine, actor(engine, "olav"), item_id, "waived", "vendor gone") == "waived"


def test_the_member_who_started_the_run_may_not_disposition_its_failures(make_engine) -> None:
    engine = make_engine({"d": finding_definition("d")}, accounts=2,
                         actioners={"findings.create": FailsDeterministically({"ACC-001"})})
    _add_olav(engine)
    [run_id] = commands.run_now(engine, actor(engine, "sigrid"), "d")
    item_id = items_of(engine, run_id)["ACC-001"]["item_id"]
    with pytest.raises(commands.FourEyesRefused, match=f"sigrid started run {run_id} .* may not disposition"):
        commands.disposition_item(engine, actor(engine, "sigrid"), item_id, "waived", "mine")


def test_a_failure_with_an_automatic_retry_due_waits_for_it(make_engine) -> None:
    engine = make_engine({"d": finding_definition("d", retry="max_attempts: 3, backoff_seconds: 300")}, accounts=1,
                         actioners={"findings.create": FailsTransiently({"ACC-001": 1})})
    run_id = fire_one(engine)
    item_id = items_of(engine, run_id)["ACC-001"]["item_id"]
    with pytest.raises(commands.NotEligible, match="has an automatic retry due at .* UTC; disposition it if that "
                                                   "retry fails too"):
        commands.disposition_item(engine, actor(engine, "sigrid"), item_id, "waived", "too early")


def test_a_succeeded_item_is_not_dispositioned(make_engine) -> None:
    engine, _, items = _failed_run(make_engine)
    with pytest.raises(commands.NotEligible, match="is succeeded, not failed"):
        commands.disposition_item(engine, actor(engine, "sigrid"), items["ACC-001"]["item_id"], "waived", "x")


def test_a_bulk_disposition_is_planned_first_by_the_same_rules(make_engine) -> None:
    engine, run_id, items = _failed_run(make_engine)
    sigrid, olav = actor(engine, "sigrid"), actor(engine, "olav")
    commands.retry_item(engine, sigrid, items["ACC-003"]["item_id"])  # sigrid retried ACC-003: four eyes
    with engine.ws.read() as conn:
        rows = read_failed_items(conn, FailedFilter(), limit=None)
    plan = commands.plan_dispositions(engine, sigrid, rows)
    assert [r["item_id"] for r in plan.eligible] == [items["ACC-002"]["item_id"]]
    assert [("four eyes" in why) for _, why in plan.not_eligible] == [True]
    assert commands.plan_dispositions(engine, olav, rows).eligible == rows  # olav may take both

    with pytest.raises(commands.CommandRefused, match="needs a reason"):  # refused whole, before any is recorded
        commands.disposition_items(engine, olav, [r["item_id"] for r in rows], "waived", " ")
    assert audit_of(engine, "item.dispositioned") == []
    seen: list[tuple[int, int]] = []
    results = commands.disposition_items(engine, olav, [r["item_id"] for r in rows], "waived", "vendor retired",
                                         progress=lambda n, total: seen.append((n, total)))
    assert set(results.values()) == {"waived"} and seen == [(1, 2), (2, 2)]
    again = commands.disposition_items(engine, olav, [items["ACC-002"]["item_id"]], "waived", "twice")
    assert again[items["ACC-002"]["item_id"]].startswith("not dispositioned: Item")
    with engine.ws.read() as conn:
        after = read_failed_items(conn, FailedFilter(), limit=None)
    assert {(r["disposition"], r["dispositioned_by"]) for r in after} == {("waived", "member:olav")}
    assert commands.plan_dispositions(engine, olav, after).eligible == []


def test_the_command_line_dispositions_and_says_what_is_wrong(tmp_path: Path) -> None:
    """``disposition ITEM --as M --kind K --reason R [--reference …]``: recorded, or refused with the sentence."""
    engine = build_engine(tmp_path, {"d": finding_definition("d")}, accounts=2,
                          actioners={"findings.create": FailsDeterministically({"ACC-001"})})
    item_id = items_of(engine, fire_one(engine))["ACC-001"]["item_id"]
    definitions = str(engine.definitions_dir)
    engine.shutdown()
    engine.ws.close()
    db = str(tmp_path / "ws.duckdb")

    def cli(*argv: str) -> tuple[int, list[str]]:
        lines: list[str] = []
        return main(["--db", db, "--definitions", definitions, *argv], out=lines.append), lines

    assert cli("disposition", item_id, "--as", "sigrid", "--kind", "resolved-outside", "--reason", "by hand") == (
        EXIT_REFUSED, ["refused: A resolved-outside disposition needs the external reference where the work done "
                       "by hand is recorded (a ticket or letter number)."])
    assert cli("disposition", item_id, "--as", "sigrid", "--kind", "resolved-outside", "--reason", "by hand",
               "--reference", "TCK-88") == (EXIT_OK, [f"{item_id}: failed, dispositioned as resolved-outside"])
    ws = Workspace(db)
    try:
        with ws.read() as conn:
            d = disposition_store.read_disposition(conn, item_id)
        assert d is not None and (d["kind"], d["reference"], d["decided_by"]) == (
            "resolved-outside", "TCK-88", "member:sigrid")
        assert ws.verify_audit().intact
    finally:
        ws.close()


@pytest.mark.slow  # a brief rendered, its charts through chromium
def test_the_brief_counts_a_waived_failure_and_lists_the_open_one(make_engine) -> None:
    engine, run_id, items = _failed_run(make_engine)
    commands.disposition_item(engine, actor(engine, "olav"), items["ACC-002"]["item_id"], "waived",
                              "owner retired")
    day = engine.clock.now().date()
    period = period_from_dates(day, day)
    statement = build_integrity_statement(engine.ws, period)
    account = statement.failures
    assert (account.failed_items, account.recovered, account.dispositioned, account.open, account.retrying) == (
        2, 0, {"waived": 1}, 1, 0)
    assert [i["item_id"] for i in account.open_items] == [items["ACC-003"]["item_id"]]
    assert statement.passed  # an open failure is work left, not an unintended consequence
    made = generate_brief(engine.ws, actor(engine, "auditor"), period)
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(made.content)).pages).split())
    assert ("Not every failure in the period is recovered or dispositioned: of 2 items that failed, 0 recovered "
            "by a retry, 1 dispositioned (1 waived), 1 open (neither recovered nor dispositioned).") in text
    assert f"{items['ACC-003']['item_id']} d ACC-003: findings register timed out" in text
    assert "0 unintended consequences" in text

    commands.disposition_item(engine, actor(engine, "olav"), items["ACC-003"]["item_id"], "resolved-outside",
                              "raised by hand", reference="JIRA-1")
    assert failures_sentence(build_integrity_statement(engine.ws, period).failures) == (
        "Every failure in the period is recovered or dispositioned: 0 recovered by a retry, 2 dispositioned "
        "(1 resolved-outside, 1 waived).")
