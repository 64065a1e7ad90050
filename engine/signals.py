"""Integration signals: a source delivers a payload; it lands in the source's register and fires the
definitions listening to that source.

A payload is checked before anything is written — known source, size, JSON object, required fields,
types — and a rejected one is recorded in the audit log with its reason, with nothing half-created.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any

from core.json_body import BadJson, read_json
from store.registers import REGISTERS, insert_signal_subject, record_trigger_event, to_jsonable
from store.sources import read_source

if TYPE_CHECKING:
    from engine.runtime import Engine

MAX_PAYLOAD_BYTES = 64 * 1024

# What each register accepts from a signal: field → (type, required).
SIGNAL_FIELDS: dict[str, dict[str, tuple[type, bool]]] = {
    "rule_changes": {"reference": (str, True), "regulator": (str, True), "title": (str, True),
                     "effective_date": (dt.date, False)},
}


class SignalRejected(ValueError):
    pass


TYPE_WORDS: dict[type, str] = {str: "text", dt.date: "date like 2026-09-30"}


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object that names a field twice is ambiguous (parsers keep either one): refuse it."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise SignalRejected(f"payload names the field '{key}' more than once; send each field once")
        seen[key] = value
    return seen


def parse_payload(raw: bytes | str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    data = raw.encode() if isinstance(raw, str) else raw
    if len(data) > MAX_PAYLOAD_BYTES:
        raise SignalRejected(f"payload is {len(data):,} bytes; the limit is {MAX_PAYLOAD_BYTES:,} bytes")
    try:
        value = read_json(data, "payload", object_pairs_hook=_no_repeated_keys)
    except BadJson as exc:
        raise SignalRejected(str(exc)) from None
    if not isinstance(value, dict):
        raise SignalRejected(f"payload must be a JSON object, not a {type(value).__name__}")
    return value


# C0 controls but tab, newline and carriage return; DEL; C1 controls: invisible, some drive terminals.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Bidirectional embeddings, overrides and isolates: they make text read other than its characters are.
_DIRECTION = re.compile(r"[\u202a-\u202e\u2066-\u2069]")


def _check_plain_text(name: str, value: str) -> None:
    """A register row is evidence: its text must show what it holds, the same on every page and export."""
    if (m := _CONTROL.search(value)) is not None:
        raise SignalRejected(f"field '{name}' holds a control character (U+{ord(m.group()):04X}) at position "
                             f"{m.start() + 1}; send plain text")
    if (m := _DIRECTION.search(value)) is not None:
        raise SignalRejected(f"field '{name}' holds a text-direction control (U+{ord(m.group()):04X}) at "
                             f"position {m.start() + 1}, which would show it other than it is; send plain text")


def validate_fields(register: str, payload: dict[str, Any]) -> dict[str, Any]:
    spec = SIGNAL_FIELDS[register]
    unknown = sorted(set(payload) - set(spec))
    if unknown:
        raise SignalRejected(f"unknown field(s) {', '.join(unknown)}; {register} accepts "
                             f"{', '.join(spec)}")
    row: dict[str, Any] = {}
    for name, (typ, required) in spec.items():
        value = payload.get(name)
        if value is None:
            if required:
                raise SignalRejected(f"field '{name}' is required ({TYPE_WORDS[typ]})")
            continue
        if typ is dt.date:
            try:  # text only: fromisoformat would also read the number 20261201 as a date
                if not isinstance(value, str) or len(value) != 10:
                    raise ValueError(value)
                value = dt.date.fromisoformat(value)
            except ValueError:
                raise SignalRejected(f"field '{name}' must be a date like 2026-09-30, got {value!r}") from None
        elif not isinstance(value, typ) or (isinstance(value, str) and not value.strip()):
            raise SignalRejected(f"field '{name}' must be non-empty {TYPE_WORDS[typ]}, got {value!r}")
        else:
            _check_plain_text(name, str(value))
        row[name] = value
    return row


def deliver_signal(engine: Engine, source_id: str, raw_payload: bytes | str | dict[str, Any],
                   dispatch: bool = True) -> str:
    """Accept a signal: one transaction records the register row and its trigger event."""
    actor = f"signal:{source_id}"
    try:
        with engine.ws.read() as conn:
            source = read_source(conn, source_id)
        if source is None:
            raise SignalRejected(f"unknown source {source_id!r}; register it first "
                                 "(an admin runs: python -m engine sources add NAME --register REGISTER --as ADMIN)")
        payload = parse_payload(raw_payload)
        row = validate_fields(source["register"], payload)
    except SignalRejected as exc:
        with engine.ws.transaction() as tx:
            tx.audit(actor, "signal.rejected", "intake_source", source_id, {"reason": str(exc)})
        raise
    reg = REGISTERS[source["register"]]
    now = engine.clock.now()
    with engine.ws.transaction() as tx:
        subject_id = insert_signal_subject(tx, reg.kind, row, now)
        event_id = record_trigger_event(tx, kind="signal", event_type="signal.received", source=source_id,
                                        occurred_at=now, subject_kind=reg.kind, subject_id=subject_id,
                                        payload=to_jsonable(payload))
        tx.audit(actor, "signal.accepted", "trigger_event", event_id, {"subject": subject_id})
    if dispatch:
        engine.dispatch_events()
    return event_id
