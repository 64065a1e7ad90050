"""The matched population compared: a scheduled run against the previous run of the same automation — who
entered and who left, each with the clause that changed (a field's value, or the window moving with the
trigger time), from the items' snapshots and the register's recorded changes; and a definition version change
counted on the same data."""

from __future__ import annotations

import datetime as dt

from core.conditions import Clause, Compare, Condition, DaysAfterTrigger
from core.population import explain_move, holds, split_population
from reporting.population import compare_with_previous
from store.subjects import load_rows
from tests.support import run_of
from tests.test_preview import DUE

AT = dt.datetime(2026, 7, 6, 6, tzinfo=dt.UTC)
WEEK = dt.timedelta(days=7)
DUE_WINDOW = Compare("kyc_review_due", "lte", DaysAfterTrigger(0))
ACTIVE = Compare("status", "eq", "active")
COND = Condition("accounts", (Clause(ACTIVE, "no longer active"), Clause(DUE_WINDOW, "not due")), ())
TYPES = {"status": "string", "kyc_review_due": "date"}


# --- pure -------------------------------------------------------------------------------------------------------
def test_a_clause_holds_on_fields_at_a_time_as_sql_would() -> None:
    assert holds(DUE_WINDOW, {"kyc_review_due": "2026-07-06"}, AT, "date") is True
    assert holds(DUE_WINDOW, {"kyc_review_due": "2026-07-07"}, AT, "date") is False
    assert holds(DUE_WINDOW, {"kyc_review_due": None}, AT, "date") is False  # NULL compares false
    assert holds(Compare("status", "in", ["active", "dormant"]), {"status": "dormant"}, AT, "string") is True
    assert holds(Compare("closed_at", "is_null"), {}, AT, "timestamp") is True


def test_a_move_is_explained_by_the_clause_that_changed() -> None:
    due_next_week = {"status": "active", "kyc_review_due": "2026-07-10"}
    assert explain_move(COND, TYPES, due_next_week, AT, due_next_week, AT + WEEK) == [
        "kyc_review_due moved inside the window (kyc_review_due is on or before/at most +0 days from the trigger)"]
    assert explain_move(COND, TYPES, {"status": "active", "kyc_review_due": "2026-07-01"}, AT,
                        {"status": "inactive", "kyc_review_due": "2026-07-01"}, AT + WEEK) == [
        "status changed from 'active' to 'inactive'"]
    assert explain_move(COND, TYPES, due_next_week, AT, due_next_week, AT)[0].startswith("no compared field changed")
    assert split_population(["A", "C", "D"], ["A", "B", "C"]) == (["D"], ["B"], 2)


# --- over two real runs -----------------------------------------------------------------------------------------
def test_the_second_weekly_run_says_who_entered_and_left_and_why(make_engine) -> None:
    engine = make_engine({"due": DUE}, accounts=4)
    with engine.ws.transaction() as tx:  # ACC-003's review falls due next week
        load_rows(tx, "accounts", [{"account_id": "ACC-003", "kyc_review_due": dt.date(2026, 7, 10)}],
                  origin="test", source="test", actor="member:admin", raise_events=False)
    [first] = engine.fire("due")
    engine.clock.sleep(WEEK.total_seconds())
    with engine.ws.transaction() as tx:  # ACC-002 closes during the week; ACC-004 leaves the register
        load_rows(tx, "accounts", [{"account_id": "ACC-002", "status": "inactive"}], origin="test", source="test",
                  actor="member:admin", raise_events=False)
    [second] = engine.fire("due")
    assert compare_with_previous(engine.ws, run_of(engine, first)) is None  # the first run has nothing before it
    compared = compare_with_previous(engine.ws, run_of(engine, second))
    assert compared is not None
    change, version = compared
    assert version is None  # the same version ran both times
    assert (change.previous_run_id, change.previous_matched, change.matched, change.stayed) == (first, 3, 3, 2)
    assert [(m.subject_id, m.why) for m in change.entered] == [
        ("ACC-003", ("kyc_review_due moved inside the window (kyc_review_due is on or before/at most +0 days from "
                     "the trigger)",))]
    assert [(m.subject_id, m.label, m.why) for m in change.left] == [
        ("ACC-002", "Member 2", ("status changed from 'active' to 'inactive'",))]
    assert change.moved == 2 and round(change.moved_percent()) == 67


def test_a_new_version_is_counted_against_the_old_on_the_same_data(make_engine) -> None:
    engine = make_engine({"due": DUE}, accounts=4)
    [first] = engine.fire("due")
    (engine.definitions_dir / "due.yaml").write_text(DUE.replace(
        "- {field: status, op: eq, value: active, reason: the account is no longer active}",
        "- {field: status, op: eq, value: active, reason: the account is no longer active}\n"
        "    - {field: account_id, op: ne, value: ACC-001, reason: not this one}"))
    report = engine.load_definitions(actor="member:admin")
    assert not report.errors, report.errors
    engine.clock.sleep(WEEK.total_seconds())
    [second] = engine.fire("due")
    compared = compare_with_previous(engine.ws, run_of(engine, second))
    assert compared is not None
    change, version = compared
    assert version is not None
    assert (version.previous_version, version.version, version.previous_matches, version.matches) == (1, 2, 4, 3)
    assert [m.subject_id for m in change.left] == ["ACC-001"] and first == change.previous_run_id
    assert change.left[0].why == ("version 2's clause account_id is not 'ACC-001' does not hold (not this one)",)
