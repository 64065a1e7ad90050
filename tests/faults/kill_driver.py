"""The engine process of the kill-anywhere harness: it recovers, works the workload's rounds to rest, and
SIGKILLs itself at a chosen point. Not a pytest module.

    python tests/faults/kill_driver.py --db PATH --defs DIR --rounds R [--kill CATEGORY:N | wall-clock:SECONDS]
    python tests/faults/kill_driver.py --serve    # a zygote: one life per line of arguments on stdin


The points are hooks this process installs on the real engine, no branch in its code: around a batch's
settlement transaction (the executor's write: ``batch-before`` the writes, ``batch-during`` after them with
the transaction open, ``batch-after`` it committed), the matching transaction, every member command's
transaction (in it, and just committed), an actioner's out-of-band effect committed before its item settles,
and the member's cancel about to be made. Each point has a category: the group commit it is in (before,
during, after) or, inside a member's retry, an automatic retry, a cancel or an approval, that. ``--kill C:N``
makes the process say ``kill C POINT`` and SIGKILL itself at the N-th point of category C it passes;
``--kill wall-clock:S`` makes a timer thread do so S seconds after ``ready``, wherever the engine then is
(inside a DuckDB statement or commit included), naming the last point passed.

``--serve`` saves each life the ~1 s of imports: this process imports the engine once, then for each line
(a JSON list of arguments) forks a life, says ``pid N``, and ``exit RC`` when it ends (−9: killed).

Lines on stdout (flushed): ``ready`` (workspace open, definitions loaded, nothing recovered yet),
``rested {json}`` (recovered and worked to rest, with the invariant violations found then: normally none),
``done {json}`` (every round worked to rest; the points passed per category and the seconds since ready).
Exit 3 when an invariant was violated.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from invariants import rest_violations  # noqa: E402
from kill_workload import (  # noqa: E402
    WorkloadFindings,
    decide_approvals,
    fire_rounds,
    retry_failed_runs,
    seed_accounts,
    write_definitions,
)

from demo.seed import seed_members_and_sources, workspace_is_empty  # noqa: E402
from engine.actioners.modules import EvidenceRequestsActioner, default_actioners  # noqa: E402
from engine.clock import SystemClock  # noqa: E402
from engine.executor import Executor  # noqa: E402
from engine.runtime import Engine  # noqa: E402
from store import items as item_store  # noqa: E402
from store.subjects import read_subject  # noqa: E402
from store.workspace import Tx, Workspace  # noqa: E402

CATEGORIES = ("commit-before", "commit-during", "commit-after", "retry", "cancel", "approval")
PHASE_CATEGORY = {"retry": "retry", "auto-retry": "retry", "cancel": "cancel", "approval": "approval"}
WHERE_CATEGORY = {"batch-before": "commit-before", "effect": "commit-before", "batch-during": "commit-during",
                  "match-during": "commit-during", "batch-after": "commit-after"}
# A member command's transaction is known by the audit event it writes.
COMMAND_EVENTS = {"item.retried": "retry", "item.retry_started": "auto-retry", "run.cancel_requested": "cancel",
                  "item.approved": "approval", "item.dismissed": "approval"}


def say(line: str) -> None:
    print(line, flush=True)


class KillHooks:
    """Counts the points this process passes by category, and SIGKILLs it at the chosen one."""

    def __init__(self, kill: str | None) -> None:
        category, _, nth = (kill or ":0").partition(":")
        self.target, self.nth = category, (float(nth) if category == "wall-clock" else int(nth))
        self.phases: list[str] = ["run"]
        self.passed: Counter[str] = Counter()
        self.last = "start"

    def arm_timer(self) -> None:
        """For a wall-clock kill: SIGKILL this process from a timer thread once its delay is up."""
        if self.target == "wall-clock":
            timer = threading.Timer(self.nth, self._die, args=("wall-clock", "after "))
            timer.daemon = True
            timer.start()

    def _die(self, category: str, where: str = "") -> None:
        say(f"kill {category} {where}{self.last}")
        os.kill(os.getpid(), signal.SIGKILL)

    @contextmanager
    def during(self, phase: str) -> Iterator[None]:
        self.phases.append(phase)
        try:
            yield
        finally:
            self.phases.pop()

    def point(self, where: str, phase: str | None = None) -> None:
        phase = phase or self.phases[-1]
        category = PHASE_CATEGORY.get(phase) or WHERE_CATEGORY[where]
        self.passed[category] += 1
        self.last = f"{phase}/{where}"
        if category == self.target and self.passed[category] == self.nth:
            self._die(category)


class HookedWorkspace(Workspace):
    """The real workspace; a member command's transaction passes a point before and after its commit."""

    hooks: KillHooks

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with super().transaction() as tx:
            yield tx
            event = next((e.event for e in tx.entries if e.event in COMMAND_EVENTS), None)
            if event:
                self.hooks.point("tx-in", COMMAND_EVENTS[event])
        if event:
            self.hooks.point("tx-committed", COMMAND_EVENTS[event])


