"""Subjects: the rows of the registers, and the one path every change to them takes.

A file import, a scheduled sync, an integration signal, a ``emit`` from the command line and the demo's
world all load rows the same way: staged in a temporary table, compared with the register in SQL, then —
in the caller's one transaction — added, changed or withdrawn, with each change kept in
``subject_changes``, the load itself in ``register_imports`` and the audit log, and one trigger event per
declared change it made (``merchant.suspended`` when ``status`` became ``suspended``). Nothing of a load
is half-applied: a refusal raises before anything is written, and a failure rolls the whole load back.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from core.states import EVENT
from store import schema as s
from store.bulk import append_columns, append_rows, same
from store.registers import UPDATED_AT, WITHDRAWN_AT, Register, read_registers
from store.rollups import add_events
from store.tx import Tx

_staged = itertools.count()
CHANGE_KINDS = ("added", "changed", "withdrawn", "restored")


class UnknownSubject(LookupError):
    pass


@dataclass
class LoadResult:
    """What a load did (what ``registers import`` prints and audits)."""

    import_id: str
    register: str
    rows: int = 0
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    withdrawn: int = 0
    refused: int = 0
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (event id, event type, subject id)

    def counts(self) -> dict[str, int]:
        return {"rows": self.rows, "added": self.added, "changed": self.changed, "unchanged": self.unchanged,
                "withdrawn": self.withdrawn, "refused": self.refused, "events": len(self.events)}


def to_jsonable(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v) for k, v in row.items()}


def new_import_id(tx: Tx) -> str:
    n = tx.conn.execute(sa.select(s.import_number.next_value())).scalar_one()
    return f"IMP-{n:07d}"


def staging_table(reg: Register) -> sa.Table:
    """A temporary table shaped like the register's fields (plus the file's row number, for messages)."""
    columns = [sa.Column(c.name, c.type) for c in reg.table.columns if c.name not in (UPDATED_AT, WITHDRAWN_AT)]
    return sa.Table(f"_staged_{reg.kind}_{next(_staged)}", sa.MetaData(), sa.Column("_row", sa.BigInteger),
                    *columns, prefixes=["TEMPORARY"])


def stage_rows(tx: Tx, reg: Register, rows: Sequence[Mapping[str, Any]]) -> sa.Table:
    """Rows given in Python (a signal, an emit, the demo's world) staged for ``apply_load``; every row must
    name the key, and the fields it names are the ones it sets (it may omit others)."""
    staged = staging_table(reg)
    staged.create(tx.conn)
    names = set(reg.fields)
    for r in rows:
        unknown = sorted(set(r) - names)
        if unknown:
            raise ValueError(f"{reg.kind} has no field {', '.join(unknown)} (fields: {', '.join(reg.fields)})")
    append_rows(tx, staged, [{"_row": i, **{f: r.get(f) for f in reg.fields}} for i, r in enumerate(rows, 1)])
    return staged


def _json_object(conn: sa.Connection, columns: Iterable[sa.ColumnElement[Any]], names: Iterable[str]) -> Any:
    """A JSON text of name → value, built by the database (a million rows never pass through Python)."""
    pairs = [x for name, col in zip(names, columns, strict=True) for x in (sa.literal(name), col)]
    fn = sa.func.json_object if conn.dialect.name == "duckdb" else sa.func.json_build_object
    return sa.cast(fn(*pairs), sa.Text)


def apply_load(tx: Tx, reg: Register, staged: sa.Table, *, origin: str, source: str, actor: str,
               mode: str = "upsert", only: Sequence[str] | None = None, raise_events: bool = True,
               event_source: str | None = None, occurred_at: dt.datetime | None = None,
               meta: Mapping[str, Any] | None = None, refused: int = 0,
               listed_keys: sa.Table | None = None) -> LoadResult:
    """Apply the staged rows to the register: the diff, the writes, the evidence and the events.

    ``only``: the fields the staged rows set (a signal or an emit names a few; a file names them all):
    others keep their values on changed rows. ``mode="replace"`` also withdraws keys the rows do not list
    (nor ``listed_keys``: keys the file listed on rows refused and left out, which are not withdrawn).
    """
    c, t, key = tx.conn, reg.table, reg.key
    at = occurred_at or tx.now()
    fields = [f for f in reg.fields if only is None or f in only or f == key]
    compared = [f for f in fields if f != key]
    on = t.c[key] == staged.c[key]
    differs = sa.or_(*(t.c[f].is_distinct_from(staged.c[f]) for f in compared)) if compared else sa.false()
    result = LoadResult(new_import_id(tx), reg.kind,
                        rows=int(c.execute(sa.select(sa.func.count()).select_from(staged)).scalar_one()),
                        refused=refused)
    # The register's key is unique because this is the one way rows get in (on DuckDB no constraint says so:
    # store.registers._create_register_table): rows that repeat a key are a caller's error, never written.
    repeated = c.execute(sa.select(staged.c[key]).group_by(staged.c[key]).having(sa.func.count() > 1)
                         .limit(1)).first()
    if repeated is not None:
        raise ValueError(f"the rows loaded into {reg.kind} repeat the key {repeated[0]!r}; each subject once")

    # --- what the load does, read before anything is written -------------------------------------------
    existing = sa.select(staged.c[key]).select_from(staged.join(t, on))
    added_q = sa.select(staged).where(~sa.exists().where(on))
    changed_q = (sa.select(staged.c[key]).select_from(staged.join(t, on))
                 .where(sa.or_(differs, t.c[WITHDRAWN_AT].is_not(None))))
    result.added = int(c.execute(sa.select(sa.func.count()).select_from(added_q.subquery())).scalar_one())
    result.changed = int(c.execute(sa.select(sa.func.count()).select_from(changed_q.subquery())).scalar_one())
    result.unchanged = int(c.execute(sa.select(sa.func.count()).select_from(existing.subquery())).scalar_one()) \
        - result.changed
    events = _raised_events(reg, staged, on, fields) if raise_events else []

    # --- the evidence of each change, then the changes ------------------------------------------------------
    changes = s.subject_changes
    if result.added:
        c.execute(changes.insert().from_select(
            ["import_id", "register_id", "subject_id", "change", "before", "after", "changed_at"],
            sa.select(sa.literal(result.import_id), sa.literal(reg.kind), sa.cast(staged.c[key], sa.String),
                      sa.literal("added"), sa.null(), _json_object(c, [staged.c[f] for f in fields], fields),
                      sa.literal(at, s.TS)).where(~sa.exists().where(on))))
    if result.changed:
        before = _json_object(c, [t.c[f] for f in compared], compared) if compared else sa.null()
        after = _json_object(c, [staged.c[f] for f in compared], compared) if compared else sa.null()
        kind = sa.case((t.c[WITHDRAWN_AT].is_not(None), "restored"), else_="changed")
        c.execute(changes.insert().from_select(
            ["import_id", "register_id", "subject_id", "change", "before", "after", "changed_at"],
            sa.select(sa.literal(result.import_id), sa.literal(reg.kind), sa.cast(staged.c[key], sa.String), kind,
                      before, after, sa.literal(at, s.TS)).select_from(staged.join(t, on))
            .where(sa.or_(differs, t.c[WITHDRAWN_AT].is_not(None)))))
    event_rows = _write_events(tx, reg, staged, on, events, event_source or f"{origin}:{source}", at,
                               result.import_id)
    result.events = event_rows
    if result.changed:
        c.execute(t.update().where(on, sa.or_(differs, t.c[WITHDRAWN_AT].is_not(None)))
                  .values(**{f: staged.c[f] for f in compared}, **{UPDATED_AT: at, WITHDRAWN_AT: None}))
    if result.added:
        c.execute(t.insert().from_select([*fields, UPDATED_AT], sa.select(
            *(staged.c[f] for f in fields), sa.literal(at, s.TS)).where(~sa.exists().where(on))))
    if mode == "replace":
        gone = sa.and_(t.c[WITHDRAWN_AT].is_(None), ~sa.exists().where(on))
        if listed_keys is not None:
            gone = sa.and_(gone, ~sa.exists().where(listed_keys.c.key == t.c[key]))
        result.withdrawn = int(c.execute(sa.select(sa.func.count()).select_from(t).where(gone)).scalar_one())
        if result.withdrawn:
            c.execute(changes.insert().from_select(
                ["import_id", "register_id", "subject_id", "change", "before", "after", "changed_at"],
                sa.select(sa.literal(result.import_id), sa.literal(reg.kind), sa.cast(t.c[key], sa.String),
                          sa.literal("withdrawn"), sa.null(), sa.null(), sa.literal(at, s.TS)).where(gone)))
            c.execute(t.update().where(gone).values(**{WITHDRAWN_AT: at, UPDATED_AT: at}))
    staged.drop(c)

    c.execute(s.register_imports.insert().values(
        import_id=result.import_id, register_id=reg.kind, register_version=reg.version, origin=origin,
        source=source, format=(meta or {}).get("format"), bytes=(meta or {}).get("bytes"),
        sha256=(meta or {}).get("sha256"), mode=mode, **{k: v for k, v in result.counts().items()},
        actor=actor, imported_at=at))
    tx.audit(actor, "register.imported", "register", reg.kind,
             {"import_id": result.import_id, "origin": origin, "source": source, "mode": mode,
              **result.counts(), **{k: v for k, v in (meta or {}).items() if v is not None}})
    return result


def _raised_events(reg: Register, staged: sa.Table, on: Any, fields: Sequence[str]) -> list[tuple[str, Any]]:
    """(event name, the rows' condition) for each declared change the staged rows make: the field takes
    the value it ``becomes`` where it did not hold it (a new row holding it counts)."""
    t, out = reg.table, []
    for name, ev in reg.spec.events.items():
        if ev.field not in fields:
            continue
        now_holds = staged.c[ev.field] == sa.literal(ev.becomes)
        before = sa.select(t.c[ev.field]).where(on).scalar_subquery()
        out.append((name, sa.and_(now_holds, sa.or_(~sa.exists().where(on),
                                                     before.is_distinct_from(sa.literal(ev.becomes))))))
    return out


def _write_events(tx: Tx, reg: Register, staged: sa.Table, on: Any, events: list[tuple[str, Any]],
                  source: str, at: dt.datetime, import_id: str) -> list[tuple[str, str, str]]:
    """One trigger event per raised change, ids from the event sequence in file order, each audited as
    recorded — written together (only the raising rows' keys pass through Python)."""
    out: list[tuple[str, str, str]] = []
    for name, cond in events:
        subject_ids = [str(k) for k in tx.conn.execute(sa.select(staged.c[reg.key]).where(cond)
                                                       .order_by(staged.c["_row"])).scalars()]
        if len(subject_ids) == 1:
            event_id = record_trigger_event(tx, kind=EVENT, event_type=name, source=source, occurred_at=at,
                                            subject_kind=reg.kind, subject_id=subject_ids[0],
                                            payload={"import_id": import_id, "register": reg.kind})
            out.append((event_id, name, subject_ids[0]))
        elif subject_ids:
            ids = record_trigger_events(tx, event_type=name, source=source, occurred_at=at, subject_kind=reg.kind,
                                        subject_ids=subject_ids,
                                        payload={"import_id": import_id, "register": reg.kind})
            out += [(event_id, name, subject_id) for event_id, subject_id in zip(ids, subject_ids, strict=True)]
    return out


# --- trigger events ------------------------------------------------------------------------------------
def new_event_id(tx: Tx) -> str:
    n = tx.conn.execute(sa.select(s.event_number.next_value())).scalar_one()
    return f"EV-{n:07d}"


def record_trigger_event(tx: Tx, *, kind: str, event_type: str, source: str, occurred_at: dt.datetime,
                         subject_kind: str | None = None, subject_id: str | None = None,
                         definition_id: str | None = None, payload: dict[str, Any] | None = None,
                         event_id: str | None = None) -> str:
    """Append a trigger event; the dispatcher turns it into runs. Returns its id."""
    event_id = event_id or new_event_id(tx)
    _append_event(tx, False, event_id=event_id, kind=kind, event_type=event_type, source=source,
                  subject_kind=subject_kind, subject_id=subject_id, definition_id=definition_id,
                  occurred_at=occurred_at, payload=payload)
    return event_id


def record_trigger_event_once(tx: Tx, *, event_id: str, kind: str, event_type: str, source: str,
                              occurred_at: dt.datetime, definition_id: str) -> bool:
    """A trigger event with a given id (one cron occurrence of one definition), recorded only if no process
    recorded it already: False if it exists. On PostgreSQL, schedulers on several hosts may fire the same
    occurrence at the same moment: the insert yields to the one that committed first (``ON CONFLICT DO
    NOTHING`` waits for it), so the occurrence is one event and one run."""
    if tx.conn.execute(sa.select(s.trigger_events.c.event_id).where(s.trigger_events.c.event_id == event_id)).first():
        return False
    return _append_event(tx, True, event_id=event_id, kind=kind, event_type=event_type, source=source,
                         subject_kind=None, subject_id=None, definition_id=definition_id, occurred_at=occurred_at,
                         payload=None)


def _append_event(tx: Tx, once: bool, *, event_id: str, kind: str, event_type: str, source: str,
                  subject_kind: str | None, subject_id: str | None, definition_id: str | None,
                  occurred_at: dt.datetime, payload: dict[str, Any] | None) -> bool:
    """Insert the event and audit it; ``once``: unless another process inserted it first (PostgreSQL; one
    process holds a DuckDB file, where the caller's read decides). Returns whether it was inserted."""
    values = dict(event_id=event_id, kind=kind, event_type=event_type, source=source, subject_kind=subject_kind,
                  subject_id=subject_id, definition_id=definition_id, occurred_at=occurred_at,
                  received_at=tx.now(), payload=json.dumps(payload or {}, default=str, sort_keys=True),
                  dispatched_at=None)
    if once and tx.conn.dialect.name != "duckdb":
        from sqlalchemy.dialects.postgresql import insert

        inserted = tx.conn.execute(insert(s.trigger_events).values(**values).on_conflict_do_nothing(
            index_elements=["event_id"]).returning(s.trigger_events.c.event_id)).first()
        if inserted is None:
            return False
    else:
        tx.conn.execute(s.trigger_events.insert().values(**values))
    add_events(tx, kind, event_type, source, occurred_at, 1)  # the analytics' count (store/rollups.py)
    tx.audit(f"source:{source}", "trigger_event.recorded", "trigger_event", event_id,
             {"kind": kind, "event_type": event_type, "subject": f"{subject_kind}:{subject_id}"
              if subject_kind else None, "occurred_at": occurred_at.isoformat()})
    return True


def new_event_ids(tx: Tx, n: int) -> list[str]:
    """``n`` event ids from the event sequence, in increasing order (one statement)."""
    rows = "range(:n)" if tx.conn.dialect.name == "duckdb" else "generate_series(1, :n)"
    numbers = sorted(tx.conn.execute(sa.text(f"SELECT nextval('{s.event_number.name}') FROM {rows}"),
                                     {"n": n}).scalars())
    return [f"EV-{k:07d}" for k in numbers]


def record_trigger_events(tx: Tx, *, event_type: str, source: str, occurred_at: dt.datetime, subject_kind: str,
                          subject_ids: Sequence[str], payload: dict[str, Any]) -> list[str]:
    """Many events of one type, one per subject, as ``record_trigger_event`` records each: ids in the
    subjects' order, each audited as recorded."""
    event_ids = new_event_ids(tx, len(subject_ids))
    append_columns(tx, s.trigger_events, {
        "event_id": event_ids, "kind": same(EVENT), "event_type": same(event_type), "source": same(source),
        "subject_kind": same(subject_kind), "subject_id": list(subject_ids), "definition_id": same(None),
        "occurred_at": same(occurred_at), "received_at": same(tx.now()),
        "payload": same(json.dumps(payload, default=str, sort_keys=True)), "dispatched_at": same(None)})
    add_events(tx, EVENT, event_type, source, occurred_at, len(event_ids))
    at = occurred_at.isoformat()
    tx.audit_many(f"source:{source}", "trigger_event", [
        ("trigger_event.recorded", event_id, {"kind": EVENT, "event_type": event_type,
                                              "subject": f"{subject_kind}:{subject_id}", "occurred_at": at})
        for event_id, subject_id in zip(event_ids, subject_ids, strict=True)])
    return event_ids


# --- the few-rows paths: seed, emit, signal ---------------------------------------------------------
def load_rows(tx: Tx, kind: str, rows: Sequence[Mapping[str, Any]], *, origin: str, source: str, actor: str,
              raise_events: bool = True, occurred_at: dt.datetime | None = None,
              event_source: str | None = None) -> LoadResult:
    """Rows given in Python through the one load path (each row sets the fields it names)."""
    reg = read_registers(tx.conn)[kind]
    named = sorted({f for r in rows for f in r})
    staged = stage_rows(tx, reg, rows)
    return apply_load(tx, reg, staged, origin=origin, source=source, actor=actor, only=named,
                      raise_events=raise_events, occurred_at=occurred_at, event_source=event_source)


def insert_subjects(tx: Tx, kind: str, rows: Sequence[Mapping[str, Any]], actor: str = "engine:registers",
                    raise_events: bool = False) -> LoadResult | None:
    """Add register rows (a seed, a test's world): loaded and recorded, by default without raising events."""
    if not rows:
        return None
    return load_rows(tx, kind, rows, origin="seed", source=kind, actor=actor, raise_events=raise_events)


def read_subject(conn: sa.Connection, kind: str, subject_id: str) -> dict[str, Any] | None:
    reg = read_registers(conn)[kind]
    row = conn.execute(sa.select(reg.table).where(reg.table.c[reg.key] == subject_id)).mappings().first()
    return dict(row) if row else None


def emit_change(tx: Tx, event_type: str, subject_id: str, source: str, actor: str,
                occurred_at: dt.datetime | None = None) -> str:
    """Make a declared change by hand (``emit incident.closed --subject INC-701``): the field becomes its
    value through the load path, which records the change and raises the event; returns the event's id."""
    registers = read_registers(tx.conn)
    if event_type not in registers.events:
        raise KeyError(f"unknown event type {event_type!r}; known: {', '.join(sorted(registers.events))}")
    reg, ev = registers.events[event_type]
    if read_subject(tx.conn, reg.kind, subject_id) is None:
        raise UnknownSubject(f"{reg.kind} has no record {subject_id!r}; nothing was changed.")
    result = load_rows(tx, reg.kind, [{reg.key: subject_id, ev.field: ev.becomes}], origin="emit", source=source,
                       actor=actor, occurred_at=occurred_at, event_source=source)
    raised = [e for e in result.events if e[1] == event_type]
    if not raised:
        raise UnknownSubject(f"{reg.kind} {subject_id!r} already has {ev.field} = {ev.becomes!r}: nothing "
                             "changed, so no event was raised.")
    return raised[0][0]
