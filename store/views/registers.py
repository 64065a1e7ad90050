"""What the Registers page and ``registers list``/``show`` read: each declared register with its row count and
last import, its versions, its imports (each with its file's hash), and a page of its subjects."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from store import schema as s
from store.registers import UPDATED_AT, WITHDRAWN_AT, Register, count_subjects, read_registers

SUBJECT_PAGE = 200  # subjects shown at a time on the page


def read_last_imports(conn: sa.Connection) -> dict[str, dict[str, Any]]:
    """Register id → its latest import (by time, then id: imports within one second stay ordered)."""
    c = s.register_imports.c
    ranked = (sa.select(s.register_imports, sa.func.row_number().over(
        partition_by=c.register_id, order_by=(c.imported_at.desc(), c.import_id.desc())).label("_rank"))
        .subquery())
    q = sa.select(*[col for col in ranked.c if col.name != "_rank"]).where(ranked.c._rank == 1)
    return {r["register_id"]: dict(r) for r in conn.execute(q).mappings()}


def read_register_summaries(conn: sa.Connection) -> list[dict[str, Any]]:
    """One row per declared register: declaration, version, subjects (and withdrawn), last import."""
    last = read_last_imports(conn)
    out = []
    for reg in read_registers(conn).values():
        if not reg.declared:
            continue
        total, withdrawn = count_subjects(conn, reg)
        out.append({"register": reg, "id": reg.kind, "title": reg.spec.title, "version": reg.version,
                    "fields": len(reg.fields), "subjects": total - withdrawn, "withdrawn": withdrawn,
                    "last_import": last.get(reg.kind)})
    return out


def read_register_versions_of(conn: sa.Connection, register_id: str) -> list[dict[str, Any]]:
    c = s.register_versions.c
    q = (sa.select(c.version, c.content_hash, c.authored_by, c.created_at)
         .where(c.register_id == register_id).order_by(c.version.desc()))
    return [dict(r) for r in conn.execute(q).mappings()]


def read_imports_of(conn: sa.Connection, register_id: str, limit: int = 50) -> list[dict[str, Any]]:
    c = s.register_imports.c
    q = (sa.select(s.register_imports).where(c.register_id == register_id)
         .order_by(c.imported_at.desc(), c.import_id.desc()).limit(limit))
    return [dict(r) for r in conn.execute(q).mappings()]


def read_subjects_page(conn: sa.Connection, reg: Register, *, offset: int = 0, limit: int = SUBJECT_PAGE,
                       include_withdrawn: bool = True) -> list[dict[str, Any]]:
    """A page of the register's subjects by key, each with when it was last loaded and whether withdrawn."""
    t = reg.table
    q = sa.select(t).order_by(t.c[reg.key]).offset(offset).limit(limit)
    if not include_withdrawn:
        q = q.where(reg.active())
    rows = []
    for r in conn.execute(q).mappings():
        row = dict(r)
        row["loaded_at"], row["withdrawn_at"] = row.pop(UPDATED_AT), row.pop(WITHDRAWN_AT)
        rows.append(row)
    return rows


def read_import_of_run(conn: sa.Connection, run_id: str) -> dict[str, Any] | None:
    """The load a scheduled import's run made (named in its ``run.matched`` audit entry), if it loaded."""
    payload = conn.execute(sa.select(s.audit_log.c.payload).where(
        s.audit_log.c.entity_kind == "run", s.audit_log.c.entity_id == run_id,
        s.audit_log.c.event == "run.matched")).scalar()
    import_id = json.loads(payload).get("import_id") if payload else None
    if not import_id:
        return None
    row = conn.execute(sa.select(s.register_imports).where(s.register_imports.c.import_id == import_id)
                       ).mappings().first()
    return dict(row) if row else None
