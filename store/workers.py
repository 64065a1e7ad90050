"""Engine workers and their leases: who holds in-flight work, and whose work may be taken over.

Every process that executes items (``python -m engine serve``, a CLI command, an app replica acting on a
member's command) registers as a worker and, on PostgreSQL, renews a heartbeat. A worker's lease lapses when
its heartbeat is older than the lease or it stopped cleanly; only then may another worker take over the runs
it was working and the items it held in flight (``take_over_run``), replaying them with their idempotency keys.

Heartbeats and the lapse are measured on the database's clock (``now()``), never a host's: workers on hosts
whose clocks disagree still agree on whose lease lapsed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import sqlalchemy as sa

from core.states import IN_FLIGHT
from store.schema import run_items, runs, workers


def database_now(conn: sa.Connection) -> dt.datetime:
    now = conn.execute(sa.select(sa.func.now())).scalar_one()
    return now if now.tzinfo else now.replace(tzinfo=dt.UTC)


def register_worker(conn: sa.Connection, worker_id: str, host: str, pid: int) -> None:
    now = database_now(conn)
    conn.execute(workers.insert().values(worker_id=worker_id, host=host, pid=pid, started_at=now, heartbeat_at=now))


def renew_lease(conn: sa.Connection, worker_id: str) -> bool:
    """The worker's heartbeat; False once it stopped (its work may already be another's)."""
    res = conn.execute(workers.update().where(workers.c.worker_id == worker_id, workers.c.stopped_at.is_(None))
                       .values(heartbeat_at=sa.func.now()))
    return res.rowcount == 1


def stop_worker(conn: sa.Connection, worker_id: str) -> None:
    """A clean shutdown: what the worker still held may be taken over at once, without waiting for its lease."""
    conn.execute(workers.update().where(workers.c.worker_id == worker_id, workers.c.stopped_at.is_(None))
                 .values(stopped_at=sa.func.now()))


def read_lapsed_workers(conn: sa.Connection, lease_seconds: float, alive: Iterable[str] = ()) -> set[str]:
    """Workers whose lease lapsed (stopped, or no heartbeat for ``lease_seconds``), but for ``alive``.

    ``lease_seconds`` 0 says every other worker has lapsed: a DuckDB workspace admits one process, so a worker
    of another process is one that is gone."""
    alive = set(alive)
    q = sa.select(workers.c.worker_id)
    if lease_seconds > 0:
        cutoff = database_now(conn) - dt.timedelta(seconds=lease_seconds)
        q = q.where(sa.or_(workers.c.stopped_at.is_not(None), workers.c.heartbeat_at < cutoff))
    return {w for w in conn.execute(q).scalars() if w not in alive}


def read_live_workers(conn: sa.Connection, lease_seconds: float) -> list[dict[str, object]]:
    """Workers whose lease holds: the fleet as the workspace sees it now."""
    cutoff = database_now(conn) - dt.timedelta(seconds=lease_seconds)
    q = sa.select(workers).where(workers.c.stopped_at.is_(None), workers.c.heartbeat_at >= cutoff) \
        .order_by(workers.c.started_at)
    return [dict(r) for r in conn.execute(q).mappings()]


def read_held_in_flight(conn: sa.Connection, holders: Iterable[str | None]) -> dict[str, int]:
    """Runs with items in flight held by one of ``holders`` (None: items claimed before schema 9, or by a
    store call that names no worker) → how many."""
    holders = list(holders)
    named = [h for h in holders if h is not None]
    held: sa.ColumnElement[bool] = run_items.c.claimed_by.in_(named) if named else sa.false()
    if None in holders:
        held = sa.or_(held, run_items.c.claimed_by.is_(None))
    q = sa.select(run_items.c.run_id, sa.func.count()).where(run_items.c.outcome == IN_FLIGHT, held) \
        .group_by(run_items.c.run_id)
    return {run_id: int(n) for run_id, n in conn.execute(q).all()}


def take_over_run(conn: sa.Connection, run_id: str, worker_id: str, lapsed: Iterable[str | None]
                  ) -> tuple[bool, int]:
    """Take over what ``lapsed`` workers left of a run: the run itself (its pending items are then
    ``worker_id``'s to work) if one of them, nobody named, or ``worker_id`` itself worked it; and the run's
    in-flight items one of them held (a retry or an approval acted on by a worker that died, even where a
    live worker works the run). Returns (took the run, items taken). Guarded writes: of two workers taking
    over at once, each row goes to one.

    The caller's transaction holds the taken rows until it commits; on PostgreSQL a worker whose lease lapsed
    but that is in fact still running finds, at its next write, that its items are no longer its own
    (``store.items.settle_item_outcomes`` is fenced by the holder) and rolls back."""
    lapsed = list(lapsed)
    owners = [worker_id, *(w for w in lapsed if w is not None)]
    res = conn.execute(runs.update().where(
        runs.c.run_id == run_id, sa.or_(runs.c.worked_by.in_(owners), runs.c.worked_by.is_(None)))
        .values(worked_by=worker_id))
    took_run = res.rowcount == 1
    held: sa.ColumnElement[bool] = run_items.c.claimed_by.in_(owners)
    if None in lapsed:
        held = sa.or_(held, run_items.c.claimed_by.is_(None))
    res = conn.execute(run_items.update().where(run_items.c.run_id == run_id, run_items.c.outcome == IN_FLIGHT,
                                                held).values(claimed_by=worker_id))
    return took_run, int(res.rowcount)
