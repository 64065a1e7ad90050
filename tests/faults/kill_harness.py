"""The kill-anywhere harness: a real engine process SIGKILLed at seeded random points, restarted, again and
again, with the invariants checked after every kill, after every restart and at the end.

One *epoch* is one workspace. Its first engine process works round 0 of the workload (``kill_workload``)
unkilled, which tells how many kill points of each category a round passes and how long it takes. Then
each life gets one more round to work and one kill point, drawn from a seeded RNG: a category from a
shuffled deck of all of them (before, during and after a group commit; during a retry, a cancel, an
approval; a wall-clock delay), and the N-th point of that category (N up to what a round passes) or the
delay. A life whose point never comes (it finished first) is a miss, and its category goes back on the deck.
After each kill the file as the kill left it must be consistent (``invariants.consistency_violations``,
read here once the process is gone); each restarted process recovers, works to rest and checks the rest
invariants itself before doing anything new; a last, unkilled process finishes every round, and this
process checks the workspace once more, with the workload's own expected end state.

Lives are forked by one zygote process (``kill_driver.py --serve``) that imported the engine once.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from invariants import consistency_violations, rest_violations
from kill_driver import CATEGORIES as POINT_CATEGORIES
from kill_workload import expected_violations, write_integrations
from line_process import LineProcess

from demo.gateway import DemoGateway
from engine.clock import SystemClock
from store.workspace import Workspace
from tests.receivers import Receiver, free_port, http_receiver

DRIVER = Path(__file__).with_name("kill_driver.py")
CATEGORIES = (*POINT_CATEGORIES, "wall-clock")
LIFE_TIMEOUT = 180.0  # seconds; a life that takes longer is hung, which is a failure too


@dataclass
class Life:
    """What one engine process said, and how it ended (−9: SIGKILLed)."""

    lines: list[str]
    rc: int

    def said(self, word: str) -> Any:
        found = [line.partition(" ")[2] for line in self.lines if line.split(" ", 1)[0] == word]
        return (json.loads(found[-1]) if word in ("rested", "done") else found[-1]) if found else None


@dataclass
class Tally:
    kills: Counter[str] = field(default_factory=Counter)  # category → kills that landed
    points: Counter[str] = field(default_factory=Counter)  # "category phase/point" → kills that landed
    missed: int = 0  # lives that finished before their kill point came
    lives: int = 0
    checks: Counter[str] = field(default_factory=Counter)  # which invariant check → times it passed
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def report(self) -> str:
        total = sum(self.kills.values())
        lines = [f"kills: {total} in {self.lives} engine processes ({self.missed} finished before their kill "
                 f"point), {self.seconds:.0f} s, {total / max(self.seconds, 1e-9) * 60:.1f} kills/min"]
        for c in CATEGORIES:
            where = sorted(((n, p.partition(" ")[2]) for p, n in self.points.items() if p.split(" ")[0] == c),
                           reverse=True)
            lines.append(f"  {c:<14} {self.kills[c]:>5}   " + ", ".join(f"{p} {n}" for n, p in where))
        lines.append("invariant checks passed: " + ", ".join(f"{k} {n}" for k, n in sorted(self.checks.items())))
        lines.append(f"violations: {len(self.violations)}")
        lines += [f"  {v}" for v in self.violations]
        return "\n".join(lines)


class Zygote(LineProcess):
    """One ``kill_driver.py --serve`` process; each ``life`` is a process it forks, whose lines come here."""

    def __init__(self, log: Path) -> None:
        super().__init__([sys.executable, str(DRIVER), "--serve"], log, stdin=True)

    def life(self, args: list[str]) -> Life:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(args) + "\n")
        self.proc.stdin.flush()
        lines: list[str] = []
        pid, deadline = None, time.monotonic() + LIFE_TIMEOUT
        while True:
            try:
                line = self.next_line(max(0.0, deadline - time.monotonic()))
            except queue.Empty:  # hung: end the life (it has not exited, so its pid is still its own)
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                lines.append(f"hung for {LIFE_TIMEOUT:g} s")
                deadline = time.monotonic() + 30
                continue
            if line is None:
                raise RuntimeError(f"the zygote ended: {self.stderr_tail()}")
            if line.startswith("pid "):
                pid = int(line.split()[1])
            elif line.startswith("exit "):
                return Life(lines, int(line.split()[1]))
            else:
                lines.append(line)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)
        self.log.close()


def killed_file_violations(db: Path | str) -> list[str]:
    """The workspace as a kill left it (its write-ahead log not yet replayed by an engine): consistent."""
    ws = Workspace(str(db), read_only=True)
    try:
        with ws.read() as conn:
            return consistency_violations(conn)
    finally:
        ws.close()


def final_violations(db: Path | str, rounds: int) -> list[str]:
    """Read here, apart from the engine: every invariant at rest, and the workload's expected end state."""
    ws = Workspace(str(db), read_only=True)
    try:
        with ws.read() as conn:
            expected = expected_violations(conn, rounds)
        return rest_violations(ws) + expected
    finally:
        ws.close()


