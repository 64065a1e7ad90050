"""Alerts on runs, delivered through real servers on loopback: one message per run and status reached, naming
the automation, the counts, the top causes and the run's link; queued with the status (same transaction),
delivered apart from the run, retried when the mail server is down, audited either way."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.states import COMPLETED_WITH_FAILURES
from engine.runtime import Engine
from store.alerts import read_run_alerts
from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import make_engine_fixture, pg_server_fixture, pg_template_fixture  # noqa: F401
from tests.receivers import Mailbox, http_receiver, smtp_server
from tests.support import FailsDeterministically, audit_of, finding_definition, fire_one, run_of

MAIL = "id: mail\nkind: smtp\nhost: 127.0.0.1\nport: {port}\nfrom: runledger@bank.example\ntimeout_seconds: 2\n"
ALERTS = "alerts: {on: [completed-with-failures, failed], via: mail, to: [compliance@bank.example]}\n"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as box:
        yield box


@pytest.fixture
def alerting(make_engine: Callable[..., Engine], tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Callable[..., Engine]:
    monkeypatch.setenv("RUNLEDGER_BASE_URL", "https://grc.bank.example/runledger/")

    def make(integrations: dict[str, str], definition: str, failing: tuple[str, ...] = ("ACC-002",),
             **kw: object) -> Engine:
        folder = tmp_path / "integrations"
        folder.mkdir(exist_ok=True)
        for name, text in integrations.items():
            (folder / f"{name}.yaml").write_text(text)
        return make_engine({"d": definition}, accounts=3, integrations_dir=folder,
                           actioners={"findings.create": FailsDeterministically(failing)}, **kw)
    return make


def test_a_run_completed_with_failures_sends_one_message_with_its_counts_causes_and_link(
        alerting: Callable[..., Engine], mailbox: Mailbox) -> None:
    engine = alerting({"mail": MAIL.format(port=mailbox.port)}, finding_definition("d") + ALERTS)
    run_id = fire_one(engine)
    assert run_of(engine, run_id)["status"] == COMPLETED_WITH_FAILURES
    [queued] = audit_of(engine, "alert.queued")
    settled = [e for e in audit_of(engine, entity_id=run_id) if e["event"] == "run.completed_with_failures"]
    assert queued["payload"]["via"] == "mail" and queued["seq"] == settled[0]["seq"] + 1  # with the status, in its tx
    assert mailbox.messages == []  # nothing sent inside the run's transaction
    assert engine.deliver_alerts() == 1 and engine.deliver_alerts() == 0  # one message per run
    [(rcpts, raw)] = mailbox.messages
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert rcpts == ["compliance@bank.example"]
    assert msg["Subject"] == f"[Runledger] Test d: {run_id} completed with failures"
    body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Items: 1 failed, 2 succeeded." in body
    assert "- 1 × findings register refuses ACC-002: owner unknown" in body
    assert f"Open the run: https://grc.bank.example/runledger/run?id={run_id}" in body
    [delivered] = audit_of(engine, "alert.delivered")
    assert delivered["entity_id"] == run_id and delivered["payload"]["record_ref"].startswith("email:mail:")
    with engine.ws.read() as conn:
        [row] = read_run_alerts(conn, run_id)
    assert (row["status"], row["attempts"]) == ("delivered", 1)


def test_a_mail_server_that_is_down_leaves_the_run_alone_and_the_alert_is_retried(
        alerting: Callable[..., Engine]) -> None:
    with smtp_server() as box:  # a port nothing listens on once it stops
        port = box.port
    engine = alerting({"mail": MAIL.format(port=port)}, finding_definition("d") + ALERTS)
    run_id = fire_one(engine)
    assert engine.deliver_alerts() == 0
    assert run_of(engine, run_id)["status"] == COMPLETED_WITH_FAILURES  # the run is as it was
    with engine.ws.read() as conn:
        [row] = read_run_alerts(conn, run_id)
    assert (row["status"], row["attempts"]) == ("pending", 1) and "ConnectionRefusedError" in row["last_error"]
    [failed] = audit_of(engine, "alert.failed")
    assert failed["payload"]["cause"] == row["last_error"] and failed["payload"]["retry_at"]
    assert engine.deliver_alerts() == 0 and len(audit_of(engine, "alert.failed")) == 1  # not due: a minute's backoff


def test_the_alert_is_retried_once_the_server_is_back(alerting: Callable[..., Engine], mailbox: Mailbox) -> None:
    engine = alerting({"mail": MAIL.format(port=mailbox.port)}, finding_definition("d") + ALERTS)
    run_id = fire_one(engine)
    mailbox.reply["compliance@bank.example"] = "451 4.3.0 try again later"
    assert engine.deliver_alerts() == 0
    del mailbox.reply["compliance@bank.example"]
    engine.clock.advance_to(engine.clock.now() + dt.timedelta(seconds=61))
    assert engine.deliver_alerts() == 1
    with engine.ws.read() as conn:
        [row] = read_run_alerts(conn, run_id)
    assert (row["status"], row["attempts"]) == ("delivered", 2) and len(mailbox.messages) == 1
    assert [e["event"] for e in audit_of(engine) if e["event"].startswith("alert.")] == [
        "alert.queued", "alert.failed", "alert.delivered"]


def test_an_integrations_default_alerts_apply_to_automations_that_declare_none(
        alerting: Callable[..., Engine]) -> None:
    with http_receiver() as receiver:
        hook = f"id: chat\nkind: webhook\nurl: {receiver.url}/ok\nalerts: {{on: [completed-with-failures]}}\n"
        engine = alerting({"chat": hook}, finding_definition("d"))
        run_id = fire_one(engine)
        assert engine.deliver_alerts() == 1
    [req] = receiver.requests
    assert req.json["alert"]["run_id"] == run_id and req.json["alert"]["status"] == COMPLETED_WITH_FAILURES
    assert req.json["alert"]["counts"] == {"failed": 1, "succeeded": 2}
    assert req.json["alert"]["link"] == f"https://grc.bank.example/runledger/run?id={run_id}"


def test_a_run_waiting_only_on_approvals_alerts_its_approvers_once(alerting: Callable[..., Engine],
                                                                   mailbox: Mailbox) -> None:
    policy = "alerts: {on: [awaiting-approval], via: mail, to: [approvers@bank.example]}\n"
    engine = alerting({"mail": MAIL.format(port=mailbox.port)}, finding_definition("d", approval=True) + policy,
                      failing=())
    run_id = fire_one(engine)
    assert engine.deliver_alerts() == 1
    [(_, raw)] = mailbox.messages
    assert email.message_from_bytes(raw)["Subject"] == f"[Runledger] Test d: {run_id} is waiting for approval"
    assert len(audit_of(engine, "alert.queued")) == 1


def test_no_alert_when_nothing_asks_for_one(alerting: Callable[..., Engine], mailbox: Mailbox) -> None:
    engine = alerting({"mail": MAIL.format(port=mailbox.port)}, finding_definition("d"))
    fire_one(engine)
    assert engine.deliver_alerts() == 0 and audit_of(engine, "alert.queued") == []


def test_alerts_through_an_undeclared_integration_are_refused_at_load(alerting: Callable[..., Engine]) -> None:
    text = finding_definition("d") + "alerts: {on: [failed], via: pager, to: [a@bank.example]}\n"
    engine = alerting({"mail": MAIL.format(port=25)}, text, allow_rejected=True)
    [error] = engine.catalog.load_directory(engine.definitions_dir, "member:admin").errors
    assert str(error).endswith("field 'alerts.via': expected a declared integration (mail); found 'pager'. Fix: "
                               "declare the integration in the integrations folder, or name one that is")
