"""Integration signals: a source delivers a payload; it lands in the source's register and fires the
definitions listening to that source.

A payload is checked before anything is written — known source, size, JSON object, required fields,
types — and a rejected one is recorded in the audit log with its reason, with nothing half-created.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from core.json_body import BadJson, read_json
from store.registers import Register, read_registers
from store.sources import read_source
from store.subjects import load_rows, record_trigger_event, to_jsonable

if TYPE_CHECKING:
    from engine.runtime import Engine
    from store.tx import Tx

MAX_PAYLOAD_BYTES = 64 * 1024


class SignalRejected(ValueError):
    pass


TYPE_WORDS: dict[str, str] = {"string": "text", "date": "date like 2026-09-30", "integer": "whole number",
                              "number": "number", "boolean": "true or false",
                              "timestamp": "time like 2026-09-30T14:00:00Z"}


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


def signal_fields(reg: Register) -> list[str]:
    """The fields a signal may carry: every declared one but the arrival time Runledger records."""
    received = reg.spec.signals.received_at if reg.spec.signals else None
    return [f for f in reg.fields if f != received and f != reg.key] + [reg.key]


def _typed(name: str, ftype: str, value: Any) -> Any:
    """A payload value as its field's type, or a refusal naming the field, the type and the value."""
    bad = SignalRejected(f"field '{name}' must be a {TYPE_WORDS[ftype]}, got {value!r}")
    if ftype == "date":
        if not isinstance(value, str) or len(value) != 10:  # text only: not the number 20261201
            raise bad
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise bad from None
    if ftype == "timestamp":
        try:
            t = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            t = None
        if t is None or t.tzinfo is None:
            raise bad
        return t
    if ftype == "integer" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if ftype == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if ftype == "boolean" and isinstance(value, bool):
        return value
    if ftype == "string":
        if not isinstance(value, str) or not value.strip():
            raise SignalRejected(f"field '{name}' must be non-empty {TYPE_WORDS[ftype]}, got {value!r}")
        _check_plain_text(name, value)
        return value
    raise bad


def validate_fields(reg: Register, payload: dict[str, Any]) -> dict[str, Any]:
    """The register row a payload stands for, checked against the register's declaration."""
    accepted = signal_fields(reg)
    shown = [f for f in accepted if f != reg.key]
    unknown = sorted(set(payload) - set(accepted))
    if unknown:
        raise SignalRejected(f"unknown field(s) {', '.join(unknown)}; {reg.kind} accepts {', '.join(shown)}")
    row: dict[str, Any] = {}
    for name in accepted:
        value = payload.get(name)
        if value is None:
            if name in reg.spec.required and name != reg.key:
                raise SignalRejected(f"field '{name}' is required ({TYPE_WORDS[reg.fields[name]]})")
            continue
        row[name] = _typed(name, reg.fields[name], value)
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
        with engine.ws.read() as conn:
            reg = read_registers(conn)[source["register"]]
        row = validate_fields(reg, payload)
    except SignalRejected as exc:
        with engine.ws.transaction() as tx:
            tx.audit(actor, "signal.rejected", "intake_source", source_id, {"reason": str(exc)})
        raise
    now = engine.clock.now()
    with engine.ws.transaction() as tx:
        subject_id = _signalled_subject(tx, reg, row, source_id, now)
        event_id = record_trigger_event(tx, kind="signal", event_type="signal.received", source=source_id,
                                        occurred_at=now, subject_kind=reg.kind, subject_id=subject_id,
                                        payload=to_jsonable(payload))
        tx.audit(actor, "signal.accepted", "trigger_event", event_id, {"subject": subject_id})
    if dispatch:
        engine.dispatch_events()
    return event_id


def _signalled_subject(tx: Tx, reg: Register, row: dict[str, Any], source_id: str, now: dt.datetime) -> str:
    """The register row a signal delivered, through the one load path: its key is the payload's, or the
    next number after the register's declared prefix (RC-00001, …); its arrival time is recorded."""
    spec = reg.spec.signals
    subject_id = row.get(reg.key)
    if subject_id is None:
        if spec is None:
            raise SignalRejected(f"field '{reg.key}' is required: {reg.kind} declares no key_prefix for signals")
        count = tx.conn.execute(sa.select(sa.func.count()).select_from(reg.table)).scalar_one()
        subject_id = f"{spec.key_prefix}{count + 1:05d}"
    full = {**row, reg.key: subject_id}
    if spec is not None and spec.received_at:
        full[spec.received_at] = now
    load_rows(tx, reg.kind, [full], origin="signal", source=source_id, actor=f"signal:{source_id}",
              raise_events=True, occurred_at=now, event_source=source_id)
    return str(subject_id)
