"""Kill anywhere, distributed: a fleet of engine workers on one PostgreSQL workspace, SIGKILLed at seeded
points while the others go on; the killed are never restarted — the rest of the fleet takes their work over
once their lease lapses and finishes it.

One *epoch* is one database on a real PostgreSQL server. A first worker alone works round 0 of the kill-anywhere
workload (``kill_workload``) unkilled, which tells how many kill points of each category a round passes and how
long it takes. Then the fleet: ``workers`` processes (``fleet_worker.py``) at a time, each joining with one more
round to work and one kill point drawn as the single-process harness draws them (a category from a shuffled deck,
the N-th point of it, or a wall-clock delay). When one is killed, the workspace as it is at that instant — the
others still writing — must be consistent (every check read in one snapshot), and a new worker joins in its
place. Once ``kills`` have landed (and every category), one more worker joins with no kill point, and the fleet
works every round to rest. At the end: every invariant at rest, the workload's own end state (each cron
occurrence one run), the tracker and the messaging gateway outside the fleet saw no key acted on twice, and
the audit chain is one chain.
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
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from invariants import consistency_violations
from kill_harness import CATEGORIES, LIFE_TIMEOUT, Tally, final_violations, gateway_violations, tracker_violations
from kill_workload import seed_accounts, write_definitions, write_integrations
from line_process import LineProcess

from demo.gateway import DemoGateway
from demo.seed import seed_members_and_sources
from engine.actioners.modules import default_actioners
from engine.clock import SystemClock
from engine.runtime import Engine
from store.workspace import Workspace
from tests.receivers import free_port, http_receiver

WORKER = Path(__file__).with_name("fleet_worker.py")
ROOT = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 3.0  # short, so a dead worker's work is taken over within seconds (the default is 30)


@dataclass
class Member:
    """One worker process of the fleet and what it said."""

    process: LineProcess
    kill: str | None
    category: str | None
    lines: list[str]
    deadline: float
    number: int = 0

    def said(self, word: str) -> str | None:
        found = [line.partition(" ")[2] for line in self.lines if line.split(" ", 1)[0] == word]
        return found[-1] if found else None

    def ended(self) -> bool:
        """Drain its lines; whether it has exited (its stdout closed)."""
        while True:
            try:
                line = self.process.next_line(0)
            except queue.Empty:
                return False
            if line is None:
                self.process.proc.wait(30)
                return True
            self.lines.append(line)


def fresh_database(server_url: str, name: str) -> str:
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def snapshot_violations(url: str) -> list[str]:
    """The workspace as it is now, every check read in one snapshot (the fleet goes on writing meanwhile)."""
    engine = sa.create_engine(url, isolation_level="REPEATABLE READ")
    try:
        with engine.connect() as conn, conn.begin():
            return consistency_violations(conn)
    finally:
        engine.dispose()


def _set_up(url: str, workdir: Path) -> None:
    """The organization, once, before any worker: members, the accounts register and its rows, definitions."""
    ws = Workspace(url)
    try:
        seed_members_and_sources(ws)
        engine = Engine(ws, SystemClock(), workdir / "definitions", actioners=default_actioners(),
                        registers_dir=ROOT / "registers", integrations_dir=workdir / "integrations")
        assert not engine.load_registers(actor="member:admin").errors
        seed_accounts(ws)
        report = engine.load_definitions(actor="member:admin")
        assert not report.errors, report.errors
        engine.shutdown()
    finally:
        ws.close()


def run_fleet_epoch(server_url: str, workdir: Path, kills: int, rng: random.Random, tally: Tally,
                    workers: int = 3, say: Callable[[str], None] = lambda _: None) -> bool:
    """Kill ``kills`` workers of a fleet of ``workers`` over one fresh database; False (violations in the
    tally) at the first violation."""
    workdir.mkdir(parents=True, exist_ok=True)
    url, started = fresh_database(server_url, f"fleet_{workdir.name}".replace("-", "_")), time.monotonic()
    with http_receiver() as tracker, DemoGateway(SystemClock(), port=free_port()) as gateway:
        write_integrations(workdir / "integrations", f"{tracker.url}/ok", gateway.port)
        write_definitions(workdir / "definitions")
        _set_up(url, workdir)
        fleet = _Fleet(url, workdir, tally, say)
        try:
            ok = fleet.run(kills, rng, workers)
        finally:
            fleet.stop()
            tally.seconds += time.monotonic() - started
        if not ok:
            return False
        problems = tracker_violations(url, tracker) + gateway_violations(url, gateway)
        tally.checks["the tracker and the gateway at the end"] += 1
        tally.violations += [f"{workdir.name}: outside the fleet: {p}" for p in problems]
        return not problems


class _Fleet:
    def __init__(self, url: str, workdir: Path, tally: Tally, say: Callable[[str], None]) -> None:
        self.url, self.workdir, self.tally, self.say = url, workdir, tally, say
        self.members: list[Member] = []
        self.rounds = 1

    def join(self, rounds: int, kill: str | None, category: str | None) -> Member:
        self.tally.lives += 1
        args = [sys.executable, str(WORKER), "--db", self.url, "--defs", str(self.workdir / "definitions"),
                "--integrations", str(self.workdir / "integrations"), "--rounds", str(rounds),
                *(["--kill", kill] if kill else [])]
        os.environ["RUNLEDGER_LEASE_SECONDS"] = str(LEASE_SECONDS)
        member = Member(LineProcess(args, self.workdir / "workers.stderr"), kill, category, [],
                        time.monotonic() + LIFE_TIMEOUT, self.tally.lives)
        self.members.append(member)
        return member

    def ended(self) -> list[Member]:
        """Wait until at least one member ends (or hangs, and is killed as hung); those that ended."""
        while True:
            done = [m for m in self.members if m.ended()]
            for m in self.members:
                if m not in done and time.monotonic() > m.deadline:
                    m.lines.append(f"hung for {LIFE_TIMEOUT:g} s")
                    os.kill(m.process.proc.pid, signal.SIGKILL)
                    m.deadline = float("inf")
            if done:
                self.members = [m for m in self.members if m not in done]
                return done
            time.sleep(0.05)

    def failed(self, what: str, problems: list[str]) -> bool:
        tail = self.workdir.joinpath("workers.stderr").read_text()[-2000:]
        self.tally.violations += [f"{self.workdir.name}: {what}: {p}" for p in problems or ["(no detail)"]]
        self.tally.violations[-1] += f"\n    workers' stderr: {tail}"
        return False

    def run(self, kills: int, rng: random.Random, workers: int) -> bool:
        first = self.join(1, None, None)
        [first] = self.ended()
        if first.process.proc.returncode != 0 or first.said("done") is None:
            return self.failed("the first worker failed", first.lines[-3:])
        done = json.loads(first.said("done") or "{}")
        per_round, seconds = Counter(done["points"]), done["seconds"]
        landed, deck, tries = Counter[str](), list[str](), 0
        while sum(landed.values()) < kills or len(landed) < len(CATEGORIES):
            while len(self.members) < workers and tries < 3 * kills + 2 * len(CATEGORIES):
                tries += 1
                if not deck:
                    deck = list(CATEGORIES)
                    rng.shuffle(deck)
                category = deck.pop()
                self.rounds += 1
                kill = (f"wall-clock:{rng.uniform(0.0, seconds):.3f}" if category == "wall-clock"
                        else f"{category}:{rng.randint(1, max(1, per_round[category]))}")
                self.join(self.rounds, kill, category)
            if not self.members:
                break  # out of tries
            for m in self.ended():
                if not self._landed(m, landed, deck):
                    return False
        # No more kill points: one more worker joins, and the fleet works every round to rest.
        self.join(self.rounds, None, None)
        while self.members:
            for m in self.ended():
                if not self._landed(m, landed, deck):
                    return False
                if m.kill is not None and m.process.proc.returncode == -9 and not self.members:
                    self.join(self.rounds, None, None)  # the last ones died: the fleet is never empty
        problems = final_violations(self.url, self.rounds)
        if problems:
            return self.failed("the end state", problems)
        self.tally.checks["at the end"] += 1
        return True

    def _landed(self, m: Member, landed: Counter[str], deck: list[str]) -> bool:
        rc = m.process.proc.returncode
        if rc == 0:
            if m.category is not None:  # finished before its point: the category goes back on the deck
                self.tally.missed += 1
                deck.insert(0, m.category)
            return True
        if rc != -9 or not m.said("kill") or m.category is None:
            return self.failed(f"a worker (kill {m.kill}) ended with {rc}", m.lines[-3:])
        point = m.said("kill") or ""
        landed[m.category] += 1
        self.tally.kills[m.category] += 1
        self.tally.points[point] += 1
        problems = snapshot_violations(self.url)
        if problems:
            return self.failed(f"the workspace just after the kill at {point}", problems)
        self.tally.checks["the workspace as a kill left it, the fleet still writing"] += 1
        self.say(f"{self.workdir.name}: worker {m.number}: killed at {point} "
                 f"(kill {sum(landed.values())})")
        return True

    def stop(self) -> None:
        for m in self.members:
            if m.process.proc.poll() is None:
                m.process.proc.kill()
                m.process.proc.wait(30)
            m.process.log.close()
