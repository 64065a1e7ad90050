"""The one state machine for runs and items: allowed transitions declared once, and run status derived
by one function from the run's items, its cancel request and any run-level failure.

Nothing else in the code base decides a status. Store functions write what this module decided.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# --- run statuses (spelled as in the product page) -----------------------------------------------
PENDING = "pending"
RUNNING = "running"
COMPLETED = "completed"
COMPLETED_WITH_FAILURES = "completed-with-failures"
CANCELLED = "cancelled"
FAILED = "failed"
RUN_STATUSES = (PENDING, RUNNING, COMPLETED, COMPLETED_WITH_FAILURES, CANCELLED, FAILED)
TERMINAL_RUN_STATUSES = frozenset({COMPLETED, COMPLETED_WITH_FAILURES, CANCELLED, FAILED})

# --- item outcomes ---------------------------------------------------------------------------------
# ``pending`` and ``in-flight`` come before an outcome; the other five are the spec's outcomes.
ITEM_PENDING = "pending"
IN_FLIGHT = "in-flight"
SUCCEEDED = "succeeded"
ITEM_FAILED = "failed"
SKIPPED = "skipped"
AWAITING_APPROVAL = "awaiting-approval"
IDEMPOTENT_REPLAY = "idempotent-replay"
ITEM_OUTCOMES = (SUCCEEDED, ITEM_FAILED, SKIPPED, AWAITING_APPROVAL, IDEMPOTENT_REPLAY)
ITEM_STATES = (ITEM_PENDING, IN_FLIGHT, *ITEM_OUTCOMES)
FINAL_ITEM_OUTCOMES = frozenset({SUCCEEDED, SKIPPED, IDEMPOTENT_REPLAY})

OPEN_RUN_STATUSES = (PENDING, RUNNING)  # not yet closed: recovery and the retry loop look at these
ATTENTION_STATUSES = (COMPLETED_WITH_FAILURES, FAILED)  # runs a reviewer should look at
UNFINISHED_ITEM_STATES = (ITEM_PENDING, IN_FLIGHT)
ACTED_OUTCOMES = (SUCCEEDED, IDEMPOTENT_REPLAY)  # the action happened (now or earlier): a record may exist
CANCELLED_REASON = "cancelled"  # the skip reason of an item its run's cancellation stopped
SKIP_KINDS = ("condition", "dismissed", CANCELLED_REASON)  # why items are skipped, in the integrity counts

TRANSIENT = "transient"
DETERMINISTIC = "deterministic"
FAILURE_CLASSES = (TRANSIENT, DETERMINISTIC)
UNKNOWN_CLASS = "unknown"  # a failure recorded without a class (before classes were kept)

# Approval decisions; NULL while open. ``cancelled``: the run was cancelled while the approval waited.
APPROVED, DISMISSED, APPROVAL_CANCELLED, APPROVAL_OPEN = "approved", "dismissed", "cancelled", "open"
APPROVAL_DECISIONS = (APPROVED, DISMISSED, APPROVAL_CANCELLED)

# Trigger kinds a run records.
SCHEDULE, EVENT, SIGNAL, MANUAL, IMPORT = "schedule", "event", "signal", "manual", "import"
RUN_TRIGGER_KINDS = (SCHEDULE, EVENT, SIGNAL, MANUAL, IMPORT)  # import: a register's scheduled source read

RUN_TRANSITIONS: Mapping[str, frozenset[str]] = {
    PENDING: frozenset({RUNNING, CANCELLED, FAILED}),
    RUNNING: frozenset({COMPLETED, COMPLETED_WITH_FAILURES, CANCELLED, FAILED}),
    # A manual retry reopens a run closed with failures; the run closes again when the retry settles.
    COMPLETED_WITH_FAILURES: frozenset({RUNNING}),
    COMPLETED: frozenset(),
    CANCELLED: frozenset(),
    FAILED: frozenset(),
}

ITEM_TRANSITIONS: Mapping[str, frozenset[str]] = {
    ITEM_PENDING: frozenset({IN_FLIGHT, SKIPPED}),  # skipped: the run was cancelled before it started
    IN_FLIGHT: frozenset({SUCCEEDED, ITEM_FAILED, SKIPPED, AWAITING_APPROVAL, IDEMPOTENT_REPLAY}),
    AWAITING_APPROVAL: frozenset({IN_FLIGHT, SKIPPED}),  # approved → executes; dismissed → skipped
    ITEM_FAILED: frozenset({IN_FLIGHT}),  # a retry, automatic or by a member
    SUCCEEDED: frozenset(),
    SKIPPED: frozenset(),
    IDEMPOTENT_REPLAY: frozenset(),
}


class TransitionRefused(Exception):
    """A status change the state machine does not allow; the message names both ends."""

    def __init__(self, kind: str, entity_id: str, current: str, wanted: str) -> None:
        self.current, self.wanted = current, wanted
        allowed = ", ".join(sorted((RUN_TRANSITIONS if kind == "run" else ITEM_TRANSITIONS).get(current, ()))) \
            or ("nothing: it is final" if current != "missing" else "nothing: there is no such row")
        super().__init__(f"{kind} {entity_id} is {current}; it cannot become {wanted} (allowed: {allowed})")


def run_sources(wanted: str) -> frozenset[str]:
    """The statuses a run may become ``wanted`` from: what the store's guarded write requires of the row."""
    return frozenset(s for s, targets in RUN_TRANSITIONS.items() if wanted in targets)


def item_sources(wanted: str) -> frozenset[str]:
    """The states an item may become ``wanted`` from (``in-flight`` from pending, failed or awaiting approval)."""
    return frozenset(s for s, targets in ITEM_TRANSITIONS.items() if wanted in targets)


def check_run_transition(run_id: str, current: str, wanted: str) -> None:
    if wanted not in RUN_TRANSITIONS[current]:
        raise TransitionRefused("run", run_id, current, wanted)


def check_item_transition(item_id: str, current: str, wanted: str) -> None:
    if wanted not in ITEM_TRANSITIONS[current]:
        raise TransitionRefused("item", item_id, current, wanted)


@dataclass(frozen=True)
class RunFacts:
    """What the run status is derived from."""

    started: bool
    cancel_requested: bool
    run_failure: str | None
    outcome_counts: Mapping[str, int]
    retries_scheduled: int  # failed items with an automatic retry still due


def derive_run_status(f: RunFacts) -> str:
    """The run's status, from its facts alone: never set ad hoc."""
    if f.run_failure:
        return FAILED
    c = f.outcome_counts
    if not f.started:
        return CANCELLED if f.cancel_requested else PENDING
    if c.get(IN_FLIGHT, 0):
        return RUNNING
    if not f.cancel_requested and (c.get(ITEM_PENDING, 0) or c.get(AWAITING_APPROVAL, 0)
                                   or f.retries_scheduled):
        return RUNNING
    if f.cancel_requested:
        return CANCELLED
    if c.get(ITEM_FAILED, 0):
        return COMPLETED_WITH_FAILURES
    return COMPLETED
