"""The engine's clock, injectable so a simulated quarter runs the real engine in seconds.

Everything in the engine asks ``clock.now()`` and waits with ``clock.sleep()``; nothing reads the wall
clock directly. The simulated clock advances instantly and, as it passes the instants at which the demo
world scheduled a change (an account going inactive, an outage ending), applies those changes in order,
so the engine meets them exactly as it would in real time.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Protocol

UTC = dt.UTC


class Clock(Protocol):
    def now(self) -> dt.datetime: ...
    def sleep(self, seconds: float) -> None: ...

    def work_seconds(self) -> float:
        """How much computing the calling thread has done so far, on this clock's scale.

        Not ``now()``: a thread's elapsed time also counts the time it waited for the interpreter while
        other threads (app sessions) ran, which says nothing about how much work it gave itself."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def work_seconds(self) -> float:
        return time.thread_time()


class SimulatedClock:
    """Time that moves only when told to, running scheduled callbacks as it passes them."""

    def __init__(self, start: dt.datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the simulated clock needs a timezone-aware start")
        self._now = start.astimezone(UTC)
        self._queue: list[tuple[dt.datetime, int, Callable[[], object]]] = []
        self._counter = itertools.count()
        self._lock = threading.RLock()
        self._running_callbacks = False

    def now(self) -> dt.datetime:
        return self._now

    def work_seconds(self) -> float:
        return 0.0  # computing takes no simulated time: only sleeps (an integration's latency) move it

    def call_at(self, when: dt.datetime, callback: Callable[[], object]) -> None:
        with self._lock:
            heapq.heappush(self._queue, (when.astimezone(UTC), next(self._counter), callback))

    def sleep(self, seconds: float) -> None:
        self.advance_to(self._now + dt.timedelta(seconds=seconds))

    def advance_to(self, when: dt.datetime) -> None:
        """Move to ``when``, running every callback due on the way at its own instant."""
        with self._lock:
            while self._queue and self._queue[0][0] <= when and not self._running_callbacks:
                at, _, callback = heapq.heappop(self._queue)
                self._now = max(self._now, at)
                self._running_callbacks = True
                try:
                    callback()
                finally:
                    self._running_callbacks = False
            self._now = max(self._now, when)
