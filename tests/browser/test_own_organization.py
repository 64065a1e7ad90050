"""An organization that is not the demo, in a real browser: a workspace made with ``init``, its members
added, a register (vendors, which no other test uses) and two definitions of its own. The operator uploads a
CSV on the Registers page, runs the review now on Automations, uploads a changed CSV whose declared change
starts a run, and the approver approves what it proposes; every step is on the Runs page, and the audit
chain verifies afterwards."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.support import ROOT, AppServer, screenshot, sign_in
from tests.receivers import smtp_server

TODAY = dt.datetime.now(dt.UTC).date()
VENDORS = """\
id: vendors
title: Vendors
key: vendor_id
label: name
fields:
  vendor_id: string
  name: string
  status: string
  review_due: date
  owner: string
required: [name, status]
events:
  vendor.breached: {field: status, becomes: breached}
"""
REVIEW = """\
id: vendor-review
title: Vendor review
trigger: {kind: schedule, cron: "0 8 1 * *", timezone: UTC}
condition:
  subject: vendors
  where:
    - {field: status, op: eq, value: active, reason: the vendor is no longer active}
    - {field: review_due, op: lte, value: {days_after_trigger: 0}, reason: the review is no longer due}
actions:
  - actioner: evidence_requests.create
    params: {recipient: "{{ subject.owner }}", title: "Review of {{ subject.name }}", due_in_days: 10}
"""
BREACHED = """\
id: vendor-breached
title: Breached vendor finding
trigger: {kind: event, event: vendor.breached}
condition:
  subject: vendors
  where:
    - {field: status, op: eq, value: breached, reason: the vendor is no longer marked breached}
actions:
  - actioner: findings.create
    params: {title: "Vendor {{ subject.name }} reported a breach", severity: high, owner: "{{ subject.owner }}"}
policies:
  approval: {required: true}
"""
PASSWORDS = {"root": "root-admin-passphrase", "opal": "opal-operator-passphrase", "abel": "abel-approver-phrase"}


def _csv(breached: bool) -> str:
    due = TODAY - dt.timedelta(days=3)
    return ("vendor_id,name,status,review_due,owner\n"
            f"VEN-1,Aurora Cloud,{'breached' if breached else 'active'},{due},opal\n"
            f"VEN-2,Borealis Print,active,{TODAY + dt.timedelta(days=60)},opal\n")


def _cli(folder: Path, *args: str) -> str:
    cmd = [sys.executable, "-m", "engine", "--db", str(folder / "org.duckdb"), "--definitions",
           str(folder / "definitions"), "--registers", str(folder / "registers"), *args]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "RUNLEDGER_DB": ""})
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, AppServer]]:
    folder = tmp_path_factory.mktemp("org")
    for sub in ("registers", "definitions"):
        (folder / sub).mkdir()
    (folder / "registers" / "vendors.yaml").write_text(VENDORS)
    (folder / "definitions" / "vendor-review.yaml").write_text(REVIEW)
    (folder / "definitions" / "vendor-breached.yaml").write_text(BREACHED)
    for name, password in PASSWORDS.items():
        (folder / f"{name}.pw").write_text(password + "\n")
    _cli(folder, "init", "--admin", "root", "--password-file", str(folder / "root.pw"))
    _cli(folder, "members", "add", "opal", "--roles", "operator", "--password-file", str(folder / "opal.pw"),
         "--as", "root")
    _cli(folder, "members", "add", "abel", "--roles", "approver", "--password-file", str(folder / "abel.pw"),
         "--as", "root")
    for name, breached in (("vendors.csv", False), ("vendors-breach.csv", True)):
        (folder / name).write_text(_csv(breached))
    with smtp_server() as mail:  # the organization's own mail relay, which its evidence requests go through
        (folder / "integrations").mkdir()
        (folder / "integrations" / "messaging.yaml").write_text(
            f"id: messaging\nkind: smtp\nhost: {mail.host}\nport: {mail.port}\nfrom: compliance@vendorco.example\n")
        server = AppServer(folder / "org.duckdb", folder / "streamlit.log", env={
            "RUNLEDGER_DEFINITIONS": str(folder / "definitions"), "RUNLEDGER_REGISTERS": str(folder / "registers"),
            "RUNLEDGER_INTEGRATIONS": str(folder / "integrations")})
        yield folder, server
        server.stop()


def main(page):  # noqa: ANN001, ANN201
    return page.locator('[data-testid="stMain"]')


def _upload(page, server: AppServer, file: Path, expect: str) -> None:  # noqa: ANN001
    page.goto(f"{server.url}/registers?id=vendors")
    main(page).get_by_text("Import a file", exact=True).click()
    main(page).locator('input[type="file"]').set_input_files(str(file))
    main(page).get_by_text(file.name).wait_for()  # the uploader holds it
    main(page).get_by_role("button", name="Import", exact=True).click()
    main(page).get_by_text(re.compile(expect)).first.wait_for(timeout=60_000)


def test_an_organization_of_its_own_in_the_browser(org: tuple[Path, AppServer], page) -> None:  # noqa: ANN001
    folder, server = org
    sign_in(page, server, "opal", path="registers", password=PASSWORDS["opal"])
    main(page).locator('[role="gridcell"]', has_text="Vendors").first.wait_for(state="attached")
    _upload(page, server, folder / "vendors.csv", r"2 rows — 2 added, 0 changed")
    screenshot(page, "org-register-imported")

    page.goto(f"{server.url}/automations?id=vendor-review")
    main(page).get_by_role("button", name="Run now").click()
    main(page).get_by_role("button", name=re.compile(r"^Yes, run it on 1 vendors?$")).click()
    main(page).get_by_text(re.compile(r"^Open RUN-000001$")).first.wait_for(timeout=60_000)

    _upload(page, server, folder / "vendors-breach.csv", r"1 changed, 1 unchanged.*1 event raised")
    main(page).get_by_text(re.compile(r"runs started: RUN-000002")).first.wait_for()
    screenshot(page, "org-register-changed")

    sign_in(page, server, "abel", path="approvals", password=PASSWORDS["abel"])
    main(page).get_by_text("Vendor Aurora Cloud reported a breach").first.wait_for()
    main(page).get_by_role("button", name="Approve").first.click()
    main(page).get_by_text(re.compile(r"RUN-000002-000001.*succeeded")).first.wait_for(timeout=60_000)

    page.goto(f"{server.url}/")
    for run_id in ("RUN-000001", "RUN-000002"):
        main(page).locator('[role="gridcell"]', has_text=run_id).first.wait_for(state="attached")
    screenshot(page, "org-runs")
    server.stop()
    verified = _cli(folder, "verify-audit")
    assert verified.startswith("audit chain intact:")
    audit = _cli(folder, "registers", "show", "vendors")
    assert "by member:opal" in audit and "vendors-breach.csv" in audit
