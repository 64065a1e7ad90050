"""Registers as tables: each declared register (core/registers.py) becomes a table of its own, with its
declaration versioned beside it; Runledger's own records (findings, evidence requests, …) are registers too,
built in, so a condition reads both alike.

A register's table has the declared fields, typed, and two columns of Runledger's: ``_updated_at`` (when a
load last wrote the row) and ``_withdrawn_at`` (set when a replacing import no longer lists the key: the row
is kept as evidence, never matched again). A changed declaration may only add fields; anything else is
refused with a sentence and the old declaration keeps working.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from core.registers import RegisterSpec, compare_registers, parse_register
from store import schema as s
from store.tx import Tx

UPDATED_AT, WITHDRAWN_AT = "_updated_at", "_withdrawn_at"
SQL_TYPES: dict[str, Any] = {"string": sa.String, "integer": sa.BigInteger, "number": sa.Float,
                             "boolean": sa.Boolean, "date": sa.Date, "timestamp": sa.DateTime(timezone=True)}
RECORD_TABLES = {"findings": s.findings, "evidence_requests": s.evidence_requests, "assessments": s.assessments,
                 "lifecycle_instances": s.lifecycle_instances}
# Names a register may not take: Runledger's own tables (and the record modules, built in).
RESERVED = frozenset(s.metadata.tables)


class RegisterRefused(ValueError):
    """A register declaration the workspace cannot take (an incompatible change); the message says what
    to do, and the declaration in effect is unchanged."""


class UnknownRegister(LookupError):
    pass


def _type_name(col: sa.Column[Any]) -> str:
    t = col.type
    return ("timestamp" if isinstance(t, sa.DateTime) else "date" if isinstance(t, sa.Date)
            else "integer" if isinstance(t, sa.Integer) else "boolean" if isinstance(t, sa.Boolean)
            else "number" if isinstance(t, sa.Float) else "string")


@dataclass(frozen=True)
class Register:
    """A register as the store reads and writes it: its declaration and its table."""

    spec: RegisterSpec
    table: sa.Table
    version: int = 0  # 0: built in

    @property
    def kind(self) -> str:
        return self.spec.id

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def fields(self) -> Mapping[str, str]:
        return self.spec.fields

    @property
    def declared(self) -> bool:
        return not self.spec.builtin

    def active(self) -> sa.ColumnElement[bool]:
        """Rows that are still subjects (not withdrawn by a replacing import)."""
        return self.table.c[WITHDRAWN_AT].is_(None) if self.declared else sa.true()


@dataclass
class Registers(Mapping[str, Register]):
    """Every register of a workspace by id (declared ones first, in the order declared), and the watched
    changes their declarations name."""

    by_id: dict[str, Register] = field(default_factory=dict)

    def __getitem__(self, kind: str) -> Register:
        try:
            return self.by_id[kind]
        except KeyError:
            known = ", ".join(self.by_id) or "none"
            raise UnknownRegister(f"there is no register {kind!r} in this workspace (registers: {known})") \
                from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.by_id)

    def __contains__(self, kind: object) -> bool:
        return kind in self.by_id

    def __len__(self) -> int:
        return len(self.by_id)

    @property
    def events(self) -> dict[str, tuple[Register, Any]]:
        """Event type → (its register, its declared change)."""
        return {name: (reg, ev) for reg in self.by_id.values() for name, ev in reg.spec.events.items()}


def _builtin(kind: str, table: sa.Table) -> Register:
    key = next(c.name for c in table.columns if c.primary_key)
    spec = RegisterSpec(kind, kind.replace("_", " ").capitalize(), key, "title",
                        {c.name: _type_name(c) for c in table.columns}, builtin=True)
    return Register(spec, table)


BUILTIN = {kind: _builtin(kind, t) for kind, t in RECORD_TABLES.items()}

_tables: dict[tuple[str, str], sa.Table] = {}  # (register, content hash) → its table, built once a process
_specs: dict[str, RegisterSpec] = {}  # content hash → parsed declaration
_lock = threading.Lock()


def table_for(spec: RegisterSpec) -> sa.Table:
    """The SQLAlchemy table of a declared register (its own MetaData: the declarations change at run time)."""
    with _lock:
        table = _tables.get((spec.id, spec.content_hash))
        if table is None:
            columns = [sa.Column(name, SQL_TYPES[ftype], primary_key=name == spec.key)
                       for name, ftype in spec.fields.items()]
            table = sa.Table(spec.id, sa.MetaData(), *columns, sa.Column(UPDATED_AT, s.TS, nullable=False),
                             sa.Column(WITHDRAWN_AT, s.TS))
            _tables[(spec.id, spec.content_hash)] = table
        return table


def _spec(content: str, content_hash: str, where: str) -> RegisterSpec:
    with _lock:
        spec = _specs.get(content_hash)
    if spec is None:
        spec = parse_register(content, where, RESERVED)
        with _lock:
            _specs[content_hash] = spec
    return spec


def read_registers(conn: sa.Connection) -> Registers:
    """The workspace's registers at their latest declared versions, then the built-in records."""
    q = (sa.select(s.register_versions.c.register_id, s.register_versions.c.version,
                   s.register_versions.c.content, s.register_versions.c.content_hash)
         .join(s.registers, sa.and_(s.registers.c.register_id == s.register_versions.c.register_id,
                                    s.registers.c.latest_version == s.register_versions.c.version))
         .order_by(s.register_versions.c.register_id))
    out = Registers()
    for r in conn.execute(q):
        spec = _spec(r.content, r.content_hash, f"{r.register_id}@v{r.version}")
        out.by_id[r.register_id] = Register(spec, table_for(spec), r.version)
    out.by_id.update(BUILTIN)
    return out


