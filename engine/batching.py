"""What a batch of the executor is made of: its items as columns, what acting on it reads, what settling it
writes — and the pause of the cyclic GC that spans it.

A batch holds up to thousands of items (100,000-item runs are the design load), so it is kept as columns
and tuples rather than an object per item, and what every row shares travels once (``same``).
"""

from __future__ import annotations

import datetime as dt
import gc
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple

from core.states import SUCCEEDED
from engine.clock import Clock
from store.bulk import same

GC_PAUSE_MIN_ITEMS = 256
_gc_lock = threading.Lock()
_gc_holders = 0  # batches (in any thread) that hold the GC paused
_gc_we_paused = False


@contextmanager
def gc_paused(items: int) -> Iterator[None]:
    """Hold automatic cyclic GC for the span of one batch of ``items`` items, if it is a large one.

    A large batch makes a few container objects per item that all live until it is written; their
    number alone triggers collections, full ones every batch or two, each walking the whole heap to
    free nothing (0.7–1 s of a 100,000-item run, measured). A large batch is a fast one (about half a
    second of its own work at most, ``BatchSizer``; 0.24 s elapsed on average solo, 0.36 s under 20 app
    sessions whose script runs go on allocating meanwhile: the server's peak RSS stayed 510–550 MB,
    bench/RESULTS.md "Load"), so the pause is short; garbage is collected as usual once no batch holds it.
    A small batch is left alone: it allocates little, and may be slow (one item through a slow
    integration) while the GC it would hold is the whole process's. Counted, so that batches of runs in
    two threads do not turn it back on under each other; if the GC was off before, it stays off.
    """
    global _gc_holders, _gc_we_paused
    if items < GC_PAUSE_MIN_ITEMS:
        yield
        return
    with _gc_lock:
        _gc_holders += 1
        if _gc_holders == 1 and gc.isenabled():
            gc.disable()
            _gc_we_paused = True
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0 and _gc_we_paused:
                _gc_we_paused = False
                gc.enable()


class BatchSizer:
    """How many items the executor claims next, so that a batch costs about ``target_seconds``.

    A batch's cost is what it did: its thread's computing (acting, and the database's work in that thread)
    plus the time it waited for integrations outside the process. Not the elapsed time: under 20 app
    sessions a thread waits for the interpreter most of the time, and batches sized by elapsed time
    shrank to a few items, each paying a commit — the engine then kept 44% of its solo throughput (see
    bench/RESULTS.md "Load"). A slow integration still brings batches down to one item, so the re-check
    of the condition happens just before each of its actions.
    """

    __slots__ = ("clock", "size", "batch_max", "target_seconds", "_work_at_claim")

    def __init__(self, clock: Clock, batch_max: int, target_seconds: float) -> None:
        self.clock, self.batch_max, self.target_seconds = clock, batch_max, target_seconds
        self.size = min(16, batch_max)
        self._work_at_claim: float | None = None

    def next_size(self, waited_seconds: float) -> int:
        """The size of the batch claimed now; ``waited_seconds``: the last batch's wait on integrations."""
        work = self.clock.work_seconds()
        if self._work_at_claim is not None:
            took = work - self._work_at_claim + waited_seconds
            if took < self.target_seconds / 2:
                self.size = min(self.batch_max, self.size * 2)
            elif took > self.target_seconds:
                self.size = max(1, self.size // 2)
        self._work_at_claim = work
        return self.size


Batch = dict[str, list[Any]]  # claimed items as columns (``store.items.CLAIM_COLUMNS`` → values)


class Reads(NamedTuple):
    """What acting on a batch depends on, read before it is acted on."""

    checks: Mapping[str, tuple[str | None, dict[str, Any]]]  # subject → (reason it no longer holds, row)
    now_json: Mapping[str, tuple[str, dict[str, Any]]]  # subject → (snapshot text, jsonable) now
    approved: set[str]
    ledger: Mapping[str, dict[str, Any]]
    cancel_requested: bool


class Settlement:
    """Everything a batch writes: one tuple per item and table, turned into columns for the bulk writes.
    What is the same for every row (the run, the actor, the write time) travels as ``same(value)``."""

    UPDATE_COLUMNS = ("item_id", "outcome", "record_ref", "skip_reason", "failure_cause", "failure_class",
                      "attempts", "retry_due_at", "subject_snapshot")
    ATTEMPT_COLUMNS = ("item_id", "attempt", "started_at", "finished_at", "outcome", "failure_cause",
                       "failure_class", "record_ref", "evidence")
    LEDGER_COLUMNS = ("idempotency_key", "actioner", "params_hash", "record_ref", "item_id", "created_at")

    def __init__(self) -> None:
        self.update_rows: list[tuple[Any, ...]] = []
        self.attempt_rows: list[tuple[Any, ...]] = []
        self.ledger_rows: list[tuple[Any, ...]] = []
        self.records: dict[str, list[dict[str, Any]]] = {}
        self.approvals: list[dict[str, Any]] = []
        self.audit: list[tuple[str, str, dict[str, Any]]] = []  # event, item, payload
        self.invoked = 0
        self.waited_seconds = 0.0  # on the clock, in calls to actioners outside the process
        self.snapshot_changed = False  # if no subject changed, the snapshots are not rewritten

    @staticmethod
    def _columns(names: tuple[str, ...], rows: list[tuple[Any, ...]]) -> dict[str, Any]:
        if not rows:
            return {}
        return dict(zip(names, map(list, zip(*rows, strict=True)), strict=True))

    def updates(self, now: dt.datetime) -> dict[str, Any]:
        columns = self._columns(self.UPDATE_COLUMNS, self.update_rows)
        if not columns:
            return columns
        if not self.snapshot_changed:
            del columns["subject_snapshot"]  # the same text: a rewrite would only cost write volume
        columns["updated_at"] = same(now)
        return columns

    def attempts(self, run_id: str, actor: str) -> dict[str, Any]:
        columns = self._columns(self.ATTEMPT_COLUMNS, self.attempt_rows)
        if columns and not any(columns["evidence"]):  # only integrations answer with evidence
            columns["evidence"] = same(None)
        return columns and columns | {"run_id": same(run_id), "actor": same(actor)}

    def ledger(self) -> dict[str, Any]:
        columns = self._columns(self.LEDGER_COLUMNS, self.ledger_rows)
        return columns and columns | {"outcome": same(SUCCEEDED)}
