"""A real engine process for the crash-recovery test: it runs (or recovers) one big run, saying how far it
got on stdout so the test can SIGKILL it at a chosen point.

    python tests/crash_driver.py --db PATH --defs DIR                  # seed if empty, fire, execute
    python tests/crash_driver.py --db PATH --defs DIR --mode recover   # what a restarted engine does

Progress lines (flushed as they happen): ``ready`` (workspace seeded, definitions loaded), ``event`` (the
trigger event is committed), ``matching`` (the items are being written, their transaction open),
``acted N`` (every ``--every`` actions, the batch still in flight), ``settling N`` (the N-th batch's
settlement transaction is open and being written), ``done {json}`` at the end. Not a pytest module.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.actioners.base import ActionContext, ActionRequest, CreatedRecord  # noqa: E402
from engine.actioners.modules import FindingsActioner, default_actioners  # noqa: E402
from engine.clock import SystemClock  # noqa: E402
from engine.runtime import Engine  # noqa: E402
from store import items as item_store  # noqa: E402
from store.subjects import insert_subjects, record_trigger_event  # noqa: E402
from store.workspace import Workspace  # noqa: E402

DEFINITION_ID = "crash-findings"
DEFINITION = f"""\
id: {DEFINITION_ID}
title: Crash test — a finding for every active account
trigger: {{kind: schedule, cron: "0 6 * * mon"}}
condition:
  subject: accounts
  where:
    - {{field: status, op: eq, value: active, reason: the account is no longer active}}
actions:
  - actioner: findings.create
    params:
      title: "Review {{{{ subject.name }}}}"
      severity: medium
      owner: "{{{{ subject.manager }}}}"
policies:
  retry: {{max_attempts: 1}}
"""


def say(line: str) -> None:
    print(line, flush=True)


class ReportingFindings:
    """The real findings actioner, slowed a little and reporting its progress, so a kill lands mid-batch."""

    def __init__(self, every: int, pause: float) -> None:
        self.inner = FindingsActioner()
        self.spec = self.inner.spec
        self.every, self.pause, self.calls = every, pause, 0

    def execute(self, req: ActionRequest, ctx: ActionContext) -> CreatedRecord:
        self.calls += 1
        if self.pause:
            time.sleep(self.pause)
        if self.calls % self.every == 0:
            say(f"acted {self.calls}")
        return self.inner.execute(req, ctx)


def _report_writes() -> None:
    """Say when the items are being written and when a batch's settlement is open, from inside the
    transaction (the kill then lands while it is uncommitted or committing)."""
    real_insert, real_apply, settled = item_store.insert_items, item_store.settle_item_outcomes, [0]

    def insert_items(tx: Any, rows: Any) -> None:
        say("matching")
        real_insert(tx, rows)

    def settle_item_outcomes(tx: Any, rows: Any, *args: Any) -> None:
        settled[0] += 1
        say(f"settling {settled[0]}")
        real_apply(tx, rows, *args)

    item_store.insert_items = insert_items  # type: ignore[assignment]
    item_store.settle_item_outcomes = settle_item_outcomes  # type: ignore[assignment]


def seed(ws: Workspace, subjects: int) -> None:
    with ws.read() as conn:
        import sqlalchemy as sa

        if conn.execute(sa.text("SELECT count(*) FROM accounts")).scalar_one():
            return
    with ws.transaction() as tx:
        insert_subjects(tx, "accounts", [
            {"account_id": f"ACC-{i:05d}", "name": f"Member {i}", "manager": f"manager.{i % 17}",
             "status": "active", "kyc_review_due": dt.date(2026, 7, 1), "risk_rating": "low"}
            for i in range(1, subjects + 1)])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True)
    p.add_argument("--defs", required=True, help="a directory; the driver writes its definition there")
    p.add_argument("--mode", choices=["run", "recover"], default="run")
    p.add_argument("--subjects", type=int, default=3000)
    p.add_argument("--every", type=int, default=100, help="say 'acted N' every this many actions")
    p.add_argument("--pause", type=float, default=0.0002, help="seconds each action takes")
    p.add_argument("--batch-max", type=int, default=1000)
    a = p.parse_args()
    defs = Path(a.defs)
    defs.mkdir(parents=True, exist_ok=True)
    (defs / f"{DEFINITION_ID}.yaml").write_text(DEFINITION)
    _report_writes()
    ws = Workspace(a.db)
    actioners = default_actioners() | {"findings.create": ReportingFindings(a.every, a.pause)}
    engine = Engine(ws, SystemClock(), defs, actioners=actioners, batch_max=a.batch_max,
                    batch_target_seconds=0.2, registers_dir=Path(__file__).resolve().parents[1] / "registers")
    engine.load_registers(actor="member:admin")
    seed(ws, a.subjects)
    engine.load_definitions(actor="member:admin")
    say("ready")
    if a.mode == "recover":
        recovered = engine.recover()
        say("done " + json.dumps({"recovered": recovered}))
    else:
        with ws.transaction() as tx:  # what Engine.fire(kind="manual") records, then dispatch
            record_trigger_event(tx, kind="manual", event_type="run.requested", source="member:sigrid",
                                 occurred_at=engine.clock.now(), definition_id=DEFINITION_ID)
        say("event")
        runs = engine.dispatch_events()
        say("done " + json.dumps({"runs": runs}))
    ws.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
