"""The workspace the browser workflows run on: the demo quarter plus what each workflow needs, made by
the real engine before the server starts (the server then opens it, as after a restart).

- ``risk-escalation``: a finding per QA account, severity from the account's risk rating; two accounts
  are rated ``unrated``, which the findings register refuses — a deterministic failure, so the run ends
  ``completed-with-failures``.
- ``evidence-chase``: evidence requests for the same accounts, fired during a messaging outage that has
  ended by the time the browser looks — transient failures a retry recovers.
- ``slow-evidence``: evidence requests for 30 accounts through a slow messaging gateway (the server's
  gateway takes half a second a message), started from the browser and cancelled mid-run.
- two regulator signals, whose runs wait for approval.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NEVER = '"0 3 1 1 *"'  # once a year: these fire only when asked

TEST_DEFINITIONS = {
    "risk-escalation": f"""\
id: risk-escalation
title: Risk escalation finding for QA accounts
trigger: {{kind: schedule, cron: {NEVER}}}
condition:
  subject: accounts
  where:
    - {{field: manager, op: eq, value: qa.lead, reason: the account moved to another manager}}
actions:
  - actioner: findings.create
    params:
      title: "Escalate {{{{ subject.name }}}}"
      severity: "{{{{ subject.risk_rating }}}}"
      owner: "{{{{ subject.manager }}}}"
policies:
  retry: {{max_attempts: 1}}
""",
    "evidence-chase": f"""\
id: evidence-chase
title: Evidence chase for QA accounts
trigger: {{kind: schedule, cron: {NEVER}}}
condition:
  subject: accounts
  where:
    - {{field: manager, op: eq, value: qa.lead, reason: the account moved to another manager}}
actions:
  - actioner: evidence_requests.create
    params:
      recipient: "{{{{ subject.manager }}}}"
      title: "Evidence for {{{{ subject.name }}}}"
      due_in_days: 7
policies:
  retry: {{max_attempts: 1}}
""",
    "slow-evidence": f"""\
id: slow-evidence
title: Evidence requests through the slow messaging system
trigger: {{kind: schedule, cron: {NEVER}}}
condition:
  subject: accounts
  where:
    - {{field: manager, op: eq, value: slow.lead, reason: the account moved to another manager}}
actions:
  - actioner: evidence_requests.create
    params:
      recipient: "{{{{ subject.manager }}}}"
      title: "Evidence for {{{{ subject.name }}}}"
      due_in_days: 7
""",
}

HOSTILE_NAME = '<img src=x onerror="document.title=\'pwned\'"> **Bold** [x](javascript:alert(1))'


def _accounts() -> list[dict]:
    due = dt.date(2026, 7, 1)
    rows = [{"account_id": f"ACC-QA{i}", "name": f"QA Member {i}", "manager": "qa.lead", "status": "active",
             "kyc_review_due": due, "risk_rating": ("high", "medium", "low", "unrated")[i % 4]}
            for i in range(1, 7)]  # i = 3 and 7 … → ratings: medium, low, unrated, high, medium, low
    rows[0]["name"] = HOSTILE_NAME
    rows[1]["risk_rating"] = "unrated"
    rows += [{"account_id": f"ACC-SLOW{i:02d}", "name": f"Slow Member {i}", "manager": "slow.lead",
              "status": "active", "kyc_review_due": due, "risk_rating": "low"} for i in range(1, 31)]
    return rows


def prepare(demo_path: str, tmp: Path) -> tuple[Path, Path]:
    """Copy the demo quarter, add the workflows' definitions and data, and run what must exist already."""
    from demo.gateway import DemoGateway
    from demo.seed import messaging_location
    from engine.clock import SystemClock
    from engine.runtime import Engine
    from engine.signals import deliver_signal
    from store.subjects import insert_subjects
    from store.workspace import Workspace

    ws_path = tmp / "ws.duckdb"
    shutil.copyfile(demo_path, ws_path)
    if Path(demo_path + ".wal").exists():
        shutil.copyfile(demo_path + ".wal", str(ws_path) + ".wal")
    defs = tmp / "definitions"
    shutil.copytree(ROOT / "definitions", defs)
    for def_id, text in TEST_DEFINITIONS.items():
        (defs / f"{def_id}.yaml").write_text(text)
    shutil.copytree(ROOT / "integrations", tmp / "integrations")  # the credit union's gateway, beside them

    clock = SystemClock()
    ws = Workspace(str(ws_path), now=clock.now)
    engine = Engine(ws, clock, defs)
    try:
        report = engine.load_definitions(actor="member:admin")
        assert not report.errors, report.errors
        with ws.transaction() as tx:
            insert_subjects(tx, "accounts", _accounts())
        engine.fire("risk-escalation", kind="manual", actor_name="member:sigrid")
        now = clock.now()
        # The gateway, down for maintenance while this run fires; the app server's own gateway is up.
        with DemoGateway(clock, *messaging_location(engine)) as gateway:
            gateway.add_outage(now - dt.timedelta(minutes=1), now + dt.timedelta(seconds=2),
                               "planned maintenance overran")
            engine.fire("evidence-chase", kind="manual", actor_name="member:sigrid")
        for ref in ("NCUA-2026-31", "NCUA-2026-32"):
            deliver_signal(engine, "regulator-feed", {"reference": ref, "regulator": "NCUA",
                                                      "title": f"Rule change {ref}"})
    finally:
        engine.shutdown()
        ws.close()
    return ws_path, defs
