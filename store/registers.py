"""The workspace's registers — the subjects automations act on — and the changes that raise events.

A register is described from its table (fields and their types), so a definition's condition and
parameter templates are validated against the real columns, not a list kept by hand. Every change made
through this module records a trigger event in the same transaction: that is how an event-triggered
automation learns "an incident closed" with no polling of the registers themselves.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from store import schema as s
from store.bulk import append_rows
from store.tx import Tx


@dataclass(frozen=True)
class Register:
    kind: str
    table: sa.Table
    key: str
    label: str

    @property
    def fields(self) -> dict[str, str]:
        """Field name → type name (``string``, ``date``, ``timestamp``, ``integer``, ``boolean``)."""
        out: dict[str, str] = {}
        for col in self.table.columns:
            t = col.type
            out[col.name] = ("timestamp" if isinstance(t, sa.DateTime) else "date" if isinstance(t, sa.Date)
                             else "integer" if isinstance(t, sa.Integer) else "boolean"
                             if isinstance(t, sa.Boolean) else "string")
        return out


REGISTERS: dict[str, Register] = {r.kind: r for r in (
    Register("accounts", s.accounts, "account_id", "name"),
    Register("suppliers", s.suppliers, "supplier_id", "name"),
    Register("incidents", s.incidents, "incident_id", "title"),
    Register("incident_reviews", s.incident_reviews, "review_id", "review_id"),
    Register("exceptions", s.exceptions, "exception_id", "title"),
    Register("aml_monitor_results", s.aml_monitor_results, "result_id", "monitor"),
    Register("rule_changes", s.rule_changes, "rule_change_id", "title"),
    Register("findings", s.findings, "finding_id", "title"),
    Register("evidence_requests", s.evidence_requests, "request_id", "title"),
    Register("assessments", s.assessments, "assessment_id", "title"),
    Register("lifecycle_instances", s.lifecycle_instances, "instance_id", "title"),
)}

# The record changes that raise events, and what each one does to its register.
EVENT_TYPES: dict[str, tuple[str, dict[str, Any]]] = {
    "incident.closed": ("incidents", {"status": "closed"}),
    "exception.closed": ("exceptions", {"status": "closed"}),
    "account.deactivated": ("accounts", {"status": "inactive"}),
    "aml_monitor_result.failed": ("aml_monitor_results", {"result": "failed"}),
}


def to_jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v) for k, v in row.items()}


def new_event_id(tx: Tx) -> str:
    n = tx.conn.execute(sa.select(s.event_number.next_value())).scalar_one()
    return f"EV-{n:07d}"


def record_trigger_event(tx: Tx, *, kind: str, event_type: str, source: str, occurred_at: dt.datetime,
                         subject_kind: str | None = None, subject_id: str | None = None,
                         definition_id: str | None = None, payload: dict[str, Any] | None = None,
                         event_id: str | None = None) -> str:
    """Append a trigger event; the dispatcher turns it into runs. Returns its id."""
    event_id = event_id or new_event_id(tx)
    tx.conn.execute(s.trigger_events.insert().values(
        event_id=event_id, kind=kind, event_type=event_type, source=source, subject_kind=subject_kind,
        subject_id=subject_id, definition_id=definition_id, occurred_at=occurred_at,
        received_at=tx.now(), payload=json.dumps(payload or {}, default=str, sort_keys=True),
        dispatched_at=None))
    tx.audit(f"source:{source}", "trigger_event.recorded", "trigger_event", event_id,
             {"kind": kind, "event_type": event_type, "subject": f"{subject_kind}:{subject_id}"
              if subject_kind else None, "occurred_at": occurred_at.isoformat()})
    return event_id


def insert_subjects(tx: Tx, kind: str, rows: list[dict[str, Any]]) -> None:
    """Seed or add register rows (no event: creation is not one of the watched changes)."""
    if rows:
        reg = REGISTERS[kind]
        now = tx.now()
        append_rows(tx, reg.table, [{"updated_at": now, **r} for r in rows])
        tx.audit("engine:registers", "subjects.added", kind, f"{len(rows)} rows",
                 {"ids": [r[reg.key] for r in rows][:50], "count": len(rows)})


def read_subject(conn: sa.Connection, kind: str, subject_id: str) -> dict[str, Any] | None:
    reg = REGISTERS[kind]
    row = conn.execute(sa.select(reg.table).where(reg.table.c[reg.key] == subject_id)).mappings().first()
    return dict(row) if row else None


class UnknownSubject(LookupError):
    pass


def change_subject(tx: Tx, event_type: str, subject_id: str, source: str, actor: str,
                   extra: dict[str, Any] | None = None, occurred_at: dt.datetime | None = None) -> str:
    """Apply a watched change (close an incident, …) and record its event, in one transaction."""
    if event_type not in EVENT_TYPES:
        raise KeyError(f"unknown event type {event_type!r}; known: {', '.join(sorted(EVENT_TYPES))}")
    kind, values = EVENT_TYPES[event_type]
    reg = REGISTERS[kind]
    at = occurred_at or tx.now()
    values = dict(values)
    if "closed_at" in reg.table.c:
        values["closed_at"] = at
    values.update(extra or {})
    values["updated_at"] = at
    res = tx.conn.execute(reg.table.update().where(reg.table.c[reg.key] == subject_id).values(**values))
    if res.rowcount != 1:
        raise UnknownSubject(f"{kind} has no record {subject_id!r}; nothing was changed.")
    tx.audit(actor, f"{kind.rstrip('s')}.changed", kind, subject_id, to_jsonable(values))
    return record_trigger_event(tx, kind="event", event_type=event_type, source=source,
                                occurred_at=at, subject_kind=kind, subject_id=subject_id,
                                payload=to_jsonable(values))


def add_subject_with_event(tx: Tx, event_type: str, row: dict[str, Any], source: str, actor: str,
                           occurred_at: dt.datetime | None = None) -> str:
    """Create a record whose creation is itself the event (an AML monitor result that failed)."""
    kind, _ = EVENT_TYPES[event_type]
    reg = REGISTERS[kind]
    at = occurred_at or tx.now()
    tx.conn.execute(reg.table.insert().values(updated_at=at, **row))
    tx.audit(actor, f"{kind.rstrip('s')}.recorded", kind, row[reg.key], to_jsonable(row))
    return record_trigger_event(tx, kind="event", event_type=event_type, source=source, occurred_at=at,
                                subject_kind=kind, subject_id=row[reg.key], payload=to_jsonable(row))


def insert_signal_subject(tx: Tx, kind: str, fields: dict[str, Any], received_at: dt.datetime) -> str:
    """Add the register row a signal delivered; its id is the next in that register."""
    reg = REGISTERS[kind]
    count = tx.conn.execute(sa.select(sa.func.count()).select_from(reg.table)).scalar_one()
    subject_id = f"RC-{count + 1:05d}"
    tx.conn.execute(reg.table.insert().values(**{reg.key: subject_id, "received_at": received_at,
                                                 "updated_at": received_at, **fields}))
    return subject_id
