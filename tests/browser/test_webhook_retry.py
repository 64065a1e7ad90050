"""A failed webhook delivery retried from the browser reaches the receiver once more with the same
Idempotency-Key, and the receiver's ticket exists once. A workspace of its own (``init``), a register and a
definition over it whose action posts to a tracker on loopback (``tests.receivers``) that acts on the first
request and loses its answer; the operator runs it now, retries the failed item from the Run page, and the
Run item page shows the remote record and what the tracker answered each attempt."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.support import ROOT, AppServer, click_settled, screenshot, sign_in
from tests.receivers import Receiver, http_receiver

COUNTERPARTIES = """\
id: counterparties
title: Counterparties
key: counterparty_id
label: name
fields: {counterparty_id: string, name: string, status: string}
"""
DEFINITION = """\
id: counterparty-ticket
title: Ticket for every watched counterparty
trigger: {kind: schedule, cron: "0 7 * * mon", timezone: UTC}
condition:
  subject: counterparties
  where:
    - {field: status, op: eq, value: watched, reason: the counterparty is no longer watched}
actions:
  - actioner: webhook:tracker
    params: {title: "Sanctions screening for {{ subject.name }}", counterparty: "{{ subject.counterparty_id }}"}
"""
PASSWORDS = {"root": "root-admin-passphrase", "opal": "opal-operator-passphrase"}


def _cli(folder: Path, *args: str) -> str:
    cmd = [sys.executable, "-m", "engine", "--db", str(folder / "org.duckdb"), "--definitions",
           str(folder / "definitions"), "--registers", str(folder / "registers"), "--integrations",
           str(folder / "integrations"), *args]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "RUNLEDGER_DB": ""})
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


@pytest.fixture(scope="module")
def tracker() -> Iterator[Receiver]:
    with http_receiver(secret="tracker-signing-key") as receiver:
        yield receiver


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory, tracker: Receiver) -> Iterator[tuple[Path, AppServer]]:
    folder = tmp_path_factory.mktemp("webhook-org")
    for sub in ("registers", "definitions", "integrations"):
        (folder / sub).mkdir()
    (folder / "registers" / "counterparties.yaml").write_text(COUNTERPARTIES)
    (folder / "definitions" / "counterparty-ticket.yaml").write_text(DEFINITION)
    (folder / "integrations" / "tracker.yaml").write_text(
        f"id: tracker\nkind: webhook\nurl: {tracker.url}/lost\nsecret_env: TRACKER_HMAC\nrecord_id: data.id\n")
    for name, password in PASSWORDS.items():
        (folder / f"{name}.pw").write_text(password + "\n")
    _cli(folder, "init", "--admin", "root", "--password-file", str(folder / "root.pw"))
    _cli(folder, "members", "add", "opal", "--roles", "operator", "--password-file", str(folder / "opal.pw"),
         "--as", "root")
    (folder / "counterparties.csv").write_text("counterparty_id,name,status\nCP-1,Halcyon Shipping,watched\n")
    _cli(folder, "registers", "import", "counterparties", str(folder / "counterparties.csv"), "--as", "opal")
    server = AppServer(folder / "org.duckdb", folder / "streamlit.log", env={
        "RUNLEDGER_DEFINITIONS": str(folder / "definitions"), "RUNLEDGER_REGISTERS": str(folder / "registers"),
        "RUNLEDGER_INTEGRATIONS": str(folder / "integrations"), "TRACKER_HMAC": "tracker-signing-key"})
    yield folder, server
    server.stop()


def main(page):  # noqa: ANN001, ANN201
    return page.locator('[data-testid="stMain"]')


def test_a_failed_delivery_retried_from_the_browser_reaches_the_tracker_once_more(
        org: tuple[Path, AppServer], tracker: Receiver, page) -> None:  # noqa: ANN001
    _, server = org
    sign_in(page, server, "opal", path="automations?id=counterparty-ticket", password=PASSWORDS["opal"])
    main(page).get_by_text("Integrations (1)").click()  # where it points, its secret set
    main(page).locator('[role="gridcell"]', has_text="webhook POST").first.wait_for(state="attached")
    click_settled(main(page).get_by_role("button", name="Run now"))  # below the expander just opened
    click_settled(main(page).get_by_role("button", name=re.compile(r"^Yes, run it on 1 counterpart")))
    main(page).get_by_text(re.compile(r"^Open RUN-000001$")).first.wait_for(timeout=60_000)

    page.goto(f"{server.url}/run?id=RUN-000001")
    main(page).get_by_text("1 item failed at least once: 1 still failed (1 open, 0 dispositioned)").first.wait_for(
        timeout=60_000)
    assert len(tracker.requests) == 1 and len(tracker.issued) == 1  # it acted; its answer was lost
    main(page).get_by_text(re.compile(r"Retry failed items \(1 failed\)")).click()
    main(page).get_by_text("1 eligible for a retry").first.wait_for()
    click_settled(main(page).get_by_role("button", name="Retry 1 eligible item"))
    main(page).get_by_text("Retry finished: 1 succeeded").first.wait_for(timeout=60_000)
    screenshot(page, "webhook-retried")

    first, second = tracker.requests
    assert first.key == second.key and first.body == second.body and first.signed and second.signed
    assert len(tracker.issued) == 1  # one ticket: the tracker recognised the key

    page.goto(f"{server.url}/item?id=RUN-000001-000001")
    main(page).get_by_text("webhook:tracker:TCK-1").first.wait_for()
    main(page).locator('[role="gridcell"]', has_text="200 OK · id TCK-1").first.wait_for(state="attached")
    main(page).get_by_text("What the remote system answered, attempt by attempt").click()
    main(page).get_by_text("idempotent-replayed").first.wait_for()  # the tracker said it was a replay
    screenshot(page, "webhook-item-evidence")
