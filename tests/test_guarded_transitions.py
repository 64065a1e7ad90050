"""Transitions are checked against the stored state inside the store's write: one guarded statement per
transition, and a named refusal (``TransitionRefused``) when the row was not in an allowed state — never a
write on the strength of what the caller believed the state to be (the executor used to pass the constant
"in-flight" as the current state)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from core.states import (
    AWAITING_APPROVAL,
    COMPLETED,
    IN_FLIGHT,
    ITEM_FAILED,
    ITEM_PENDING,
    ITEM_TRANSITIONS,
    SKIPPED,
    SUCCEEDED,
    TransitionRefused,
    item_sources,
)
from store import items as item_store
from store import runs as run_store
from tests.backends import backend_fixture, make_engine_fixture, pg_server_fixture, pg_template_fixture  # noqa: F401
from tests.support import finding_definition, fire_one, run_of


def _item_ids(engine, run_id: str) -> list[str]:  # noqa: ANN001
    with engine.ws.read() as conn:
        return [r["item_id"] for r in item_store.read_items(conn, run_id)]


def _set_outcome(engine, item_id: str, outcome: str) -> None:  # noqa: ANN001
    with engine.ws.transaction() as tx:
        tx.conn.execute(sa.text("UPDATE run_items SET outcome = :o WHERE item_id = :i"), {"o": outcome, "i": item_id})


@pytest.mark.parametrize("wanted", sorted(ITEM_TRANSITIONS))
def test_item_sources_are_the_transition_table_read_backwards(wanted: str) -> None:
    assert item_sources(wanted) == {s for s, ts in ITEM_TRANSITIONS.items() if wanted in ts}


def test_settling_an_item_that_is_not_in_flight_is_refused_by_name_and_rolls_back(make_engine) -> None:
    engine = make_engine({"d": finding_definition("d")}, accounts=3)
    run_id = fire_one(engine)
    first, second, _ = _item_ids(engine, run_id)
    _set_outcome(engine, first, IN_FLIGHT)  # as a batch claims them
    _set_outcome(engine, second, SUCCEEDED)  # …but this one was settled meanwhile
    with pytest.raises(TransitionRefused, match=f"^item {second} is succeeded; it cannot become failed "
                                                r"\(allowed: nothing: it is final\)$"):
        with engine.ws.transaction() as tx:
            item_store.settle_item_outcomes(tx, {"item_id": [first, second], "outcome": [ITEM_FAILED, ITEM_FAILED],
                                                 "updated_at": [tx.now(), tx.now()]})
    with engine.ws.read() as conn:  # nothing of the batch was written
        assert item_store.read_item(conn, first)["outcome"] == IN_FLIGHT


@pytest.mark.parametrize("stored,allowed", [(ITEM_PENDING, False), (ITEM_FAILED, True), (SUCCEEDED, False),
                                            (AWAITING_APPROVAL, True)])
def test_a_claim_takes_only_items_in_the_states_it_names(make_engine, stored: str, allowed: bool) -> None:
    engine = make_engine({"d": finding_definition("d")}, accounts=1)
    [item] = _item_ids(engine, fire_one(engine))
    _set_outcome(engine, item, stored)
    with engine.ws.transaction() as tx:
        taken = item_store.claim_items(tx, [item], (ITEM_FAILED, AWAITING_APPROVAL))
    assert [t["item_id"] for t in taken] == ([item] if allowed else [])


def test_a_claim_from_a_state_the_table_forbids_is_refused() -> None:
    with pytest.raises(TransitionRefused, match=r"^item X is succeeded; it cannot become in-flight"):
        item_store.claim_items(None, ["X"], (SUCCEEDED,))  # type: ignore[arg-type]  # refused before any SQL


def test_a_dismissal_of_an_item_no_longer_awaiting_is_refused(make_engine) -> None:
    engine = make_engine({"d": finding_definition("d")}, accounts=1)
    [item] = _item_ids(engine, fire_one(engine))  # succeeded, not awaiting approval
    with pytest.raises(TransitionRefused, match=f"^item {item} is succeeded; it cannot become skipped"):
        with engine.ws.transaction() as tx:
            item_store.skip_item(tx, item, AWAITING_APPROVAL, "dismissed by x: y")


def test_a_run_transition_checks_the_stored_status(make_engine) -> None:
    engine = make_engine({"d": finding_definition("d")}, accounts=1)
    run_id = fire_one(engine)
    assert run_of(engine, run_id)["status"] == COMPLETED
    with pytest.raises(TransitionRefused, match=f"^run {run_id} is completed; it cannot become cancelled"):
        with engine.ws.transaction() as tx:  # a caller that believed the run was still running
            run_store.transition_run(tx, run_id, "running", "cancelled")
    with pytest.raises(ValueError, match="only through transition_run"):
        with engine.ws.transaction() as tx:
            run_store.write_run_fields(tx, run_id, status=SKIPPED)


def test_the_fast_path_names_the_item_its_guard_kept(make_engine) -> None:
    """A batch big enough for the bulk update (DuckDB's registered array, PostgreSQL's ``unnest``) is guarded
    the same way."""
    from store.bulk import _FAST_PATH_MIN_ROWS

    n = max(_FAST_PATH_MIN_ROWS, 8) + 2
    engine = make_engine({"d": finding_definition("d")}, accounts=n)
    ids = _item_ids(engine, fire_one(engine))
    with engine.ws.transaction() as tx:
        tx.conn.execute(sa.text("UPDATE run_items SET outcome = 'in-flight'"))
        tx.conn.execute(sa.text("UPDATE run_items SET outcome = 'skipped' WHERE item_id = :i"), {"i": ids[5]})
    with pytest.raises(TransitionRefused, match=f"^item {ids[5]} is skipped; it cannot become succeeded"):
        with engine.ws.transaction() as tx:
            item_store.settle_item_outcomes(tx, {"item_id": ids, "outcome": [SUCCEEDED] * n,
                                                 "updated_at": [tx.now()] * n})
    with engine.ws.read() as conn:
        assert {r["outcome"] for r in item_store.read_items(conn, ids[0].rsplit("-", 1)[0])} == {IN_FLIGHT, SKIPPED}