def run_epoch(workdir: Path, kills: int, rng: random.Random, tally: Tally,
              say: Callable[[str], None] = lambda _: None) -> bool:
    """Kill ``kills`` lives over one fresh workspace (and until every category has landed once), then finish
    and check it. Returns False, with the violations in the tally, at the first one (the epoch stops)."""
    workdir.mkdir(parents=True, exist_ok=True)
    db, started = workdir / "ws.duckdb", time.monotonic()
    # Outside every engine process, as a real tracker and a real mail gateway are.
    with http_receiver() as tracker, DemoGateway(SystemClock(), port=free_port()) as gateway:
        write_integrations(workdir / "integrations", f"{tracker.url}/ok", gateway.port)
        zygote = Zygote(workdir / "engine.stderr")
        try:
            ok = _epoch(zygote, db, kills, rng, tally, say)
        finally:
            zygote.close()
            tally.seconds += time.monotonic() - started
        if not ok:
            return False
        problems = tracker_violations(db, tracker) + gateway_violations(db, gateway)
        tally.checks["the tracker at the end"] += 1
        tally.violations += [f"{workdir.name}: the tracker: {p}" for p in problems]
        return not problems


def tracker_violations(db: Path | str, tracker: Receiver) -> list[str]:
    """What the tracker saw, against what the workspace says: no key acted on twice with different bodies,
    every ticket item's reference the one ticket the tracker issued for its key, no ticket for any other key."""
    out = []
    bodies: dict[str, set[bytes]] = {}
    for request in tracker.requests:
        bodies.setdefault(request.key, set()).add(request.body)
    twice = sorted(k for k, b in bodies.items() if len(b) > 1)
    if twice:
        out.append(f"{len(twice)} keys received with different bodies: {twice[:3]}")
    ws = Workspace(str(db), read_only=True)
    try:
        with ws.read() as conn:
            items = conn.execute(sa.text("SELECT i.idempotency_key, i.outcome, i.record_ref FROM run_items i JOIN "
                                         "runs r USING (run_id) WHERE r.definition_id = 'ticket'")).all()
    finally:
        ws.close()
    keys = {key for key, _, _ in items}
    wrong = [(key, ref) for key, outcome, ref in items
             if outcome == "succeeded" and ref != f"webhook:tracker:{tracker.issued.get(key)}"]
    if wrong:
        out.append(f"{len(wrong)} ticket items whose reference is not the tracker's ticket for their key: {wrong[:3]}")
    stray = sorted(set(tracker.issued) - keys)
    if stray:
        out.append(f"{len(stray)} tickets issued for keys no item carries: {stray[:3]}")
    if not items:
        out.append("no ticket item was made: the workload did not reach the tracker")
    return out


