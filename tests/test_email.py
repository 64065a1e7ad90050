"""E-mail actions through a real SMTP server on loopback (aiosmtpd, ``tests.receivers``): a message accepted
succeeds with its Message-ID (derived from the item's idempotency key) as the reference; 451 is transient
and 550 deterministic, per recipient; a dropped or refused connection is transient, and the retry sends
the same Message-ID. The body is plain text, and its HTML alternative escapes it."""

from __future__ import annotations

import email
import email.policy
import json
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.states import DETERMINISTIC, ITEM_FAILED, SUCCEEDED, TRANSIENT
from engine.commands import retry_item
from engine.runtime import Engine
from tests.receivers import Mailbox, free_port, smtp_server
from tests.support import actor, attempts_of, fire_one, items_of


def mail_yaml(port: int) -> str:
    return textwrap.dedent(f"""\
        id: mail
        kind: smtp
        host: 127.0.0.1
        port: {port}
        from: compliance-automation@bank.example
        timeout_seconds: 2
        """)


DEFINITION = textwrap.dedent("""\
    id: m
    title: Mail the account manager
    trigger: {kind: schedule, cron: "0 6 * * mon"}
    condition:
      subject: accounts
      where:
        - {field: status, op: eq, value: active, reason: the account is no longer active}
    actions:
      - actioner: email:mail
        params:
          to: "{{ subject.manager }}@bank.example"
          subject: "KYC review due for {{ subject.name }}"
          body: "Please review {{ subject.name }} <b>today</b>."
    policies:
      retry: {max_attempts: 1}
    """)


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_server() as box:
        yield box


@pytest.fixture
def mail_engine(make_engine: Callable[..., Engine], tmp_path: Path) -> Callable[[int], Engine]:
    def make(port: int) -> Engine:
        folder = tmp_path / "integrations"
        folder.mkdir(exist_ok=True)
        (folder / "mail.yaml").write_text(mail_yaml(port))
        return make_engine({"m": DEFINITION}, accounts=1, integrations_dir=folder)
    return make


def only_item(engine: Engine, run_id: str) -> dict[str, Any]:
    [item] = items_of(engine, run_id).values()
    return item


def test_an_accepted_message_succeeds_with_its_message_id(mail_engine: Callable[[int], Engine],
                                                          mailbox: Mailbox) -> None:
    engine = mail_engine(mailbox.port)
    item = only_item(engine, fire_one(engine, "m"))
    key = item["idempotency_key"]
    assert (item["outcome"], item["record_ref"]) == (SUCCEEDED, f"email:mail:{key}@runledger")
    [(rcpts, raw)] = mailbox.messages
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert rcpts == ["m.one@bank.example"] and msg["Message-ID"] == f"<{key}@runledger>"
    assert msg["X-Runledger-Idempotency-Key"] == key and msg["Subject"] == "KYC review due for Member 1"
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    markup = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert text.strip() == "Please review Member 1 <b>today</b>."
    assert "&lt;b&gt;today&lt;/b&gt;" in markup and "<b>" not in markup
    got = json.loads(attempts_of(engine, item["item_id"])[0]["evidence"])
    assert got["accepted"] == ["m.one@bank.example"] and got["message_id"] == f"<{key}@runledger>"
    assert len(got["message_sha256"]) == 64


@pytest.mark.parametrize(("reply", "klass"), [("451 4.3.0 mailbox busy, try later", TRANSIENT),
                                              ("550 5.1.1 no such user", DETERMINISTIC)])
def test_a_recipients_refusal_is_classed_by_its_reply(mail_engine: Callable[[int], Engine], mailbox: Mailbox,
                                                      reply: str, klass: str) -> None:
    mailbox.reply["m.one@bank.example"] = reply
    engine = mail_engine(mailbox.port)
    item = only_item(engine, fire_one(engine, "m"))
    verb = "deferred" if klass == TRANSIENT else "refused"
    assert (item["outcome"], item["failure_class"]) == (ITEM_FAILED, klass)
    assert item["failure_cause"] == f"mail: the server {verb} m.one@bank.example: {reply}"
    got = json.loads(attempts_of(engine, item["item_id"])[0]["evidence"])
    assert got["refused"] == {"m.one@bank.example": reply} and got["accepted"] == []
    assert mailbox.messages == []


def test_a_dropped_connection_is_transient_and_the_retry_sends_the_same_message_id(
        mail_engine: Callable[[int], Engine], mailbox: Mailbox) -> None:
    mailbox.drop_on_data = True
    engine = mail_engine(mailbox.port)
    item = only_item(engine, fire_one(engine, "m"))
    assert (item["outcome"], item["failure_class"]) == (ITEM_FAILED, TRANSIENT)
    assert "a retry sends the same Message-ID" in item["failure_cause"]
    mailbox.drop_on_data = False
    assert retry_item(engine, actor(engine, "sigrid"), item["item_id"]) == SUCCEEDED
    [(_, raw)] = mailbox.messages
    assert email.message_from_bytes(raw)["Message-ID"] == f"<{item['idempotency_key']}@runledger>"


def test_a_refused_connection_is_transient(mail_engine: Callable[[int], Engine]) -> None:
    engine = mail_engine(free_port())
    item = only_item(engine, fire_one(engine, "m"))
    assert (item["outcome"], item["failure_class"]) == (ITEM_FAILED, TRANSIENT)
    assert "ConnectionRefusedError" in item["failure_cause"]