def _existing_columns(conn: sa.Connection, table: str) -> set[str] | None:
    if not sa.inspect(conn).has_table(table):
        return None
    return set(conn.execute(sa.text(f'SELECT * FROM "{table}" LIMIT 0')).keys())


def _create_register_table(conn: sa.Connection, table: sa.Table) -> None:
    """A declared register's table. On DuckDB its key is NOT NULL but not a PRIMARY KEY: DuckDB keeps a key's
    index in memory, whole, and within one transaction (an import is one) cannot spill it, so a register of
    ten million subjects would need gigabytes to import (bench/RESULTS.md, "A 1 GB register file"). Keys stay
    unique by the one load path, which refuses a load whose rows repeat a key and inserts only keys the
    table does not hold (``store.subjects.apply_load``)."""
    if conn.dialect.name != "duckdb":
        table.create(conn)
        return
    plain = sa.Table(table.name, sa.MetaData(), *(
        sa.Column(col.name, col.type, nullable=col.nullable and not col.primary_key) for col in table.columns))
    plain.create(conn)


def save_register_version(tx: Tx, spec: RegisterSpec, source_path: str, actor: str) -> int | None:
    """Take a declaration: a new register gets its table, a changed one the fields it adds; returns the new
    version (None when the content is the version in effect). An incompatible change raises
    ``RegisterRefused`` naming each problem and what to do."""
    c = tx.conn
    current = c.execute(sa.select(s.registers).where(s.registers.c.register_id == spec.id)).first()
    old: RegisterSpec | None = None
    if current is not None:
        latest = c.execute(sa.select(s.register_versions.c.content, s.register_versions.c.content_hash).where(
            s.register_versions.c.register_id == spec.id,
            s.register_versions.c.version == current.latest_version)).one()
        if latest.content_hash == spec.content_hash:
            return None
        old = _spec(latest.content, latest.content_hash, f"{spec.id}@v{current.latest_version}")
        change = compare_registers(old, spec)
        if change.refused:
            raise RegisterRefused(f"{source_path}: the change to register {spec.id} is refused, and version "
                                  f"{current.latest_version} stays in effect: " + "; ".join(change.refused))
    table = table_for(spec)
    have = _existing_columns(c, spec.id)
    if have is None:
        _create_register_table(c, table)
    else:  # a new declaration of a table that exists (an upgraded workspace), or fields added
        for column in table.columns:
            if column.name not in have:
                ddl = column.type.compile(dialect=c.dialect)
                c.exec_driver_sql(f'ALTER TABLE "{spec.id}" ADD COLUMN "{column.name}" {ddl}')
    version = 1 if current is None else current.latest_version + 1
    now = tx.now()
    c.execute(s.register_versions.insert().values(register_id=spec.id, version=version,
                                                  content_hash=spec.content_hash, content=spec.content,
                                                  authored_by=actor, created_at=now))
    values = dict(title=spec.title, latest_version=version, source_path=source_path, updated_at=now)
    if current is None:
        c.execute(s.registers.insert().values(register_id=spec.id, **values))
    else:
        c.execute(s.registers.update().where(s.registers.c.register_id == spec.id).values(**values))
    added = [f for f in spec.fields if old is not None and f not in old.fields]
    tx.audit(actor, "register.versioned", "register", spec.id,
             {"version": version, "content_hash": spec.content_hash, "source_path": source_path,
              "fields": dict(spec.fields), "added_fields": added, "events": sorted(spec.events)})
    return version


def record_register_rejection(tx: Tx, source_path: str, content_hash: str, errors: list[str], actor: str) -> bool:
    """Remember a rejected register file content once (audited once), however often it is re-read."""
    seen = tx.conn.execute(sa.select(s.register_rejections.c.source_path).where(
        s.register_rejections.c.source_path == source_path,
        s.register_rejections.c.content_hash == content_hash)).first()
    if seen:
        return False
    tx.conn.execute(s.register_rejections.insert().values(
        source_path=source_path, content_hash=content_hash, errors=json.dumps(errors), rejected_at=tx.now()))
    tx.audit(actor, "register.rejected", "register_file", source_path, {"content_hash": content_hash,
                                                                         "errors": errors})
    return True


def read_register_rejections(conn: sa.Connection, limit: int = 50) -> list[dict[str, Any]]:
    q = sa.select(s.register_rejections).order_by(s.register_rejections.c.rejected_at.desc()).limit(limit)
    return [dict(r) | {"errors": "\n".join(json.loads(r.errors))} for r in conn.execute(q)]


def count_subjects(conn: sa.Connection, reg: Register) -> tuple[int, int]:
    """(subjects, of them withdrawn)."""
    withdrawn = sa.func.count().filter(reg.table.c[WITHDRAWN_AT].is_not(None)) if reg.declared else sa.literal(0)
    total, gone = conn.execute(sa.select(sa.func.count(), withdrawn).select_from(reg.table)).one()
    return int(total), int(gone)
