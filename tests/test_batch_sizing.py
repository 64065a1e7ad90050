"""How the executor sizes its batches: by what a batch did, not by how long other threads kept it waiting.

Under load (bench/bench_load.py: 20 app sessions while a 100,000-item run executes) the executor's thread
waits for the interpreter most of the time. Batches sized by elapsed time shrank to a few items, each
paying a commit, and the engine kept 44% of its solo throughput. Here an in-process actioner sleeps a
millisecond per item — elapsed time that is not the batch's work, as a wait for the interpreter is — and
the batches must still grow; while an integration outside the process that is slow must still bring
them down to one item (its wait is the batch's cost).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from engine.batching import BatchSizer
from store import items as item_store
from tests.support import START, WrappedActioner, finding_definition, fire_one, run_of, scalar


class ScriptedClock:
    """Elapsed time and the thread's computing as the test scripts them, never the machine's: a busy
    machine (CI, other test workers) must not change what these tests see. Each item costs the thread
    ``work_per_item`` of computing; an actioner's wait moves elapsed time only."""

    def __init__(self, work_per_item: float = 0.00002) -> None:
        self.elapsed = 0.0
        self.work = 0.0
        self.work_per_item = work_per_item

    def now(self) -> dt.datetime:
        return START + dt.timedelta(seconds=self.elapsed)

    def sleep(self, seconds: float) -> None:
        self.elapsed += seconds

    def work_seconds(self) -> float:
        return self.work

    def act(self, waited: float) -> None:
        self.work += self.work_per_item
        self.elapsed += waited + self.work_per_item


class WaitsInProcess(WrappedActioner):
    """Acts in process, but each item's thread is kept waiting a millisecond (as by other threads)."""

    in_process = True

    def __init__(self, clock: ScriptedClock) -> None:
        super().__init__()
        self.clock = clock

    def before(self, req: Any, ctx: Any) -> None:  # noqa: ANN401
        self.clock.act(waited=0.001)


class SlowIntegration(WrappedActioner):
    """Reaches outside the process (called under the action timeout) and takes 20 ms to answer."""

    in_process = False

    def __init__(self, clock: ScriptedClock) -> None:
        super().__init__()
        self.clock = clock

    def before(self, req: Any, ctx: Any) -> None:  # noqa: ANN401
        self.clock.act(waited=0.02)


def _claimed_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    claim = item_store.claim_pending_item_columns

    def recording(tx: Any, run_id: str, size: int, **kw: Any) -> Any:  # noqa: ANN401
        sizes.append(size)
        return claim(tx, run_id, size, **kw)

    monkeypatch.setattr(item_store, "claim_pending_item_columns", recording)
    return sizes


def test_batches_grow_while_the_thread_waits_for_others(make_engine, monkeypatch) -> None:  # noqa: ANN001
    n = 2000
    clock = ScriptedClock()
    engine = make_engine({"d": finding_definition("d")}, accounts=n,
                         actioners={"findings.create": WaitsInProcess(clock)}, batch_max=1024,
                         batch_target_seconds=0.25)
    engine.executor.clock = clock
    sizes = _claimed_sizes(monkeypatch)
    run_id = fire_one(engine)
    assert run_of(engine, run_id)["status"] == "completed"
    assert scalar(engine, "SELECT count(*) FROM findings") == n
    # 16, 32, … 1024: elapsed time alone (≥ 1 ms an item) would have stopped them at 128–256 items.
    assert max(sizes) == 1024, sizes


def test_a_slow_integration_brings_batches_down_to_one_item(make_engine, monkeypatch) -> None:  # noqa: ANN001
    n = 40
    clock = ScriptedClock()
    actioner = SlowIntegration(clock)
    engine = make_engine({"d": finding_definition("d")}, accounts=n, actioners={"findings.create": actioner},
                         batch_target_seconds=0.03)  # one 20 ms answer is within it, two are not
    engine.executor.clock = clock
    sizes = _claimed_sizes(monkeypatch)
    run_id = fire_one(engine)
    assert run_of(engine, run_id)["status"] == "completed"
    assert len(actioner.calls) == n
    assert sizes[:5] == [16, 8, 4, 2, 1] and set(sizes[5:]) == {1}, sizes


class StepClock:
    """A clock whose computing the test sets."""

    def __init__(self) -> None:
        self.work = 0.0

    def work_seconds(self) -> float:
        return self.work


@pytest.mark.parametrize(("work", "waited", "expected"), [
    (0.0, 0.0, [16, 32, 64, 64]),         # cheap: doubles up to the cap
    (0.3, 0.0, [16, 8, 4, 2]),            # computing over the target halves
    (0.0, 0.3, [16, 8, 4, 2]),            # so does waiting on an integration
    (0.2, 0.0, [16, 16, 16, 16]),          # within target/2 … target: kept
])
def test_the_size_follows_the_cost_of_the_batch_before(work: float, waited: float, expected: list[int]) -> None:
    clock = StepClock()
    sizer = BatchSizer(clock, batch_max=64, target_seconds=0.25)  # type: ignore[arg-type]
    sizes = [sizer.next_size(0.0)]
    for _ in expected[1:]:
        clock.work += work
        sizes.append(sizer.next_size(waited))
    assert sizes == expected


def test_one_item_at_a_time_still_grows_when_the_integration_speeds_up() -> None:
    clock = StepClock()
    sizer = BatchSizer(clock, batch_max=4000, target_seconds=0.5)  # type: ignore[arg-type]
    sizer.size = 1
    sizer.next_size(0.0)
    assert [sizer.next_size(0.01) for _ in range(4)] == [2, 4, 8, 16]
