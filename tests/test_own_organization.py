"""An organization that is not the demo, end to end through the command line, as the README tells it:
``init`` a workspace, add an operator and an approver, declare a register (merchants, which no other test
uses) and two definitions over it, import a CSV, fire the scheduled definition, import a changed CSV that
raises the declared ``merchant.suspended`` (once with no engine running, the command dispatching it itself;
once through a running engine's intake endpoint), approve what the event's run proposes, and find every step
in the runs and in an intact audit log."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.intake.server import discovery_path
from store.workspace import Workspace
from tests.receivers import Mailbox, smtp_server

pytestmark = pytest.mark.slow  # a dozen CLI processes and a served engine

REPO = Path(__file__).resolve().parent.parent
TODAY = dt.datetime.now(dt.UTC).date()

MERCHANTS = """\
id: merchants
title: Merchants
key: merchant_id
label: name
fields:
  merchant_id: string
  name: string
  status: string
  risk_tier: string
  kyb_review_due: date
  owner: string
events:
  merchant.suspended: {field: status, becomes: suspended}
  merchant.offboarded: {field: status, becomes: offboarded}
"""
KYB_REVIEW = """\
id: merchant-kyb-review
title: Merchant KYB review
description: Every Monday, ask the owner of each active merchant whose KYB review is due for fresh evidence.
trigger: {kind: schedule, cron: "0 7 * * mon", timezone: UTC}
condition:
  subject: merchants
  where:
    - {field: status, op: eq, value: active, reason: the merchant is no longer active}
    - {field: kyb_review_due, op: lte, value: {days_after_trigger: 0}, reason: the KYB review is no longer due}
actions:
  - actioner: evidence_requests.create
    params:
      recipient: "{{ subject.owner }}"
      title: "KYB review due for {{ subject.name }} ({{ subject.merchant_id }})"
      due_in_days: 14
"""
SUSPENDED = """\
id: merchant-suspended
title: Suspended merchant finding
description: When a merchant is suspended, propose a finding for its owner; an approver opens it.
trigger: {kind: event, event: merchant.suspended}
condition:
  subject: merchants
  where:
    - {field: status, op: eq, value: suspended, reason: the merchant is no longer suspended}
actions:
  - actioner: findings.create
    params:
      title: "Merchant {{ subject.name }} ({{ subject.merchant_id }}) suspended"
      severity: high
      owner: "{{ subject.owner }}"
policies:
  approval: {required: true}
"""


def _csv(rows: list[tuple[str, str, str, str, dt.date, str]]) -> str:
    lines = ["merchant_id,name,status,risk_tier,kyb_review_due,owner"]
    lines += [",".join(str(v) for v in r) for r in rows]
    return "\n".join(lines) + "\n"


def _merchants(suspended: frozenset[str] = frozenset()) -> str:
    base = [("M-001", "Fjord Coffee", "active", "low", TODAY - dt.timedelta(days=2), "olga"),
            ("M-002", "Nordlys Travel", "active", "high", TODAY - dt.timedelta(days=20), "olga"),
            ("M-003", "Bergen Bikes", "active", "medium", TODAY + dt.timedelta(days=90), "olga")]
    return _csv([(m, n, "suspended" if m in suspended else s, t, d, o) for m, n, s, t, d, o in base])


class Org:
    """The organization's folder: its workspace, registers, definitions, files and password files."""

    def __init__(self, root: Path, mail: Mailbox) -> None:
        self.root, self.db = root, root / "org.duckdb"
        for sub in ("registers", "definitions", "files", "integrations"):
            (root / sub).mkdir()
        # Its own mail relay, which its evidence requests go through.
        (root / "integrations" / "messaging.yaml").write_text(
            f"id: messaging\nkind: smtp\nhost: {mail.host}\nport: {mail.port}\nfrom: compliance@merchants.example\n")
        (root / "registers" / "merchants.yaml").write_text(MERCHANTS)
        (root / "definitions" / "merchant-kyb-review.yaml").write_text(KYB_REVIEW)
        (root / "definitions" / "merchant-suspended.yaml").write_text(SUSPENDED)

    def password_file(self, name: str) -> str:
        path = self.root / f"{name}.pw"
        path.write_text(f"{name}-correct-horse-battery\n")
        path.chmod(0o600)
        return str(path)

    def cli(self, *args: str, ok: bool = True) -> str:
        cmd = [sys.executable, "-m", "engine", "--db", str(self.db), "--definitions",
               str(self.root / "definitions"), "--registers", str(self.root / "registers"), "--integrations",
               str(self.root / "integrations"), *args]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "RUNLEDGER_DB": ""})
        assert (done.returncode == 0) == ok, (args, done.stdout, done.stderr)
        return done.stdout

    def query(self, sql: str) -> list[tuple]:
        ws = Workspace(str(self.db))
        try:
            with ws.read() as conn:
                return [tuple(r) for r in conn.execute(sa.text(sql))]
        finally:
            ws.close()


