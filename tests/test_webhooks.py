"""Webhook actions against a real HTTP server on loopback (``tests.receivers``): each kind of answer gives the
item its outcome and class, the attempt keeps what the receiver said, the reference names the remote
record, and a retry after a lost answer reaches the receiver with the same Idempotency-Key — which the
receiver recognises, so the ticket exists once."""

from __future__ import annotations

import datetime as dt
import io
import json
import textwrap
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from pypdf import PdfReader

from core.periods import period_from_dates
from core.states import DETERMINISTIC, ITEM_FAILED, SUCCEEDED, TRANSIENT
from engine.commands import retry_item
from engine.runtime import Engine
from reporting.brief import generate_brief
from reporting.bundle import build_run_bundle
from tests.receivers import Receiver, free_port, http_receiver
from tests.support import actor, attempts_of, audit_of, fire_one, items_of

SECRET = "whsec-test-7f3a"


def webhook_yaml(url: str, *, secret: bool = True, timeout: float = 2, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        id: ticketing
        kind: webhook
        url: {url}
        timeout_seconds: {timeout}
        record_id: data.id
        headers: {{Authorization: "Bearer ${{TICKETING_TOKEN}}", X-Team: compliance}}
        """) + ("secret_env: TICKETING_HMAC\n" if secret else "") + extra


def ticket_definition(retry: str = "max_attempts: 1") -> str:
    return textwrap.dedent(f"""\
        id: t
        title: Ticket per active account
        trigger: {{kind: schedule, cron: "0 6 * * mon"}}
        condition:
          subject: accounts
          where:
            - {{field: status, op: eq, value: active, reason: the account is no longer active}}
        actions:
          - actioner: webhook:ticketing
            params:
              title: "Review {{{{ subject.name }}}}"
              account: "{{{{ subject.account_id }}}}"
              labels: [kyc, "{{{{ subject.risk_rating }}}}"]
        policies:
          retry: {{{retry}}}
        """)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with http_receiver(secret=SECRET) as r:
        yield r


@pytest.fixture
def webhook_engine(make_engine: Callable[..., Engine], tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> Callable[..., Engine]:
    monkeypatch.setenv("TICKETING_HMAC", SECRET)
    monkeypatch.setenv("TICKETING_TOKEN", "tok-123")

    def make(url: str, accounts: int = 1, retry: str = "max_attempts: 1", **yaml_kw: Any) -> Engine:
        folder = tmp_path / "integrations"
        folder.mkdir(exist_ok=True)
        (folder / "ticketing.yaml").write_text(webhook_yaml(url, **yaml_kw))
        return make_engine({"t": ticket_definition(retry)}, accounts=accounts, integrations_dir=folder)
    return make


def only_item(engine: Engine, run_id: str) -> dict[str, Any]:
    [item] = items_of(engine, run_id).values()
    return item


def evidence(engine: Engine, item_id: str, attempt: int = 1) -> dict[str, Any]:
    return json.loads(attempts_of(engine, item_id)[attempt - 1]["evidence"])


def test_a_created_ticket_succeeds_with_the_remote_id_and_the_answer_as_evidence(
        webhook_engine: Callable[..., Engine], receiver: Receiver) -> None:
    engine = webhook_engine(f"{receiver.url}/ok")
    item = only_item(engine, fire_one(engine, "t"))
    assert (item["outcome"], item["record_ref"]) == (SUCCEEDED, "webhook:ticketing:TCK-1")
    [req] = receiver.requests
    assert req.key == item["idempotency_key"] and req.signed is True
    assert req.headers["authorization"] == "Bearer tok-123" and req.headers["x-team"] == "compliance"
    assert req.json == {"account": "ACC-001", "labels": ["kyc", "low"], "title": "Review Member 1"}
    got = evidence(engine, item["item_id"])
    assert got["status"] == 201 and got["remote_id"] == "TCK-1"
    assert got["request_sha256"] == __import__("hashlib").sha256(req.body).hexdigest()
    assert got["headers"]["x-request-id"] == "req-1" and len(got["body_sha256"]) == 64
    # the secret and the token are nowhere in what was recorded
    recorded = json.dumps(attempts_of(engine, item["item_id"]), default=str) + json.dumps(audit_of(engine), default=str)
    assert SECRET not in recorded and "tok-123" not in recorded


def test_an_answer_without_an_id_is_named_by_the_requests_digest(
        webhook_engine: Callable[..., Engine], receiver: Receiver) -> None:
    engine = webhook_engine(f"{receiver.url}/noid")
    item = only_item(engine, fire_one(engine, "t"))
    digest = evidence(engine, item["item_id"])["request_sha256"]
    assert item["outcome"] == SUCCEEDED and item["record_ref"] == f"webhook:ticketing:sha256-{digest[:16]}"


@pytest.mark.parametrize(("path", "klass", "cause"), [
    ("/bad", DETERMINISTIC, "ticketing answered 400 Bad Request: {\"error\": \"field 'title' is required by this "
                            "tracker\"}"),
    ("/conflict", DETERMINISTIC, "ticketing answered 409 Conflict: {\"error\": \"a ticket with this key is being "
                                 "created\"}"),
    ("/error", TRANSIENT, "ticketing answered 500 Internal Server Error: {\"error\": \"database unavailable\"}"),
    ("/busy", TRANSIENT, "ticketing answered 429 Too Many Requests: {\"error\": \"slow down\"} (asked to retry "
                         "after 120 s)"),
])
def test_each_answer_classes_the_failure_as_the_receiver_meant_it(
        webhook_engine: Callable[..., Engine], receiver: Receiver, path: str, klass: str, cause: str) -> None:
    engine = webhook_engine(f"{receiver.url}{path}")
    item = only_item(engine, fire_one(engine, "t"))
    assert (item["outcome"], item["failure_class"], item["failure_cause"]) == (ITEM_FAILED, klass, cause)
    [attempt] = attempts_of(engine, item["item_id"])
    assert attempt["failure_class"] == klass and json.loads(attempt["evidence"])["status"] == int(cause.split()[2])
    [failed] = [e for e in audit_of(engine, "item.failed") if e["entity_id"] == item["item_id"]]
    assert failed["payload"]["cause"] == cause and failed["payload"]["failure_class"] == klass


def test_retry_after_is_honoured_by_the_automatic_retry(webhook_engine: Callable[..., Engine],
                                                        receiver: Receiver) -> None:
    engine = webhook_engine(f"{receiver.url}/busy", retry="max_attempts: 3, backoff_seconds: 10")
    item = only_item(engine, fire_one(engine, "t"))
    waited = item["retry_due_at"] - attempts_of(engine, item["item_id"])[0]["started_at"]
    assert waited == dt.timedelta(seconds=120)  # the receiver asked for 120 s; the policy alone said 10


@pytest.mark.parametrize(("path", "said"), [
    ("/hang", "no answer from 127.0.0.1 within 1 s"),
    ("/reset", "the connection to 127.0.0.1 failed"),
])
def test_a_hang_or_a_reset_connection_is_transient(webhook_engine: Callable[..., Engine], receiver: Receiver,
                                                   path: str, said: str) -> None:
    receiver.hang_seconds = 3
    engine = webhook_engine(f"{receiver.url}{path}", timeout=1)
    item = only_item(engine, fire_one(engine, "t"))
    assert item["outcome"] == ITEM_FAILED and item["failure_class"] == TRANSIENT
    assert item["failure_cause"].startswith(f"ticketing: {said}")
    assert "same Idempotency-Key" in item["failure_cause"]


def test_a_refused_connection_is_transient(webhook_engine: Callable[..., Engine]) -> None:
    engine = webhook_engine(f"http://127.0.0.1:{free_port()}/ok")
    item = only_item(engine, fire_one(engine, "t"))
    assert item["outcome"] == ITEM_FAILED and item["failure_class"] == TRANSIENT
    assert "ConnectionRefusedError" in item["failure_cause"]


def test_a_retry_after_a_lost_answer_sends_the_same_key_and_the_ticket_exists_once(
        webhook_engine: Callable[..., Engine], receiver: Receiver) -> None:
    engine = webhook_engine(f"{receiver.url}/lost")
    item = only_item(engine, fire_one(engine, "t"))
    assert item["outcome"] == ITEM_FAILED and item["failure_class"] == TRANSIENT  # it acted; the answer was lost
    assert retry_item(engine, actor(engine, "sigrid"), item["item_id"]) == SUCCEEDED
    first, second = receiver.requests
    assert first.key == second.key == item["idempotency_key"] and first.body == second.body
    assert len(receiver.issued) == 1  # one ticket: the receiver recognised the key
    after = only_item(engine, item["run_id"])
    assert after["record_ref"] == "webhook:ticketing:TCK-1"
    assert evidence(engine, item["item_id"], 2)["headers"]["idempotent-replayed"] == "true"
    assert [a["outcome"] for a in attempts_of(engine, item["item_id"])] == [ITEM_FAILED, SUCCEEDED]


def test_a_self_signed_certificate_is_a_named_deterministic_failure(
        webhook_engine: Callable[..., Engine]) -> None:
    ca = trustme.CA()
    with http_receiver(secret=SECRET, tls=ca.issue_cert("127.0.0.1")) as tls_receiver:
        engine = webhook_engine(f"{tls_receiver.url}/ok")
        item = only_item(engine, fire_one(engine, "t"))
    assert item["outcome"] == ITEM_FAILED and item["failure_class"] == DETERMINISTIC
    assert item["failure_cause"] == (
        "ticketing: TLS failed with 127.0.0.1: its certificate could not be verified (unable to get local issuer "
        "certificate); nothing was sent. Fix the certificate (or trust its CA with ca_file_env), then retry")
    assert tls_receiver.requests == []  # nothing was sent


def test_a_certificate_from_a_declared_ca_is_trusted(webhook_engine: Callable[..., Engine], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("TICKETING_CA", str(tmp_path / "ca.pem"))
    with http_receiver(secret=SECRET, tls=ca.issue_cert("127.0.0.1")) as tls_receiver:
        engine = webhook_engine(f"{tls_receiver.url}/ok", extra="ca_file_env: TICKETING_CA\n")
        item = only_item(engine, fire_one(engine, "t"))
    assert item["outcome"] == SUCCEEDED and item["record_ref"] == "webhook:ticketing:TCK-1"


def test_an_unset_secret_fails_transiently_naming_the_variable_and_a_retry_works_once_set(
        webhook_engine: Callable[..., Engine], receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = webhook_engine(f"{receiver.url}/ok")
    monkeypatch.delenv("TICKETING_TOKEN")
    item = only_item(engine, fire_one(engine, "t"))
    assert item["failure_class"] == TRANSIENT and "needs the secret TICKETING_TOKEN, which is not set" in \
        item["failure_cause"]
    assert receiver.requests == []
    monkeypatch.setenv("TICKETING_TOKEN", "tok-123")
    assert retry_item(engine, actor(engine, "sigrid"), item["item_id"]) == SUCCEEDED


def test_requests_go_out_concurrently_up_to_the_integrations_bound(webhook_engine: Callable[..., Engine],
                                                                   receiver: Receiver) -> None:
    engine = webhook_engine(f"{receiver.url}/slow", accounts=24, extra="concurrency: 4\n")
    run_id = fire_one(engine, "t")
    assert {i["outcome"] for i in items_of(engine, run_id).values()} == {SUCCEEDED}
    assert receiver.most_in_flight == 4  # never more than declared, and more than one at a time
    assert len(receiver.issued) == 24 == len({r.key for r in receiver.requests})


@pytest.mark.slow  # the brief renders its charts through chromium
def test_the_brief_and_the_bundle_show_what_the_tracker_answered(webhook_engine: Callable[..., Engine],
                                                                 receiver: Receiver) -> None:
    engine = webhook_engine(f"{receiver.url}/lost")
    item = only_item(engine, fire_one(engine, "t"))
    retry_item(engine, actor(engine, "sigrid"), item["item_id"])  # the lost answer, replayed by the tracker
    period = period_from_dates(dt.date(2026, 7, 1), dt.date(2026, 9, 30))
    made = generate_brief(engine.ws, actor(engine, "auditor"), period)
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(made.content)).pages).split())
    assert "Remote systems" in text
    # A remote record is a downstream record like a finding: traced to its one item, not a failed check.
    assert "0 unintended consequences" in text and "FAILED" not in text
    assert "Downstream records created by the period's items: 1 webhook ticketing records." in text
    assert "webhook:ticketing 2 1 1 0 200 × 1, no answer × 1 1" in text  # attempts, outcomes, answers, replays
    _, bundle = build_run_bundle(engine.ws, actor(engine, "auditor"), item["run_id"])
    with zipfile.ZipFile(io.BytesIO(bundle)) as z:
        [name] = [n for n in z.namelist() if n.endswith("attempts.jsonl")]
        attempts = [json.loads(line) for line in z.read(name).splitlines()]
    answered = json.loads(attempts[1]["evidence"])
    assert answered["status"] == 200 and answered["remote_id"] == "TCK-1"
    assert answered["headers"]["idempotent-replayed"] == "true"
