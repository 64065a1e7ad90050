"""Alerts as rows: queued with the run status that raised them (same transaction), then delivered, or
retried with the cause of each failure, apart from the run. Every change audited."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from store.schema import alerts
from store.tx import Tx

PENDING, DELIVERED, GAVE_UP = "pending", "delivered", "failed"


def alert_id(run_id: str, reason: str, via: str) -> str:
    return f"ALR-{run_id}-{reason}-{via}"


def queue_alert(tx: Tx, *, run_id: str, reason: str, via: str, recipients: Sequence[str], actor: str) -> bool:
    """Queue the alert unless this run already has one for this reason through this integration."""
    aid = alert_id(run_id, reason, via)
    if tx.conn.execute(sa.select(alerts.c.alert_id).where(alerts.c.alert_id == aid)).first() is not None:
        return False
    now = tx.now()
    tx.conn.execute(alerts.insert().values(alert_id=aid, run_id=run_id, reason=reason, via=via,
                                           recipients=json.dumps(list(recipients)), status=PENDING, queued_at=now,
                                           attempts=0, next_attempt_at=now))
    tx.audit(actor, "alert.queued", "run", run_id, {"alert_id": aid, "reason": reason, "via": via,
                                                    "recipients": list(recipients)})
    return True


def read_due_alerts(conn: sa.Connection, now: dt.datetime, limit: int = 100) -> list[dict[str, Any]]:
    q = (sa.select(alerts).where(alerts.c.status == PENDING, alerts.c.next_attempt_at <= now)
         .order_by(alerts.c.next_attempt_at, alerts.c.alert_id).limit(limit))
    return [dict(r) for r in conn.execute(q).mappings()]


def read_run_alerts(conn: sa.Connection, run_id: str) -> list[dict[str, Any]]:
    q = sa.select(alerts).where(alerts.c.run_id == run_id).order_by(alerts.c.queued_at, alerts.c.alert_id)
    return [dict(r) for r in conn.execute(q).mappings()]


def record_alert_delivered(tx: Tx, alert: dict[str, Any], record_ref: str, evidence: dict[str, Any] | None,
                           actor: str) -> bool:
    """The alert was delivered; False if another process recorded its outcome first."""
    done = tx.conn.execute(alerts.update().where(alerts.c.alert_id == alert["alert_id"],
                                                 alerts.c.attempts == alert["attempts"], alerts.c.status == PENDING)
                           .values(status=DELIVERED, attempts=alert["attempts"] + 1, delivered_at=tx.now(),
                                   next_attempt_at=None, record_ref=record_ref, last_error=None,
                                   evidence=json.dumps(evidence, sort_keys=True, default=str) if evidence else None))
    if done.rowcount != 1:
        return False
    tx.audit(actor, "alert.delivered", "run", alert["run_id"],
             {"alert_id": alert["alert_id"], "via": alert["via"], "attempt": alert["attempts"] + 1,
              "record_ref": record_ref, "status": (evidence or {}).get("status")})
    return True


def record_alert_failed(tx: Tx, alert: dict[str, Any], cause: str, evidence: dict[str, Any] | None,
                        retry_at: dt.datetime | None, actor: str) -> bool:
    """A delivery attempt failed: retried at ``retry_at``, or given up when it is None."""
    done = tx.conn.execute(alerts.update().where(alerts.c.alert_id == alert["alert_id"],
                                                 alerts.c.attempts == alert["attempts"], alerts.c.status == PENDING)
                           .values(status=PENDING if retry_at else GAVE_UP, attempts=alert["attempts"] + 1,
                                   next_attempt_at=retry_at, last_error=cause,
                                   evidence=json.dumps(evidence, sort_keys=True, default=str) if evidence else None))
    if done.rowcount != 1:
        return False
    tx.audit(actor, "alert.failed", "run", alert["run_id"],
             {"alert_id": alert["alert_id"], "via": alert["via"], "attempt": alert["attempts"] + 1, "cause": cause,
              "retry_at": retry_at.isoformat() if retry_at else None})
    return True


def read_top_failure_causes(conn: sa.Connection, run_id: str, limit: int = 5) -> list[tuple[str, int]]:
    """The run's failed items by cause, most first: what an alert names."""
    from core.states import ITEM_FAILED
    from store.schema import run_items

    n = sa.func.count().label("n")
    q = (sa.select(run_items.c.failure_cause, n)
         .where(run_items.c.run_id == run_id, run_items.c.outcome == ITEM_FAILED)
         .group_by(run_items.c.failure_cause).order_by(n.desc(), run_items.c.failure_cause).limit(limit))
    return [(str(cause or "unknown"), int(count)) for cause, count in conn.execute(q).all()]