def test_an_organization_of_its_own_from_the_command_line(tmp_path: Path) -> None:
    with smtp_server() as mail:
        _an_organization_of_its_own(Org(tmp_path, mail), mail)


def _an_organization_of_its_own(org: Org, mail: Mailbox) -> None:
    assert "admin ada" in org.cli("init", "--admin", "ada", "--password-file", org.password_file("ada"))
    org.cli("members", "add", "olga", "--roles", "operator", "--password-file", org.password_file("olga"),
            "--as", "ada")
    org.cli("members", "add", "arne", "--roles", "approver", "--password-file", org.password_file("arne"),
            "--as", "ada")
    listed = org.cli("members", "list")
    assert "olga" in listed and "arne" in listed and "sigrid" not in listed  # no demo member anywhere

    first = org.root / "files" / "merchants.csv"
    first.write_text(_merchants())
    out = org.cli("registers", "import", "merchants", str(first), "--as", "olga")
    assert "3 rows — 3 added, 0 changed, 0 unchanged, 0 withdrawn, 0 refused; 0 events raised" in out

    shown = org.cli("registers", "show", "merchants")
    assert "used by: merchant-kyb-review, merchant-suspended" in shown and "subjects: 3" in shown

    assert org.cli("fire", "merchant-kyb-review", "--as", "olga").strip() == "runs started: RUN-000001"
    assert org.query("SELECT subject_id, outcome FROM run_items WHERE run_id = 'RUN-000001' ORDER BY 1") == [
        ("M-001", "succeeded"), ("M-002", "succeeded")]  # M-003's review is not yet due
    # Each evidence request reached its owner through the organization's relay, once.
    assert sorted((to, b"KYB review due for" in raw) for to, raw in mail.messages) == [
        (["olga@merchants.example"], True), (["olga@merchants.example"], True)]

    # No engine runs: the import dispatches the event itself, so its run exists when the command returns.
    changed = org.root / "files" / "merchants-2.csv"
    changed.write_text(_merchants(suspended=frozenset({"M-002"})))
    out = org.cli("registers", "import", "merchants", str(changed), "--as", "olga")
    assert "0 added, 1 changed, 2 unchanged, 0 withdrawn, 0 refused; 1 event raised" in out
    assert "event merchant.suspended: 1" in out and out.strip().endswith("runs started: RUN-000002")
    assert org.query("SELECT outcome FROM run_items WHERE run_id = 'RUN-000002'") == [("awaiting-approval",)]

    # The operator may not approve; the approver does.
    assert "refused" in org.cli("approve", "RUN-000002-000001", "--as", "olga", ok=False)
    assert org.cli("approve", "RUN-000002-000001", "--as", "arne").strip() == "RUN-000002-000001: succeeded"
    [(title,)] = org.query("SELECT title FROM findings")
    assert title == "Merchant Nordlys Travel (M-002) suspended"

    # With the engine serving the workspace, the import goes through it and its events are its to dispatch.
    served = subprocess.Popen(
        [sys.executable, "-m", "engine", "--db", str(org.db), "--definitions", str(org.root / "definitions"),
         "--registers", str(org.root / "registers"), "serve"], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env={**os.environ, "RUNLEDGER_DB": ""})
    try:
        deadline = time.monotonic() + 60
        while not Path(discovery_path(str(org.db))).exists():
            assert served.poll() is None and time.monotonic() < deadline, served.stdout.read()  # type: ignore[union-attr]
            time.sleep(0.2)
        third = org.root / "files" / "merchants-3.csv"
        third.write_text(_merchants(suspended=frozenset({"M-002", "M-003"})))
        out = org.cli("registers", "import", "merchants", str(third), "--as", "olga")
        assert "0 added, 1 changed, 2 unchanged, 0 withdrawn, 0 refused; 1 event raised" in out
        assert out.strip().endswith("runs started: RUN-000003")
        # Approved through the engine too (the CLI finds the file held and forwards the command).
        assert org.cli("approve", "RUN-000003-000001", "--as", "arne").strip() == "RUN-000003-000001: succeeded"
    finally:
        served.send_signal(signal.SIGTERM)
        served.wait(timeout=60)

    assert org.query("SELECT run_id, definition_id, trigger_kind, status FROM runs ORDER BY 1") == [
        ("RUN-000001", "merchant-kyb-review", "manual", "completed"),
        ("RUN-000002", "merchant-suspended", "event", "completed"),
        ("RUN-000003", "merchant-suspended", "event", "completed")]
    assert org.query("SELECT subject_id FROM findings ORDER BY 1") == [("M-002",), ("M-003",)]
    audit = org.query("SELECT actor, event, entity_id FROM audit_log ORDER BY seq")
    events = [(a, e) for a, e, _ in audit]
    for step in [("member:ada", "member.added"), ("member:olga", "register.imported"),
                 ("member:olga", "run.requested"), ("member:arne", "item.approved")]:
        assert step in events, step
    assert [eid for _, e, eid in audit if e == "register.imported"] == ["merchants"] * 3
    assert org.cli("verify-audit").startswith("audit chain intact:")
