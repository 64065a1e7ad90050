"""A small workspace on a simulated clock, with definitions and actioners a test chooses."""

from __future__ import annotations

import datetime as dt
import textwrap
import threading
from pathlib import Path
from typing import Any

from engine.actioners.base import ActionContext, ActionRequest, CreatedRecord, DeterministicFailure, TransientFailure
from engine.actioners.modules import FindingsActioner, default_actioners
from engine.clock import SimulatedClock
from engine.demo.seed import seed_members_and_sources
from engine.runtime import Engine
from store.registers import insert_subjects
from store.workspace import Workspace

UTC = dt.timezone.utc
START = dt.datetime(2026, 7, 6, 6, 0, tzinfo=UTC)


def definition(def_id: str, *, approval: bool = False, retry: str = "max_attempts: 1", where: str = "") -> str:
    return textwrap.dedent(f"""\
        id: {def_id}
        title: Test {def_id}
        trigger: {{kind: schedule, cron: "0 6 * * mon"}}
        condition:
          subject: accounts
          where:
            - {{field: status, op: eq, value: active, reason: the account is no longer active}}
        {where}
        actions:
          - actioner: findings.create
            params:
              title: "Finding for {{{{ subject.name }}}}"
              severity: medium
              owner: "{{{{ subject.manager }}}}"
        policies:
          approval: {{required: {str(approval).lower()}}}
          retry: {{{retry}}}
        """)


class ScriptedFindings(FindingsActioner):
    """Findings actioner whose behaviour per subject a test scripts."""

    def __init__(self) -> None:
        self.transient_left: dict[str, int] = {}
        self.deterministic: set[str] = set()
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.calls: list[str] = []

    def execute(self, req: ActionRequest, ctx: ActionContext) -> CreatedRecord:
        self.calls.append(req.subject_id)
        if self.gate is not None:
            self.entered.set()
            assert self.gate.wait(10)
        if req.subject_id in self.deterministic:
            raise DeterministicFailure(f"findings register refuses {req.subject_id}: owner unknown")
        if self.transient_left.get(req.subject_id, 0) > 0:
            self.transient_left[req.subject_id] -= 1
            raise TransientFailure("findings register timed out")
        return super().execute(req, ctx)


def make_engine(tmp_path: Path, definitions: dict[str, str], accounts: int = 5,
                actioner: ScriptedFindings | None = None, **engine_kw: Any) -> tuple[Engine, SimulatedClock]:
    defs = tmp_path / "defs"
    defs.mkdir(exist_ok=True)
    for name, text in definitions.items():
        (defs / f"{name}.yaml").write_text(text)
    clock = SimulatedClock(START - dt.timedelta(hours=1))
    ws = Workspace(str(tmp_path / "ws.duckdb"), now=clock.now)
    seed_members_and_sources(ws)
    with ws.transaction() as tx:
        insert_subjects(tx, "accounts", [
            {"account_id": f"ACC-{i:03d}", "name": f"Member {i}", "manager": "m.one", "status": "active",
             "kyc_review_due": dt.date(2026, 7, 1), "risk_rating": "low"} for i in range(1, accounts + 1)])
    actioners = default_actioners()
    if actioner is not None:
        actioners["findings.create"] = actioner
    engine = Engine(ws, clock, defs, actioners=actioners, **engine_kw)
    engine.load_definitions(actor="member:admin")
    clock.advance_to(START)
    return engine, clock
