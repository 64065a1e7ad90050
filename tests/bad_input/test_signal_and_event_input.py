"""Bad signals and events, through the real intake endpoint (HTTP, signed) and through ``deliver_signal``:
each refused with an exact answer, each refusal in the audit log, and nothing half-created — no trigger
event, no register row, no run, no item, no record.

The limit is the README's: a signal's body is at most 64 KiB (``MAX_PAYLOAD_BYTES``).
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.commands.named import BadRequest, perform
from engine.intake.server import IntakeServer, sign
from engine.signals import MAX_PAYLOAD_BYTES, SignalRejected, deliver_signal
from store.sources import read_source
from store.subjects import UnknownSubject
from tests.support import audit_of

REPO = Path(__file__).resolve().parents[2]
RULE_INTAKE = (REPO / "definitions" / "regulator-rule-change-intake.yaml").read_text()
GOOD = {"reference": "NCUA-2026-14", "regulator": "NCUA", "title": "Overdraft rule"}
COUNTED = ("trigger_events", "rule_changes", "runs", "run_items", "findings", "approvals")
NAME_THE_FIX = "register it first (an admin runs: python -m engine sources add NAME --register REGISTER --as ADMIN)"

assert MAX_PAYLOAD_BYTES == 64 * 1024  # the documented limit


def counts(engine: Any) -> dict[str, int]:
    with engine.ws.read() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in COUNTED}


def padded(size: int) -> bytes:
    """A valid payload of exactly ``size`` bytes (the title is padded)."""
    base = json.dumps({**GOOD, "title": ""}).encode()
    return json.dumps({**GOOD, "title": "x" * (size - len(base))}).encode()


# --- deliver_signal ---------------------------------------------------------------------------------------
BAD_SIGNALS: dict[str, tuple[str, Any, str]] = {  # name → (source, payload, exact reason)
    "unknown source": ("nobody", json.dumps(GOOD), f"unknown source 'nobody'; {NAME_THE_FIX}"),
    "malformed JSON": ("regulator-feed", '{"reference": "R-1",',
                       "payload is not valid JSON (Expecting property name enclosed in double quotes: line 1 "
                       "column 21 (char 20)); send one JSON object"),
    "not an object": ("regulator-feed", "[1, 2]", "payload must be a JSON object, not a list"),
    "oversized": ("regulator-feed", padded(MAX_PAYLOAD_BYTES + 1),
                  "payload is 65,537 bytes; the limit is 65,536 bytes"),
    "unknown field": ("regulator-feed", json.dumps({**GOOD, "severity": "high"}),
                      "unknown field(s) severity; rule_changes accepts reference, regulator, title, effective_date"),
    "missing field": ("regulator-feed", json.dumps({"reference": "R-1", "regulator": "NCUA"}),
                      "field 'title' is required (text)"),
    "number for text": ("regulator-feed", json.dumps({**GOOD, "reference": 42}),
                        "field 'reference' must be non-empty text, got 42"),
    "blank text": ("regulator-feed", json.dumps({**GOOD, "title": "   "}),
                   "field 'title' must be non-empty text, got '   '"),
    "list for text": ("regulator-feed", json.dumps({**GOOD, "regulator": ["NCUA"]}),
                      "field 'regulator' must be non-empty text, got ['NCUA']"),
    "impossible date": ("regulator-feed", json.dumps({**GOOD, "effective_date": "2026-13-45"}),
                        "field 'effective_date' must be a date like 2026-09-30, got '2026-13-45'"),
    "number for date": ("regulator-feed", json.dumps({**GOOD, "effective_date": 20261201}),
                        "field 'effective_date' must be a date like 2026-09-30, got 20261201"),
    "a field twice": ("regulator-feed", '{"reference": "R-1", "regulator": "NCUA", "title": "T", "reference": "R-2"}',
                      "payload names the field 'reference' more than once; send each field once"),
    "a NUL in text": ("regulator-feed", json.dumps({**GOOD, "title": "Overdraft\u0000 rule"}),
                      "field 'title' holds a control character (U+0000) at position 10; send plain text"),
    "a terminal escape in text": ("regulator-feed", json.dumps({**GOOD, "regulator": "\u001b[31mNCUA"}),
                                  "field 'regulator' holds a control character (U+001B) at position 1; "
                                  "send plain text"),
    "nested 5,000 levels deep": ("regulator-feed", "[" * 5000 + "]" * 5000,
                                 "payload nests deeper than 32 levels; send one flat JSON object"),
    "nested 40 levels in a field": ("regulator-feed", '{"reference": "R-1", "regulator": "NCUA", "title": '
                                    + "[" * 40 + '"x"' + "]" * 40 + "}",
                                    "payload nests deeper than 32 levels; send one flat JSON object"),
    "a direction override in text": ("regulator-feed", json.dumps({**GOOD, "reference": "NCUA-\u202e41-6202"}),
                                     "field 'reference' holds a text-direction control (U+202E) at position 6, "
                                     "which would show it other than it is; send plain text"),
}


@pytest.mark.parametrize("name", BAD_SIGNALS)
def test_deliver_signal_rejects_records_and_creates_nothing(make_engine, name: str) -> None:
    source, payload, reason = BAD_SIGNALS[name]
    engine = make_engine({"rule": RULE_INTAKE})
    before = counts(engine)
    with pytest.raises(SignalRejected) as exc:
        deliver_signal(engine, source, payload)
    assert str(exc.value) == reason
    [entry] = audit_of(engine, "signal.rejected")
    assert (entry["actor"], entry["entity_kind"], entry["entity_id"], entry["payload"]) == (
        f"signal:{source}", "intake_source", source, {"reason": reason})
    assert counts(engine) == before
    assert engine.ws.verify_audit().intact


def test_the_limit_is_inclusive_and_a_valid_signal_still_runs(make_engine) -> None:
    engine = make_engine({"rule": RULE_INTAKE})
    before = counts(engine)
    event_id = deliver_signal(engine, "regulator-feed", padded(MAX_PAYLOAD_BYTES))
    after = counts(engine)
    assert event_id.startswith("EV-")
    assert {k: after[k] - before[k] for k in COUNTED} == {
        "trigger_events": 1, "rule_changes": 1, "runs": 1, "run_items": 1, "findings": 0, "approvals": 1}


def test_an_event_on_an_unknown_or_malformed_subject_changes_nothing(make_engine) -> None:
    engine = make_engine({"rule": RULE_INTAKE})
    before = counts(engine)
    with pytest.raises(UnknownSubject):
        perform(engine, "emit", {"event": "incident.closed", "subject": "INC-NOPE"})
    with pytest.raises(BadRequest, match=r"^unknown event 'planet.exploded'; known: account.deactivated, "):
        perform(engine, "emit", {"event": "planet.exploded", "subject": "INC-701"})
    with pytest.raises(BadRequest, match=r"^'subject' must be a non-empty string$"):
        perform(engine, "emit", {"event": "incident.closed", "subject": 701})
    with pytest.raises(BadRequest, match=r"^emit takes event, subject; not payload$"):
        perform(engine, "emit", {"event": "incident.closed", "subject": "INC-701", "payload": "{}"})
    assert counts(engine) == before


# --- the intake endpoint ------------------------------------------------------------------------------------
@pytest.fixture
def endpoint(make_engine) -> Iterator[tuple[Any, IntakeServer, str]]:
    engine = make_engine({"rule": RULE_INTAKE})
    server = IntakeServer(engine, port=0)
    server.start()
    with engine.ws.read() as conn:
        secret = read_source(conn, "regulator-feed")["secret"]
    try:
        yield engine, server, secret
    finally:
        server.stop()


def post(server: IntakeServer, path: str, body: bytes, secret: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        ts = str(int(time.time()))
        headers |= {"X-Runledger-Timestamp": ts, "X-Runledger-Signature": sign(secret, ts, body)}
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    try:
        conn.request("POST", path, body, headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


ENDPOINT_CASES: dict[str, tuple[str, bytes, int, str]] = {  # name → (path, body, status, exact message)
    "unknown source": ("/signals/nobody", json.dumps(GOOD).encode(), 404, f"unknown source 'nobody'; {NAME_THE_FIX}"),
    "malformed JSON": ("/signals/regulator-feed", b'{"reference": "R-1",', 400,
                       "the body is not valid JSON (Expecting property name enclosed in double quotes: line 1 "
                       "column 21 (char 20)); send one JSON object"),
    "not UTF-8": ("/signals/regulator-feed", b'{"reference": "\xff"}', 400,
                  "the body is not valid JSON ('utf-8' codec can't decode byte 0xff in position 15: invalid start "
                  "byte); send one JSON object"),
    "oversized": ("/signals/regulator-feed", padded(MAX_PAYLOAD_BYTES + 1), 413,
                  "the body is 65,537 bytes; the limit is 65,536 bytes; nothing of it was used"),
    "nested 5,000 levels deep": ("/signals/regulator-feed", b"[" * 5000 + b"]" * 5000, 400,
                                 "the body nests deeper than 32 levels; send one flat JSON object"),
    "an object nested 5,000 levels deep": ("/signals/regulator-feed", b'{"a":' * 5000 + b"1" + b"}" * 5000, 400,
                                           "the body nests deeper than 32 levels; send one flat JSON object"),
    "not an object": ("/signals/regulator-feed", b"[1, 2]", 422, "payload must be a JSON object, not a list"),
    "number for text": ("/signals/regulator-feed", json.dumps({**GOOD, "reference": 42}).encode(), 422,
                        "field 'reference' must be non-empty text, got 42"),
    "number for date": ("/signals/regulator-feed", json.dumps({**GOOD, "effective_date": 20261201}).encode(), 422,
                        "field 'effective_date' must be a date like 2026-09-30, got 20261201"),
    "unknown field": ("/signals/regulator-feed", json.dumps({**GOOD, "x": 1}).encode(), 422,
                      "unknown field(s) x; rule_changes accepts reference, regulator, title, effective_date"),
}


@pytest.mark.parametrize("name", ENDPOINT_CASES)
def test_the_endpoint_answers_exactly_audits_and_creates_nothing(endpoint, name: str) -> None:
    engine, server, secret = endpoint
    path, body, status, message = ENDPOINT_CASES[name]
    before = counts(engine)
    got = post(server, path, body, secret)
    assert got == (status, {"accepted": False, "message": message, "status": status})
    [entry] = audit_of(engine, "intake.refused")
    assert entry["entity_id"] == f"POST {path}"
    assert (entry["payload"]["status"], entry["payload"]["message"]) == (status, message)
    if status == 422:  # it reached the signal's own checks, which record their reason too
        assert [e["payload"]["reason"] for e in audit_of(engine, "signal.rejected")] == [message]
    assert counts(engine) == before
    # and the endpoint still takes a good signal afterwards
    ok_status, ok = post(server, "/signals/regulator-feed", json.dumps(GOOD).encode(), secret)
    assert (ok_status, ok["accepted"]) == (200, True), ok
    assert counts(engine)["runs"] == before["runs"] + 1
