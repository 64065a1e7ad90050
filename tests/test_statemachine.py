"""The run and item state machines: every (from, to) pair, negatives included, and the one function
that derives a run's status from its facts."""

from __future__ import annotations

import itertools

import pytest

from core import states as sm

RUN_PAIRS = list(itertools.product(sm.RUN_STATUSES, repeat=2))
ITEM_PAIRS = list(itertools.product(sm.ITEM_STATES, repeat=2))


def test_the_tables_cover_every_status_and_name_only_known_ones() -> None:
    assert set(sm.RUN_TRANSITIONS) == set(sm.RUN_STATUSES)
    assert set(sm.ITEM_TRANSITIONS) == set(sm.ITEM_STATES)
    assert set().union(*sm.RUN_TRANSITIONS.values()) <= set(sm.RUN_STATUSES)
    assert set().union(*sm.ITEM_TRANSITIONS.values()) <= set(sm.ITEM_STATES)
    # The spec's names, spelled as the product page spells them.
    assert sm.RUN_STATUSES == ("pending", "running", "completed", "completed-with-failures", "cancelled", "failed")
    assert set(sm.ITEM_OUTCOMES) == {"succeeded", "failed", "skipped", "awaiting-approval", "idempotent-replay"}


def test_terminal_run_statuses_allow_nothing_but_a_reopen_after_failures() -> None:
    for status in sm.TERMINAL_RUN_STATUSES - {sm.COMPLETED_WITH_FAILURES}:
        assert sm.RUN_TRANSITIONS[status] == frozenset()
    assert sm.RUN_TRANSITIONS[sm.COMPLETED_WITH_FAILURES] == {sm.RUNNING}  # a manual retry reopens it
    for outcome in sm.FINAL_ITEM_OUTCOMES:
        assert sm.ITEM_TRANSITIONS[outcome] == frozenset()


@pytest.mark.parametrize(("current", "wanted"), RUN_PAIRS, ids=[f"{a}->{b}" for a, b in RUN_PAIRS])
def test_run_transition(current: str, wanted: str) -> None:
    if wanted in sm.RUN_TRANSITIONS[current]:
        sm.check_run_transition("RUN-000001", current, wanted)  # allowed: no exception
        return
    with pytest.raises(sm.TransitionRefused) as refused:
        sm.check_run_transition("RUN-000001", current, wanted)
    assert (refused.value.current, refused.value.wanted) == (current, wanted)
    assert str(refused.value).startswith(f"run RUN-000001 is {current}; it cannot become {wanted} (allowed: ")


@pytest.mark.parametrize(("current", "wanted"), ITEM_PAIRS, ids=[f"{a}->{b}" for a, b in ITEM_PAIRS])
def test_item_transition(current: str, wanted: str) -> None:
    if wanted in sm.ITEM_TRANSITIONS[current]:
        sm.check_item_transition("RUN-000001-000001", current, wanted)
        return
    with pytest.raises(sm.TransitionRefused) as refused:
        sm.check_item_transition("RUN-000001-000001", current, wanted)
    assert (refused.value.current, refused.value.wanted) == (current, wanted)
    assert f"item RUN-000001-000001 is {current}; it cannot become {wanted}" in str(refused.value)


def test_refusal_of_a_final_state_says_it_is_final() -> None:
    with pytest.raises(sm.TransitionRefused, match=r"\(allowed: nothing: it is final\)"):
        sm.check_item_transition("I-1", sm.SUCCEEDED, sm.IN_FLIGHT)
    with pytest.raises(sm.TransitionRefused, match=r"allowed: cancelled, failed, running"):
        sm.check_run_transition("R-1", sm.PENDING, sm.COMPLETED)


def facts(started: bool = True, cancel: bool = False, failure: str | None = None, retries: int = 0,
          **counts: int) -> sm.RunFacts:
    """Outcome counts by keyword, with ``_`` for ``-`` (``in_flight=2``)."""
    return sm.RunFacts(started, cancel, failure, {k.replace("_", "-"): v for k, v in counts.items()}, retries)


DERIVE_CASES = {
    "not started: pending": (facts(started=False), sm.PENDING),
    "not started, items not yet matched: pending": (facts(started=False, pending=3), sm.PENDING),
    "cancelled before it started": (facts(started=False, cancel=True), sm.CANCELLED),
    "pending items left: running": (facts(pending=2, succeeded=1), sm.RUNNING),
    "in flight: running": (facts(in_flight=1, succeeded=4), sm.RUNNING),
    "awaiting approval: running": (facts(awaiting_approval=1, succeeded=1), sm.RUNNING),
    "automatic retry scheduled: running": (facts(failed=1, succeeded=3, retries=1), sm.RUNNING),
    "cancel requested, in flight still finishing: running": (facts(cancel=True, in_flight=2, skipped=5),
                                                              sm.RUNNING),
    "cancel requested and settled": (facts(cancel=True, skipped=3, succeeded=1), sm.CANCELLED),
    "cancel requested, a retry was scheduled: cancelled": (facts(cancel=True, failed=1, retries=1), sm.CANCELLED),
    "cancel requested, approvals open: cancelled": (facts(cancel=True, awaiting_approval=2), sm.CANCELLED),
    "some failed, nothing left: completed-with-failures": (facts(failed=2, succeeded=5, skipped=1),
                                                           sm.COMPLETED_WITH_FAILURES),
    "all failed: completed-with-failures": (facts(failed=3), sm.COMPLETED_WITH_FAILURES),
    "succeeded, skipped, replayed: completed": (facts(succeeded=5, skipped=2, idempotent_replay=1),
                                                sm.COMPLETED),
    "matched nothing: completed": (facts(), sm.COMPLETED),
    "all skipped: completed": (facts(skipped=4), sm.COMPLETED),
    "run-level failure wins": (facts(failure="actioner module unreachable", succeeded=3), sm.FAILED),
    "run-level failure before it started": (facts(started=False, failure="matching failed"), sm.FAILED),
    "run-level failure even when cancelled": (facts(cancel=True, failure="unreachable"), sm.FAILED),
}


@pytest.mark.parametrize(("f", "expected"), DERIVE_CASES.values(), ids=DERIVE_CASES.keys())
def test_derive_run_status(f: sm.RunFacts, expected: str) -> None:
    assert sm.derive_run_status(f) == expected


def test_every_derived_status_is_a_run_status() -> None:
    assert {expected for _, expected in DERIVE_CASES.values()} == set(sm.RUN_STATUSES)
