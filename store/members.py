"""Members and their roles."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from store.schema import members
from store.tx import Tx


def create_member(tx: Tx, member_id: str, display_name: str, password_hash: str, roles: list[str],
                  actor: str) -> None:
    tx.conn.execute(members.insert().values(member_id=member_id, display_name=display_name,
                                            password_hash=password_hash, roles=",".join(sorted(roles)),
                                            active=True, created_at=tx.now()))
    tx.audit(actor, "member.created", "member", member_id, {"roles": sorted(roles)})


def read_member(conn: sa.Connection, member_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(members).where(members.c.member_id == member_id)).mappings().first()
    return dict(row) if row else None


def read_members(conn: sa.Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(sa.select(members).order_by(members.c.member_id)).mappings()]


def count_members(conn: sa.Connection) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(members)).scalar_one()


def count_recent_sign_in_failures(conn: sa.Connection, member_id: str,
                                  since: dt.datetime) -> tuple[int, dt.datetime | None]:
    """Failed sign-ins for this member name since ``since`` and since its last successful sign-in, read
    from the audit log (so the count survives a restart), with the oldest of them (when the lock lifts)."""
    from store.schema import audit_log

    last_success = conn.execute(sa.select(sa.func.max(audit_log.c.seq)).where(
        audit_log.c.entity_kind == "member", audit_log.c.entity_id == member_id,
        audit_log.c.event == "member.signed_in")).scalar()  # by log order: timestamps may tie
    q = sa.select(sa.func.count(), sa.func.min(audit_log.c.occurred_at)).where(
        audit_log.c.entity_kind == "member", audit_log.c.entity_id == member_id,
        audit_log.c.event == "member.sign_in_failed", audit_log.c.occurred_at >= since,
        audit_log.c.seq > (last_success or 0))
    count, oldest = conn.execute(q).one()
    return int(count), oldest
