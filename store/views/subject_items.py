"""A subject's run items and their attempts, found by index rather than by scanning every item and attempt.

Items are stored in run order, not by subject, so finding one subject's items needs ``ix_items_subject``
(``run_items (subject_id)``, schema 14). On DuckDB an ART serves a query only for an equality on its one
column when that is the scan's only filter (not a composite key, not beside a second filter), so the id is
looked up in a materialized CTE and the register kind filtered after it. PostgreSQL uses the same index.

Attempts are read by item id: on PostgreSQL through their primary key's index, on DuckDB through
``ix_attempts_item`` (``item_attempts (item_id)``: DuckDB uses the ``(item_id, attempt)`` key only for the
whole key). Without it, scanning by ``run_id`` — one row group a run, by zone maps, as attempts are stored in
run order — cost ~3 ms a run, and a pass over 20 M attempt ids ~30 ms; the index answers in ~2 ms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from store.schema import item_attempts, run_items, runs

# Only the columns the story shows are read: a subject's rows lie one in each row group, so every column read
# is a block fetched and decompressed per row (~1 ms a column for a subject's items at 20 M, more under load).
# Not an attempt's ``evidence`` (a remote system's answer, JSON; a subject's attempts with every column took
# 5.7 ms, with these 2.2 ms) nor its run (its item's).
_ATTEMPT_COLUMNS = ("item_id", "attempt", "actor", "started_at", "finished_at", "outcome", "failure_cause",
                    "record_ref")


def read_subject_items(conn: sa.Connection, kind: str, subject_id: str, limit: int) -> list[dict[str, Any]]:
    """The subject's items with their runs' trigger, in run then position order, at most ``limit``."""
    hits = (sa.select(run_items.c.item_id, run_items.c.run_id, run_items.c.position, run_items.c.subject_kind,
                      run_items.c.action, run_items.c.outcome, run_items.c.skip_reason, run_items.c.updated_at)
            .where(run_items.c.subject_id == subject_id)
            .cte("subject_hits").prefix_with("MATERIALIZED"))  # keeps the kind filter out of the indexed scan
    # No LIMIT in SQL: with one, DuckDB plans a top-N whose dynamic filter turns the runs' lookup by key into a
    # scan of their ids (10 ms against 6 ms); a subject's items are few enough to cut here.
    query = (sa.select(hits.c.item_id, hits.c.run_id, hits.c.action, hits.c.outcome, hits.c.skip_reason,
                       hits.c.updated_at, runs.c.definition_id, runs.c.definition_version,
                       runs.c.triggered_at, runs.c.trigger_kind, runs.c.trigger_source)
             .select_from(hits.join(runs, runs.c.run_id == hits.c.run_id))
             .where(hits.c.subject_kind == kind)
             .order_by(runs.c.run_number, hits.c.position))
    return [dict(r) for r in conn.execute(query).mappings().all()[:limit]]


def read_items_attempts(conn: sa.Connection, item_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Every attempt of the given items (the columns the story shows; not the run), each item's in attempt
    order."""
    if not item_ids:
        return []
    query = (sa.select(*(item_attempts.c[name] for name in _ATTEMPT_COLUMNS))
             .where(item_attempts.c.item_id.in_(item_ids))
             .order_by(item_attempts.c.item_id, item_attempts.c.attempt))
    return [dict(a) for a in conn.execute(query).mappings()]
