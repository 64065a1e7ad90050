"""Period summaries straight from the tables: runs, items and outcomes per automation."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from store.schema import run_items, runs


def summarize_period(conn: sa.Connection, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
    """One row per automation with runs triggered in [start, end)."""
    in_period = (runs.c.triggered_at >= start, runs.c.triggered_at < end)
    run_rows = conn.execute(
        sa.select(runs.c.definition_id, sa.func.count().label("runs"),
                  sa.func.sum(runs.c.subjects_matched).label("subjects_matched"),
                  sa.func.sum(runs.c.actions_invoked).label("actions_invoked"))
        .where(*in_period).group_by(runs.c.definition_id).order_by(runs.c.definition_id)).mappings().all()
    outcome_rows = conn.execute(
        sa.select(runs.c.definition_id, run_items.c.outcome, sa.func.count().label("n"))
        .join(run_items, run_items.c.run_id == runs.c.run_id).where(*in_period)
        .group_by(runs.c.definition_id, run_items.c.outcome)).all()
    status_rows = conn.execute(
        sa.select(runs.c.definition_id, runs.c.status, sa.func.count().label("n")).where(*in_period)
        .group_by(runs.c.definition_id, runs.c.status)).all()
    out = []
    for r in run_rows:
        out.append({"definition_id": r["definition_id"], "runs": int(r["runs"]),
                    "subjects_matched": int(r["subjects_matched"] or 0),
                    "actions_invoked": int(r["actions_invoked"] or 0),
                    "items": sum(int(o.n) for o in outcome_rows if o.definition_id == r["definition_id"]),
                    "outcomes": {o.outcome: int(o.n) for o in outcome_rows if o.definition_id == r["definition_id"]},
                    "statuses": {s.status: int(s.n) for s in status_rows if s.definition_id == r["definition_id"]}})
    return out