def install(hooks: KillHooks) -> None:
    """Points around the executor's transactions and an evidence request's message, taken by the messaging
    gateway (outside the process) before its item settles."""
    write, commit, insert_items, request = (Executor._write, Executor._commit, item_store.insert_items,
                                            EvidenceRequestsActioner.execute)

    def hooked_write(self: Executor, tx: Tx, *args: Any) -> None:
        hooks.point("batch-before")
        write(self, tx, *args)
        hooks.point("batch-during")

    def hooked_commit(self: Executor, *args: Any) -> Any:
        claimed = commit(self, *args)
        hooks.point("batch-after")
        return claimed

    def hooked_insert_items(tx: Tx, rows: Any) -> None:
        insert_items(tx, rows)
        hooks.point("match-during")

    def hooked_request(self: EvidenceRequestsActioner, *args: Any) -> Any:
        made = request(self, *args)
        hooks.point("effect")
        return made

    Executor._write, Executor._commit = hooked_write, hooked_commit  # type: ignore[method-assign]
    item_store.insert_items = hooked_insert_items  # type: ignore[assignment]
    EvidenceRequestsActioner.execute = hooked_request  # type: ignore[method-assign]


def work_to_rest(engine: Engine, hooks: KillHooks) -> None:
    """Automatic retries until none is due (their backoff is zero)."""
    while True:
        with hooks.during("auto-retry"):
            if not engine.process_due_retries():
                return


def rested(ws: Workspace) -> bool:
    """Say whether every invariant at rest holds (and which do not)."""
    problems = rest_violations(ws)
    say("rested " + json.dumps({"violations": problems}))
    return not problems


def life(argv: list[str]) -> int:
    """One engine process's life: recover and work to rest, check the invariants, work the rounds to rest."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True)
    p.add_argument("--defs", required=True, help="a directory; the workload's definitions are written there")
    p.add_argument("--rounds", type=int, required=True, help="work rounds 0 … ROUNDS-1")
    p.add_argument("--kill", help="CATEGORY:N — SIGKILL this process at the N-th point of CATEGORY; "
                                  "wall-clock:S — S seconds after ready")
    a = p.parse_args(argv)
    write_definitions(Path(a.defs))
    hooks = KillHooks(a.kill)
    install(hooks)
    ws = HookedWorkspace(a.db)
    ws.hooks = hooks
    if workspace_is_empty(ws):  # each seed is one transaction: a kill between them leaves the other to do
        seed_members_and_sources(ws)
    findings = WorkloadFindings(ws, hooks)
    engine = Engine(ws, SystemClock(), a.defs, actioners=default_actioners() | {"findings.create": findings},
                    batch_max=16, batch_target_seconds=60, registers_dir=ROOT / "registers")
    engine.load_registers(actor="member:admin")
    with ws.read() as conn:
        seeded = read_subject(conn, "accounts", "ACC-001") is not None
    if not seeded:
        seed_accounts(ws)
    findings.engine = engine
    report = engine.load_definitions(actor="member:admin")
    if report.errors:
        raise SystemExit(f"the workload's definitions were rejected: {report.errors}")
    started = time.monotonic()
    say("ready")
    hooks.arm_timer()
    with hooks.during("recovery"):
        engine.recover()
    work_to_rest(engine, hooks)
    if not rested(ws):
        return 3
    fire_rounds(engine, a.rounds)
    work_to_rest(engine, hooks)
    retry_failed_runs(engine, hooks)
    decide_approvals(engine, hooks)
    work_to_rest(engine, hooks)
    say("done " + json.dumps({"points": dict(hooks.passed), "seconds": round(time.monotonic() - started, 3)}))
    engine.shutdown()
    ws.close()
    return 0


def serve() -> int:
    """Fork one life per line of stdin (a JSON list of arguments); say its pid and its exit code."""
    for line in sys.stdin:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = life(json.loads(line))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
                if code == 2:
                    print(exc.code, file=sys.stderr)
            except BaseException:  # noqa: BLE001 - said on stderr; the exit code tells the harness
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        say(f"pid {pid}")
        _, status = os.waitpid(pid, 0)
        say(f"exit {os.waitstatus_to_exitcode(status)}")
    return 0


if __name__ == "__main__":
    sys.exit(serve() if sys.argv[1:] == ["--serve"] else life(sys.argv[1:]))
