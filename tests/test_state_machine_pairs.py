"""Every (from, to) pair of the run and item state machines, negatives included."""

from __future__ import annotations

import itertools

import pytest

from engine import statemachine as sm

RUN_PAIRS = list(itertools.product(sm.RUN_STATUSES, repeat=2))
ITEM_PAIRS = list(itertools.product(sm.ITEM_STATES, repeat=2))


@pytest.mark.parametrize(("current", "wanted"), RUN_PAIRS)
def test_run_transition(current: str, wanted: str) -> None:
    if wanted in sm.RUN_TRANSITIONS[current]:
        sm.check_run_transition("RUN-1", current, wanted)
    else:
        with pytest.raises(sm.TransitionRefused, match=f"run RUN-1 is {current}; it cannot become {wanted}"):
            sm.check_run_transition("RUN-1", current, wanted)


@pytest.mark.parametrize(("current", "wanted"), ITEM_PAIRS)
def test_item_transition(current: str, wanted: str) -> None:
    if wanted in sm.ITEM_TRANSITIONS[current]:
        sm.check_item_transition("I-1", current, wanted)
    else:
        with pytest.raises(sm.TransitionRefused):
            sm.check_item_transition("I-1", current, wanted)


def facts(started: bool = True, cancel: bool = False, failure: str | None = None, retries: int = 0,
          **counts: int) -> sm.RunFacts:
    return sm.RunFacts(started, cancel, failure, {k.replace("_", "-"): v for k, v in counts.items()}, retries)


@pytest.mark.parametrize(("f", "expected"), [
    (facts(started=False), sm.PENDING),
    (facts(started=False, cancel=True), sm.CANCELLED),
    (facts(failure="unreachable", succeeded=3), sm.FAILED),
    (facts(pending=2, succeeded=1), sm.RUNNING),
    (facts(in_flight=1), sm.RUNNING),
    (facts(awaiting_approval=1, succeeded=1), sm.RUNNING),
    (facts(failed=1, retries=1), sm.RUNNING),
    (facts(failed=2, succeeded=5), sm.COMPLETED_WITH_FAILURES),
    (facts(succeeded=5, skipped=2, idempotent_replay=1), sm.COMPLETED),
    (facts(), sm.COMPLETED),
    (facts(cancel=True, in_flight=1), sm.RUNNING),
    (facts(cancel=True, skipped=3, succeeded=1), sm.CANCELLED),
])
def test_derive_run_status(f: sm.RunFacts, expected: str) -> None:
    assert sm.derive_run_status(f) == expected
