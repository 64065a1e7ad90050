"""Evidence requests go out as e-mail through the declared ``messaging`` integration to a real SMTP server
(the demo's gateway, ``demo/gateway.py``, on loopback): no table stands in for the remote system.

A request is recorded only once the gateway took its message; while the gateway refuses connections
(``421`` at its greeting, as a mail system under maintenance does) the item fails transiently naming the
reply, and the retry afterwards sends the same Message-ID. With no messaging integration declared, the
item fails transiently saying which file to add. An integration's location may come from the environment.
"""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.integrations import IntegrationError, parse_integration
from core.states import ITEM_FAILED, SUCCEEDED, TRANSIENT
from demo.gateway import DemoGateway
from engine.clock import SystemClock
from engine.commands import retry_item
from engine.runtime import Engine
from tests.receivers import free_port
from tests.support import actor, attempts_of, fire_one, items_of

DEFINITION = textwrap.dedent("""\
    id: d
    title: Ask the account manager for KYC evidence
    trigger: {kind: schedule, cron: "0 6 * * mon"}
    condition:
      subject: accounts
      where:
        - {field: status, op: eq, value: active, reason: the account is no longer active}
    actions:
      - actioner: evidence_requests.create
        params:
          recipient: "{{ subject.manager }}"
          title: "KYC review due for {{ subject.name }}"
          due_in_days: 14
    policies:
      retry: {max_attempts: 1}
    """)


@pytest.fixture
def gateway() -> Iterator[DemoGateway]:
    with DemoGateway(SystemClock(), port=free_port()) as gw:
        yield gw


@pytest.fixture
def engine_for(make_engine: Callable[..., Engine], tmp_path: Path) -> Callable[[int | None], Engine]:
    def make(port: int | None) -> Engine:
        folder = tmp_path / "integrations"
        folder.mkdir(exist_ok=True)
        if port is not None:
            (folder / "messaging.yaml").write_text(
                f"id: messaging\nkind: smtp\nhost: 127.0.0.1\nport: {port}\nfrom: requests@cu.example\n"
                "timeout_seconds: 2\n")
        return make_engine({"d": DEFINITION}, accounts=1, integrations_dir=folder)
    return make


def test_a_request_is_recorded_once_the_gateway_took_its_message(engine_for, gateway) -> None:  # noqa: ANN001
    engine = engine_for(gateway.port)
    [item] = items_of(engine, fire_one(engine)).values()
    assert item["outcome"] == SUCCEEDED and item["record_ref"].startswith("evidence_requests:EVR-")
    key = item["idempotency_key"]
    assert gateway.ledger.delivered == {f"<{key}@runledger>": ["m.one@cu.example"]}
    [attempt] = attempts_of(engine, item["item_id"])
    evidence = json.loads(attempt["evidence"])
    assert evidence["kind"] == "smtp" and evidence["accepted"] == ["m.one@cu.example"]
    with engine.ws.read() as conn:
        from store.records import read_record
        record = read_record(conn, "evidence_requests", item["record_ref"].split(":", 1)[1])
    assert record is not None and record["message_id"] == f"{key}@runledger" and record["recipient"] == "m.one"


def test_a_gateway_refusing_connections_fails_the_item_transiently_and_a_retry_sends_the_same_message(
        engine_for, gateway) -> None:  # noqa: ANN001
    engine = engine_for(gateway.port)
    now = SystemClock().now()
    gateway.add_outage(now - dt.timedelta(minutes=1), now + dt.timedelta(days=1), "certificate renewal overran")
    [item] = items_of(engine, fire_one(engine)).values()
    assert (item["outcome"], item["failure_class"]) == (ITEM_FAILED, TRANSIENT)
    assert item["failure_cause"] == (
        "messaging system unavailable (messaging: the server refused the connection: 421 4.3.2 certificate "
        "renewal overran); the request to m.one was not delivered. Retry once the messaging system is back.")
    assert item["record_ref"] is None and gateway.ledger.delivered == {} and gateway.ledger.refused == 1
    with engine.ws.read() as conn:
        import sqlalchemy as sa

        from store.records import RECORD_TABLES
        assert conn.execute(sa.select(sa.func.count()).select_from(RECORD_TABLES["evidence_requests"])).scalar() == 0

    gateway.outages.clear()  # the gateway is back
    assert retry_item(engine, actor(engine, "sigrid"), item["item_id"]) == SUCCEEDED
    assert list(gateway.ledger.delivered) == [f"<{item['idempotency_key']}@runledger>"]


