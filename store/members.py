"""Members and their roles.

The writers here change rows only; the engine's member commands (``engine.commands.members``) decide
whether a change is allowed and write its audit entry in the same transaction. ``create_member`` is the
exception kept for seeding (the demo, the tests): it audits ``member.created`` itself.
"""

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


def insert_member(tx: Tx, member_id: str, display_name: str, password_hash: str, roles: list[str],
                  email: str | None) -> None:
    """A new active member. ``password_hash`` is empty for a member who signs in only through single sign-on
    (no password verifies against it)."""
    tx.conn.execute(members.insert().values(member_id=member_id, display_name=display_name,
                                            password_hash=password_hash, roles=",".join(sorted(roles)),
                                            active=True, created_at=tx.now(), email=email, session_epoch=0))


def set_member_roles(tx: Tx, member_id: str, roles: list[str]) -> None:
    tx.conn.execute(members.update().where(members.c.member_id == member_id)
                    .values(roles=",".join(sorted(roles))))


def set_member_active(tx: Tx, member_id: str, active: bool) -> None:
    """Deactivating also ends the member's sessions (their epoch moves on)."""
    values: dict[str, Any] = {"active": active}
    if not active:
        values["session_epoch"] = members.c.session_epoch + 1
    tx.conn.execute(members.update().where(members.c.member_id == member_id).values(**values))


def set_password_hash(tx: Tx, member_id: str, password_hash: str) -> int:
    """Store a new password hash and end the member's sessions; returns the new session epoch (the session
    that changed its own password carries on under it)."""
    tx.conn.execute(members.update().where(members.c.member_id == member_id)
                    .values(password_hash=password_hash, session_epoch=members.c.session_epoch + 1))
    return int(tx.conn.execute(sa.select(members.c.session_epoch)
                               .where(members.c.member_id == member_id)).scalar_one())


def set_member_email(tx: Tx, member_id: str, email: str | None) -> None:
    tx.conn.execute(members.update().where(members.c.member_id == member_id).values(email=email))


def set_sso_subject(tx: Tx, member_id: str, subject: str | None) -> None:
    tx.conn.execute(members.update().where(members.c.member_id == member_id).values(sso_subject=subject))


def read_member(conn: sa.Connection, member_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(members).where(members.c.member_id == member_id)).mappings().first()
    return dict(row) if row else None


def read_member_by_subject(conn: sa.Connection, subject: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(members).where(members.c.sso_subject == subject)).mappings().first()
    return dict(row) if row else None


def read_members_by_email(conn: sa.Connection, email: str) -> list[dict[str, Any]]:
    """Members whose e-mail is this (lower-cased) address: one, unless the workspace was edited by hand."""
    q = sa.select(members).where(sa.func.lower(members.c.email) == email.lower()).order_by(members.c.member_id)
    return [dict(r) for r in conn.execute(q).mappings()]


def read_members(conn: sa.Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(sa.select(members).order_by(members.c.member_id)).mappings()]


def count_members(conn: sa.Connection) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(members)).scalar_one()


def read_active_admins(conn: sa.Connection) -> list[str]:
    """Active members holding the admin role (roles are stored comma-separated and sorted)."""
    rows = conn.execute(sa.select(members.c.member_id, members.c.roles)
                        .where(members.c.active.is_(True)).order_by(members.c.member_id)).all()
    return [m for m, roles in rows if "admin" in roles.split(",")]


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
