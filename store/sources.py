"""Integration sources (who may deliver signals) and the requests they made."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from store.schema import intake_requests, intake_sources
from store.tx import Tx


def create_source(tx: Tx, source_id: str, secret: str, register: str | None, actor: str) -> None:
    tx.conn.execute(intake_sources.insert().values(source_id=source_id, secret=secret, register=register,
                                                   created_at=tx.now()))
    tx.audit(actor, "intake_source.created", "intake_source", source_id, {"register": register})


def read_source(conn: sa.Connection, source_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(intake_sources).where(intake_sources.c.source_id == source_id)).mappings().first()
    return dict(row) if row else None


def read_sources(conn: sa.Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(sa.select(intake_sources).order_by(intake_sources.c.source_id)).mappings()]


def remember_request(tx: Tx, signature: str, source_id: str, accepted: bool, answer: str) -> bool:
    """False if this signature was seen before: a replayed request."""
    seen = tx.conn.execute(sa.select(intake_requests.c.signature).where(
        intake_requests.c.signature == signature)).first()
    if seen:
        return False
    tx.conn.execute(intake_requests.insert().values(signature=signature, source_id=source_id,
                                                    received_at=tx.now(), accepted=accepted, answer=answer))
    return True


def record_answer(tx: Tx, signature: str, accepted: bool, answer: str) -> None:
    """What the engine answered a remembered request (claimed first, so a replay racing it is refused)."""
    tx.conn.execute(intake_requests.update().where(intake_requests.c.signature == signature)
                    .values(accepted=accepted, answer=answer[:2000]))
