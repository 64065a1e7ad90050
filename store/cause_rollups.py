"""Failed items summed by automation, month, cause and class, kept with the runs' failure summaries.

The Failed items page groups a period's failed items by (automation, cause, class). ``run_failure_causes``
holds a row per run and cause — at a million runs, 150,000 rows, which PostgreSQL groups in ~40 ms for all
time. A summary row changes only when its run's summary is refreshed (``store.run_counts.write_item_counts``,
in the transaction of every settle of a run with failures) or archived (retention), and both pass through
here: the summary's rows before and after are compared, and the difference is added to
``failure_cause_rollups`` per (automation, UTC month of the run's trigger, cause, class) at the end of the
transaction (``Tx.add_to_sums``). A period's whole months are read from it, its partial ones from the
summaries (``store.views.period_split``). ``backfill_cause_rollups`` recomputes it (the migration; the
kill-anywhere invariants hold the kept table equal to the recount).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from store.rollups import Key, cause_key, utc
from store.schema import failure_cause_rollups, run_failure_causes
from store.tx import Tx

_COLUMNS = ("definition_id", "triggered_at", "failure_cause", "failure_class", "failed_items")
MEASURES = ("failed_items", "runs")


def read_cause_rows(conn: sa.Connection, where: Any) -> list[dict[str, Any]]:
    """The failure summary rows of the runs ``where`` picks (a condition on ``run_failure_causes``)."""
    c = run_failure_causes.c
    return [dict(r) for r in conn.execute(sa.select(*[c[n] for n in _COLUMNS]).where(where)).mappings()]


def _sums(rows: Iterable[tuple[Mapping[str, Any], int]]) -> dict[Key, dict[str, int]]:
    out: dict[Key, dict[str, int]] = {}
    for row, sign in rows:
        if not row["failed_items"]:
            continue  # a cause whose items all recovered: only its attempts are left, which this does not sum
        key = (row["definition_id"], utc(row["triggered_at"]).date().replace(day=1), row["failure_cause"],
               row["failure_class"])
        acc = out.setdefault(key, dict.fromkeys(MEASURES, 0))
        acc["failed_items"] += sign * int(row["failed_items"])
        acc["runs"] += sign
    return {k: v for k, v in out.items() if any(v.values())}


def apply_cause_change(tx: Tx, before: Iterable[Mapping[str, Any]], after: Iterable[Mapping[str, Any]]) -> None:
    """A run's failure summary was rewritten: move its sums from what they were to what they are."""
    for key, measures in _sums([*((r, -1) for r in before), *((r, +1) for r in after)]).items():
        tx.add_to_sums(failure_cause_rollups.name, key, measures)


def recompute_cause_rollups(conn: sa.Connection) -> dict[Key, dict[str, int]]:
    """The table as the summaries say it should be (the backfill, and the tests' reference)."""
    return _sums((r, +1) for r in read_cause_rows(conn, run_failure_causes.c.failed_items > 0))


def read_cause_rollups(conn: sa.Connection) -> dict[Key, dict[str, int]]:
    """The table as kept, rows summing to nothing left out (a recovered cause's key lingers at zero)."""
    rows = conn.execute(sa.select(failure_cause_rollups)).mappings()
    kept = {(r["definition_id"], r["month"], r["failure_cause"], r["failure_class"]):
            {m: int(r[m]) for m in MEASURES} for r in rows}
    return {k: v for k, v in kept.items() if any(v.values())}


def backfill_cause_rollups(conn: sa.Connection) -> None:
    conn.execute(failure_cause_rollups.delete())
    sums = recompute_cause_rollups(conn)
    rows = [{"definition_id": d, "month": m, "cause_key": cause_key(cause), "failure_class": cls,
             "failure_cause": cause, **measures} for (d, m, cause, cls), measures in sums.items()]
    if rows:
        conn.execute(failure_cause_rollups.insert(), rows)