def gateway_violations(db: Path | str, gateway: DemoGateway) -> list[str]:
    """What the messaging gateway took, against the evidence requests: each request's message taken (by its
    Message-ID, derived from the item's key), and no message for a key no request carries. A message sent
    again after a kill lost its answer is recognised by the gateway as the same one."""
    ws = Workspace(str(db), read_only=True)
    try:
        with ws.read() as conn:
            ids = {f"<{m}>" for (m,) in conn.execute(sa.text("SELECT message_id FROM evidence_requests")).all()}
            keys = {f"<{k}@runledger>" for (k,) in conn.execute(sa.text(
                "SELECT i.idempotency_key FROM run_items i JOIN runs r USING (run_id) "
                "WHERE r.definition_id = 'notify'")).all()}
    finally:
        ws.close()
    taken = set(gateway.ledger.delivered)
    out = []
    if ids - taken:
        out.append(f"{len(ids - taken)} evidence requests whose message the gateway never took: "
                   f"{sorted(ids - taken)[:3]}")
    if taken - keys:
        out.append(f"{len(taken - keys)} messages for keys no item carries: {sorted(taken - keys)[:3]}")
    if not ids:
        out.append("no evidence request was made: the workload did not reach the gateway")
    return out


def _epoch(zygote: Zygote, db: Path, kills: int, rng: random.Random, tally: Tally,
           say: Callable[[str], None]) -> bool:
    def live(rounds: int, kill: str | None) -> Life:
        tally.lives += 1
        args = ["--db", str(db), "--defs", str(db.parent / "definitions"), "--rounds", str(rounds)]
        life = zygote.life(args + (["--kill", kill] if kill else []))
        if life.said("rested") is not None:
            tally.checks["after a restart, at rest"] += 1
        return life

    def failed(what: str, life: Life | None, problems: list[str]) -> bool:
        tail = f"\n    engine stderr: {zygote.stderr_tail()[-1500:]}" if life and life.rc not in (0, -9, 3) else ""
        where = f" (its output ended: {life.lines[-3:]})" if life else ""
        tally.violations += [f"{db.parent.name}: {what}{where}: {p}" for p in problems or ["(no detail)"]]
        tally.violations[-1] += tail
        return False

    first = live(1, None)
    if first.rc != 0:
        return failed("the first engine process failed", first, (first.said("rested") or {}).get("violations", []))
    per_round = Counter(first.said("done")["points"])
    seconds = first.said("done")["seconds"]
    rounds, landed, deck, tries = 1, Counter[str](), list[str](), 0
    while (sum(landed.values()) < kills or len(landed) < len(CATEGORIES)) and tries < 3 * kills + 2 * len(CATEGORIES):
        tries += 1
        if not deck:
            deck = list(CATEGORIES)
            rng.shuffle(deck)
        category = deck.pop()
        rounds += 1
        kill = (f"wall-clock:{rng.uniform(0.0, seconds):.3f}" if category == "wall-clock"
                else f"{category}:{rng.randint(1, max(1, per_round[category]))}")
        life = live(rounds, kill)
        if life.rc == 0:  # finished before its point: try that category again later
            tally.missed += 1
            deck.insert(0, category)
            continue
        if life.rc != -9 or not life.said("kill"):
            rested = life.said("rested") or {}
            return failed(f"engine process killed at {kill} ended with {life.rc}", life, rested.get("violations", []))
        point = life.said("kill")
        landed[category] += 1
        tally.kills[category] += 1
        tally.points[point] += 1
        problems = killed_file_violations(db)
        if problems:
            return failed(f"the workspace as the kill at {point} left it", life, problems)
        tally.checks["the file as killed"] += 1
        say(f"{db.parent.name}: life {tally.lives}: killed at {point} (kill {sum(landed.values())})")
    last = live(rounds, None)
    if last.rc != 0:
        return failed("the last engine process failed", last, (last.said("rested") or {}).get("violations", []))
    problems = final_violations(db, rounds)
    if problems:
        return failed("the end state", None, problems)
    tally.checks["at the end"] += 1
    return True