def test_a_message_sent_again_is_recognised_not_delivered_twice(gateway) -> None:  # noqa: ANN001
    import smtplib
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = "a@cu.example", "b@cu.example", "x", "<K1@runledger>"
    msg.set_content("hello")
    for _ in range(2):  # the first answer lost, say: the engine sends the same message again
        with smtplib.SMTP(gateway.host, gateway.port, timeout=5) as smtp:
            smtp.send_message(msg)
    assert gateway.ledger.delivered == {"<K1@runledger>": ["b@cu.example"]} and gateway.ledger.resends == 1


def test_without_a_messaging_integration_the_item_says_which_file_to_add(engine_for) -> None:  # noqa: ANN001
    engine = engine_for(None)
    [item] = items_of(engine, fire_one(engine)).values()
    assert (item["outcome"], item["failure_class"]) == (ITEM_FAILED, TRANSIENT)
    assert item["failure_cause"] == ("no 'messaging' integration is declared to deliver the request to m.one: add "
                                     "integrations/messaging.yaml (an smtp integration), then retry")


def test_a_location_may_come_from_the_environment_with_a_default() -> None:
    text = "id: relay\nkind: smtp\nhost: ${RELAY_HOST:-127.0.0.1}\nport: ${RELAY_PORT:-2525}\nfrom: a@b.example\n"
    assert (parse_integration(text, "relay.yaml").host, parse_integration(text, "relay.yaml").port) == (
        "127.0.0.1", 2525)
    spec = parse_integration(text, "relay.yaml", {"RELAY_HOST": "mail.cu.example", "RELAY_PORT": "587"})
    assert (spec.host, spec.port) == ("mail.cu.example", 587)
    hook = "id: t\nkind: webhook\nurl: https://${TRACKER_HOST}/api/issues\n"
    assert parse_integration(hook, "t.yaml", {"TRACKER_HOST": "tracker.cu.example"}).url == (
        "https://tracker.cu.example/api/issues")
    with pytest.raises(IntegrationError) as refused:
        parse_integration(hook, "t.yaml", {})
    assert str(refused.value) == (
        "t.yaml: field 'url': expected the variable TRACKER_HOST set, or a default written "
        "${TRACKER_HOST:-value}; found '${TRACKER_HOST} with TRACKER_HOST not set'. Fix: set TRACKER_HOST, or "
        "give a default")
    with pytest.raises(IntegrationError, match=r"field 'port': expected a port number"):
        parse_integration(text, "relay.yaml", {"RELAY_PORT": "smtp"})


def test_the_demo_refuses_to_seed_when_its_gateways_port_is_taken_and_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from cli.main import main
    from demo.seed import workspace_is_empty
    from store.workspace import Workspace

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("RUNLEDGER_MESSAGING_PORT", str(port))
        said: list[str] = []
        db = tmp_path / "demo.duckdb"
        assert main(["--db", str(db), "demo"], out=said.append) == 1
    assert said[-1].startswith(f"error: the demo's messaging gateway cannot listen on 127.0.0.1:{port} (")
    assert said[-1].endswith("stop what uses that port, or set RUNLEDGER_MESSAGING_PORT to a free one; nothing "
                             "was seeded.")
    ws = Workspace(str(db))
    try:
        assert workspace_is_empty(ws)  # so `make run` (demo --if-empty) seeds it once the port is free
    finally:
        ws.close()
