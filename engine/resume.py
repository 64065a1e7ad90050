"""Work this process holds, and resuming work nobody holds any more.

A batch whose write failed (a full disk, an I/O error) is rolled back whole and its items stay in flight;
the thread that worked the run gives up with the error. Recovery at start finishes such runs, but a live
engine must not wait for a restart: once the workspace can be written again it resumes them itself.

The danger is resuming work that is in fact still held: recovering an item another thread is acting on
would act twice. So every thread that works a run holds it here (``WorkRegistry``), from the moment the
run is created or its items are claimed until its work is written; and a run is resumed only if no one
holds it *and* its unfinished items were last written more than a grace period ago — the grace covers
the instant between a command's claim committing and its thread taking hold of the run.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from engine.settings import number_from_env

RESUME_EVERY_SECONDS = 30.0
RESUME_GRACE_SECONDS = 60.0


def resume_every_seconds() -> float:
    """How often a live engine looks for interrupted work (``RUNLEDGER_RESUME_SECONDS``)."""
    return number_from_env("RUNLEDGER_RESUME_SECONDS", RESUME_EVERY_SECONDS, "seconds")


class WorkRegistry:
    """The runs threads of this process are working on now (counted: two threads may work one run)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: Counter[str] = Counter()

    def hold(self, run_ids: Iterable[str]) -> None:
        with self._lock:
            self._runs.update(run_ids)

    def release(self, run_ids: Iterable[str]) -> None:
        with self._lock:
            self._runs.subtract(run_ids)
            self._runs = +self._runs  # drop the runs no one holds

    @contextmanager
    def holding(self, run_id: str) -> Iterator[None]:
        self.hold([run_id])
        try:
            yield
        finally:
            self.release([run_id])

    def is_held(self, run_id: str) -> bool:
        with self._lock:
            return self._runs[run_id] > 0


def is_interrupted(held: bool, matched: bool, last_written: dt.datetime | None, now: dt.datetime,
                   grace_seconds: float = RESUME_GRACE_SECONDS) -> bool:
    """Whether a still-open run is work nobody is doing: not held here, and either never matched or with
    unfinished items untouched for longer than the grace period."""
    if held:
        return False
    if not matched:
        return True  # created and released without being matched: its matching failed to write
    return last_written is not None and (now - last_written).total_seconds() > grace_seconds
