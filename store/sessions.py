"""Members' signed-in sessions, kept in the workspace so that every app replica serves every member.

A row is keyed by the sha256 of the browser's token, never the token itself: whoever reads the table (an
auditor, a BI tool, a backup) learns who was signed in when, and cannot sign in as them. A session is live
while ``ended_at`` is empty; whether it has expired is the engine's reckoning (``engine.sessions``), from
``signed_in_at`` and ``seen_at``. The writers change rows only, and only a live row: each returns whether
it did, so that the caller writes an ending's audit entry once however many replicas or tabs see it end.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import sqlalchemy as sa

from store.schema import members, sessions
from store.tx import Tx


def session_id_for(token: str) -> str:
    """The key of the session a browser's token opens (the token itself is never stored)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_session(tx: Tx, session_id: str, member_id: str, channel: str, epoch: int, at: dt.datetime) -> None:
    tx.conn.execute(sessions.insert().values(session_id=session_id, member_id=member_id, channel=channel,
                                             epoch=epoch, signed_in_at=at, seen_at=at))


_MEMBER_COLUMNS = (members.c.active.label("member_active"), members.c.roles.label("member_roles"),
                   members.c.session_epoch.label("member_epoch"))


def read_session(conn: sa.Connection, session_id: str) -> dict[str, Any] | None:
    """The session (live or ended) with what a page view needs of its member now: ``member_active``,
    ``member_roles`` and ``member_epoch`` (all None when the member is gone). One read by primary key on
    each table, so that a page view costs this and ``touch_session`` only."""
    q = (sa.select(sessions, *_MEMBER_COLUMNS)
         .select_from(sessions.outerjoin(members, members.c.member_id == sessions.c.member_id))
         .where(sessions.c.session_id == session_id))
    row = conn.execute(q).mappings().first()
    return dict(row) if row else None


def touch_session(tx: Tx, session_id: str, at: dt.datetime) -> bool:
    """A page view of a live session: its idle time starts again at ``at``."""
    done = tx.conn.execute(sessions.update()
                           .where(sessions.c.session_id == session_id, sessions.c.ended_at.is_(None))
                           .values(seen_at=at))
    return done.rowcount == 1


def set_session_epoch(tx: Tx, session_id: str, member_id: str, epoch: int) -> bool:
    """The member's session that changed their password goes on under the new epoch (their others end)."""
    done = tx.conn.execute(sessions.update()
                           .where(sessions.c.session_id == session_id, sessions.c.member_id == member_id,
                                  sessions.c.ended_at.is_(None))
                           .values(epoch=epoch))
    return done.rowcount == 1


def end_session(tx: Tx, session_id: str, at: dt.datetime, reason: str) -> bool:
    """End a live session; False when it had already ended (another replica or tab ended it first)."""
    done = tx.conn.execute(sessions.update()
                           .where(sessions.c.session_id == session_id, sessions.c.ended_at.is_(None))
                           .values(ended_at=at, ended_reason=reason))
    return done.rowcount == 1

