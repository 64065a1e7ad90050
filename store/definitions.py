"""Definition versions: each distinct content is a new version; a run pins the version it ran."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from store.schema import definition_rejections, definition_versions, definitions
from store.tx import Tx


@dataclass(frozen=True)
class StoredVersion:
    definition_id: str
    version: int
    content_hash: str
    content: str
    authored_by: str


def save_definition_version(tx: Tx, *, definition_id: str, title: str, trigger_kind: str, enabled: bool,
                            content: str, content_hash: str, source_path: str, actor: str) -> int | None:
    """Record ``content`` as a new version if it differs from the latest; return the new number."""
    c = tx.conn
    current = c.execute(sa.select(definitions).where(definitions.c.definition_id == definition_id)).first()
    if current is not None:
        latest_hash = c.execute(sa.select(definition_versions.c.content_hash).where(
            definition_versions.c.definition_id == definition_id,
            definition_versions.c.version == current.latest_version)).scalar_one()
        if latest_hash == content_hash:
            return None
    version = 1 if current is None else current.latest_version + 1
    now = tx.now()
    c.execute(definition_versions.insert().values(
        definition_id=definition_id, version=version, content_hash=content_hash, content=content,
        authored_by=actor, created_at=now))
    values = dict(title=title, latest_version=version, source_path=source_path,
                  trigger_kind=trigger_kind, updated_at=now)
    if current is None:
        c.execute(definitions.insert().values(definition_id=definition_id, enabled=enabled, **values))
    else:
        c.execute(definitions.update().where(definitions.c.definition_id == definition_id).values(**values))
    tx.audit(actor, "definition.versioned", "definition", definition_id,
             {"version": version, "content_hash": content_hash, "source_path": source_path})
    return version


def record_definition_rejection(tx: Tx, source_path: str, content_hash: str, errors: list[str],
                                actor: str) -> bool:
    """Remember a rejected file content once (audited once), however often it is re-read."""
    seen = tx.conn.execute(sa.select(definition_rejections.c.source_path).where(
        definition_rejections.c.source_path == source_path,
        definition_rejections.c.content_hash == content_hash)).first()
    if seen:
        return False
    tx.conn.execute(definition_rejections.insert().values(
        source_path=source_path, content_hash=content_hash, errors=json.dumps(errors), rejected_at=tx.now()))
    tx.audit(actor, "definition.rejected", "definition_file", source_path,
             {"content_hash": content_hash, "errors": errors})
    return True


def set_definition_enabled(tx: Tx, definition_id: str, enabled: bool, actor: str) -> None:
    res = tx.conn.execute(definitions.update().where(definitions.c.definition_id == definition_id)
                          .values(enabled=enabled, updated_at=tx.now()))
    if res.rowcount != 1:
        raise LookupError(f"no automation {definition_id!r}")
    tx.audit(actor, "definition.enabled" if enabled else "definition.disabled", "definition", definition_id)


def read_definition_version(conn: sa.Connection, definition_id: str, version: int) -> StoredVersion | None:
    r = conn.execute(sa.select(definition_versions).where(
        definition_versions.c.definition_id == definition_id,
        definition_versions.c.version == version)).first()
    return None if r is None else StoredVersion(r.definition_id, r.version, r.content_hash, r.content,
                                                r.authored_by)


def read_definitions(conn: sa.Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(sa.select(definitions).order_by(definitions.c.definition_id))
            .mappings()]


def read_definition_versions(conn: sa.Connection, definition_id: str) -> list[StoredVersion]:
    rows = conn.execute(sa.select(definition_versions).where(
        definition_versions.c.definition_id == definition_id).order_by(definition_versions.c.version)).all()
    return [StoredVersion(r.definition_id, r.version, r.content_hash, r.content, r.authored_by) for r in rows]


def read_definition_rejections(conn: sa.Connection, limit: int = 50) -> list[dict[str, Any]]:
    """Definition files the loader refused, newest first, with their errors."""
    from store.schema import definition_rejections
    q = sa.select(definition_rejections).order_by(definition_rejections.c.rejected_at.desc()).limit(limit)
    return [dict(r) for r in conn.execute(q).mappings()]
