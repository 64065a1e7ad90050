"""Integration declarations as versions: each distinct content of an integration's YAML is a version,
audited when taken, so the evidence can always say where a webhook posted or which server sent a message
at the time. A declaration holds no secret (``core.integrations`` refuses one), so keeping it is safe."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from store.schema import integration_versions as iv
from store.tx import Tx


def save_integration_version(tx: Tx, *, integration_id: str, kind: str, content: str, content_hash: str,
                             source_path: str, described: str, actor: str) -> int | None:
    """Record ``content`` as a new version if it differs from the latest; return the new number."""
    latest = tx.conn.execute(sa.select(iv.c.version, iv.c.content_hash).where(iv.c.integration_id == integration_id)
                             .order_by(iv.c.version.desc()).limit(1)).first()
    if latest is not None and latest.content_hash == content_hash:
        return None
    version = 1 if latest is None else latest.version + 1
    tx.conn.execute(iv.insert().values(integration_id=integration_id, version=version, kind=kind,
                                       content_hash=content_hash, content=content, source_path=source_path,
                                       authored_by=actor, created_at=tx.now()))
    tx.audit(actor, "integration.versioned", "integration", integration_id,
             {"version": version, "kind": kind, "content_hash": content_hash, "source_path": source_path,
              "described": described})
    return version


def read_integration_declarations(conn: sa.Connection) -> list[dict[str, Any]]:
    """The latest version of every integration the workspace has taken: id, kind, version, content."""
    latest = (sa.select(iv.c.integration_id, sa.func.max(iv.c.version).label("version"))
              .group_by(iv.c.integration_id).subquery())
    q = (sa.select(iv.c.integration_id, iv.c.kind, iv.c.version, iv.c.content, iv.c.content_hash,
                   iv.c.source_path, iv.c.created_at, iv.c.authored_by)
         .join(latest, sa.and_(iv.c.integration_id == latest.c.integration_id, iv.c.version == latest.c.version))
         .order_by(iv.c.integration_id))
    return [dict(r) for r in conn.execute(q).mappings()]
