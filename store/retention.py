"""Retention, the store's half: which closed runs and which audit entries an archive takes, the rows it takes
with them, and removing them in the transaction that appends the checkpoint.

A plan is a function of the workspace and the horizon alone, so the same workspace planned again at the same
horizon gives the same plan, and the same archive id: an apply that crashed after writing its archive finds
it again (``engine.commands.retention``). What a run takes with it is named once, in ``ARCHIVED_TABLES``.

The audit entries archived are always a prefix of the live chain (its first entry up to the last one that
may go), so the live chain that stays starts right after the checkpoint that records them. The prefix stops
before the first entry that occurred at or after the horizon, or that is about a run or item that stays in
the workspace (held, still open, or younger), or about a held subject; and it never takes the chain's newest
entry, which the checkpoint appended after it links to.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from core.states import TERMINAL_RUN_STATUSES
from store import holds as hold_store
from store import schema as s
from store.audit import canonical_json, read_chain_head
from store.cause_rollups import apply_cause_change, read_cause_rows
from store.records import RECORD_TABLES
from store.rollups import remove_runs
from store.tx import Tx

AUDIT_TABLE = "audit_log"
_SAMPLE = 20  # runs named in a plan's sentences, per reason held back


def horizon_for(now: dt.datetime, years: int) -> dt.datetime:
    """The start (UTC) of the day ``years`` before ``now``: a plan made again the same day has the same one."""
    day = now.astimezone(dt.UTC).date()
    try:
        then = day.replace(year=day.year - years)
    except ValueError:  # 29 February, in a year that has none
        then = day.replace(year=day.year - years, day=28)
    return dt.datetime.combine(then, dt.time(), dt.UTC)


def candidate_runs(horizon: dt.datetime) -> sa.Select[Any]:
    """Closed runs triggered before the horizon (held ones included: the plan sets those apart)."""
    return sa.select(s.runs.c.run_id).where(s.runs.c.status.in_(sorted(TERMINAL_RUN_STATUSES)),
                                            s.runs.c.triggered_at < horizon)


def archived_runs(horizon: dt.datetime, held: Any) -> sa.Select[Any]:
    q = candidate_runs(horizon)
    return q.where(s.runs.c.run_id.not_in(sorted(held))) if held else q


def _archived_items(runs_q: sa.Select[Any]) -> sa.Select[Any]:
    return sa.select(s.run_items.c.item_id).where(s.run_items.c.run_id.in_(runs_q))


def _by_run(table: sa.Table) -> Callable[[sa.Select[Any]], Any]:
    return lambda runs_q: table.c.run_id.in_(runs_q)


def _by_item(column: sa.Column[Any]) -> Callable[[sa.Select[Any]], Any]:
    return lambda runs_q: column.in_(_archived_items(runs_q))


# What an archived run takes with it: each table, and which of its rows belong to the archived runs. Deleted
# in this order (what refers to an item before the items, the items before the runs).
ARCHIVED_TABLES: tuple[tuple[str, sa.Table, Callable[[sa.Select[Any]], Any]], ...] = (
    *((name, t, _by_item(t.c.source_item_id)) for name, t in RECORD_TABLES.items()),
    ("idempotency_records", s.idempotency_records, _by_item(s.idempotency_records.c.item_id)),
    ("item_attempts", s.item_attempts, _by_run(s.item_attempts)),
    ("approvals", s.approvals, _by_run(s.approvals)),
    ("item_dispositions", s.item_dispositions, _by_run(s.item_dispositions)),
    ("run_failure_causes", s.run_failure_causes, _by_run(s.run_failure_causes)),
    ("alerts", s.alerts, _by_run(s.alerts)),
    ("run_items", s.run_items, _by_run(s.run_items)),
    ("runs", s.runs, _by_run(s.runs)),
)
ARCHIVE_FILE_TABLES: tuple[tuple[str, sa.Table], ...] = (
    *((name, t) for name, t, _ in ARCHIVED_TABLES), (AUDIT_TABLE, s.audit_log))


@dataclass(frozen=True)
class AuditSpan:
    """The audit entries an archive takes: ``first_seq``..``last_seq`` of the live chain, and the hashes that
    tie them to what stays (the entry before the first, and the last)."""

    first_seq: int
    last_seq: int
    first_prev_hash: str
    last_hash: str

    @property
    def entries(self) -> int:
        return self.last_seq - self.first_seq + 1

    def as_dict(self) -> dict[str, Any]:
        return {"first_seq": self.first_seq, "last_seq": self.last_seq, "first_prev_hash": self.first_prev_hash,
                "last_hash": self.last_hash}


@dataclass
class RetentionPlan:
    """What an apply at ``horizon`` archives and removes, and what it holds back and why."""

    horizon: dt.datetime
    run_ids: list[str]
    held: dict[str, hold_store.HeldRun]
    still_open: list[str]  # runs triggered before the horizon that are not closed
    rows: dict[str, int]  # table → rows archived (the audit log's included)
    audit: AuditSpan | None
    audit_stop: str | None  # why the audit prefix ends where it does (None: the whole live chain goes)
    items: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def archive_id(self) -> str:
        """Derived from what the archive holds: the same plan is the same archive, found again by a retry."""
        material = canonical_json({"horizon": self.horizon.isoformat(), "runs": self.run_ids,
                                   "audit": self.audit.as_dict() if self.audit else None})
        return f"ARC-{self.horizon:%Y%m%d}-{hashlib.sha256(material.encode()).hexdigest()[:12]}"

    @property
    def empty(self) -> bool:
        return not self.run_ids and self.audit is None

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def runs_query(self) -> sa.Select[Any]:
        return archived_runs(self.horizon, self.held)

    def summary(self) -> dict[str, Any]:
        """The plan as an audit entry's payload (counts and the span, not every id)."""
        return {"archive_id": self.archive_id, "horizon": self.horizon.isoformat(), "runs": len(self.run_ids),
                "items": self.items, "rows": self.rows, "audit": self.audit.as_dict() if self.audit else None,
                "held_back": {h.run_id: h.hold_id for h in list(self.held.values())[:_SAMPLE]},
                "held_back_runs": len(self.held), "still_open_runs": len(self.still_open),
                "audit_stop": self.audit_stop}


def plan_retention(conn: sa.Connection, horizon: dt.datetime) -> RetentionPlan:
    candidates = candidate_runs(horizon)
    held = hold_store.held_runs(conn, candidates)
    runs_q = archived_runs(horizon, held)
    run_ids = sorted(conn.execute(runs_q).scalars())
    still_open = sorted(conn.execute(sa.select(s.runs.c.run_id).where(
        s.runs.c.status.not_in(sorted(TERMINAL_RUN_STATUSES)), s.runs.c.triggered_at < horizon)).scalars())
    rows = {name: int(conn.execute(sa.select(sa.func.count()).select_from(t).where(where(runs_q))).scalar_one())
            for name, t, where in ARCHIVED_TABLES} if run_ids else {}
    span, stop = _audit_prefix(conn, horizon, set(run_ids), hold_store.held_subjects(conn))
    if span is not None:
        rows[AUDIT_TABLE] = span.entries
    return RetentionPlan(horizon, run_ids, held, still_open, rows, span, stop, items=rows.get("run_items", 0))


def _runs_named(entity_kind: str, entity_id: str, payload: str) -> set[str]:
    """The runs an audit entry is about: its entity (a run, or an item of one) and any run its payload names."""
    named: set[str] = set()
    if entity_kind == "run":
        named.add(entity_id)
    elif entity_kind == "run_item":
        named.add(entity_id.rsplit("-", 1)[0])
    if '"run_id"' in payload:
        value = json.loads(payload).get("run_id")
        if isinstance(value, str):
            named.add(value)
    return named


def _subject_named(entity_kind: str, entity_id: str, payload: str) -> set[tuple[str, str]]:
    named = {(entity_kind, entity_id)}
    if '"subject_id"' in payload:
        p = json.loads(payload)
        if isinstance(p.get("subject_id"), str):
            named.add((str(p.get("subject_kind") or ""), p["subject_id"]))
    return named


def _audit_prefix(conn: sa.Connection, horizon: dt.datetime, archived: set[str], held_subjects: set[tuple[str, str]],
                  batch: int = 20_000) -> tuple[AuditSpan | None, str | None]:
    """The longest prefix of the live chain that may go, and why it stops where it does."""
    a = s.audit_log
    first: Any = None
    last: Any = None
    after = -1
    head_seq, _ = read_chain_head(conn)
    while True:
        entries = conn.execute(sa.select(a.c.seq, a.c.occurred_at, a.c.event, a.c.entity_kind, a.c.entity_id,
                                         a.c.payload, a.c.prev_hash, a.c.hash)
                               .where(a.c.seq > after).order_by(a.c.seq).limit(batch)).all()
        if not entries:
            return _span(first, last), None
        named = [_runs_named(r.entity_kind, r.entity_id, r.payload) for r in entries]
        staying = hold_store.runs_exist(conn, set().union(*named) - archived)
        for r, runs_named in zip(entries, named, strict=True):
            why = None
            if r.seq == head_seq:
                why = f"entry {r.seq} ({r.event}) is the chain's newest, which stays for the checkpoint to follow"
            elif r.occurred_at >= horizon:
                why = f"entry {r.seq} ({r.event}) occurred after the horizon"
            elif runs_named & staying:
                run = sorted(runs_named & staying)[0]
                why = f"entry {r.seq} ({r.event}) is about {run}, which stays in the workspace"
            elif held_subjects and _subject_named(r.entity_kind, r.entity_id, r.payload) & held_subjects:
                kind, subject = sorted(_subject_named(r.entity_kind, r.entity_id, r.payload) & held_subjects)[0]
                why = f"entry {r.seq} ({r.event}) is about {kind} {subject}, which is on hold"
            if why is not None:
                return _span(first, last), why
            first = r if first is None else first
            last = r
        after = entries[-1].seq


def _span(first: Any, last: Any) -> AuditSpan | None:
    return None if first is None else AuditSpan(int(first.seq), int(last.seq), str(first.prev_hash), str(last.hash))


def archived_rows(conn: sa.Connection, plan: RetentionPlan, name: str, batch: int = 20_000) -> Iterator[list[dict]]:
    """The rows of one table an archive holds, in key order, in batches."""
    if name == AUDIT_TABLE:
        a = s.audit_log
        if plan.audit is None:
            return
        q = sa.select(a).where(a.c.seq.between(plan.audit.first_seq, plan.audit.last_seq)).order_by(a.c.seq)
    else:
        [(table, where)] = [(t, w) for n, t, w in ARCHIVED_TABLES if n == name]
        if not plan.run_ids:
            return
        q = sa.select(table).where(where(plan.runs_query())).order_by(*table.primary_key.columns)
    result = conn.execution_options(stream_results=True).execute(q)
    while True:
        chunk = result.mappings().fetchmany(batch)
        if not chunk:
            return
        yield [dict(r) for r in chunk]


def remove_archived(tx: Tx, plan: RetentionPlan) -> dict[str, int]:
    """Delete what the archive holds, in the caller's transaction; rows deleted per table."""
    deleted: dict[str, int] = {}
    if plan.run_ids:
        runs_q = plan.runs_query()
        remove_runs(tx, s.runs.c.run_id.in_(runs_q))  # the analytics' sums forget them with them
        apply_cause_change(tx, read_cause_rows(tx.conn, s.run_failure_causes.c.run_id.in_(runs_q)), ())
        tx.conn.execute(s.run_failure_accounts.delete().where(s.run_failure_accounts.c.run_id.in_(runs_q)))
        for name, table, where in ARCHIVED_TABLES:
            deleted[name] = int(tx.conn.execute(table.delete().where(where(runs_q))).rowcount or 0)
    if plan.audit is not None:
        a = s.audit_log
        deleted[AUDIT_TABLE] = int(tx.conn.execute(
            a.delete().where(a.c.seq.between(plan.audit.first_seq, plan.audit.last_seq))).rowcount or 0)
    return deleted


def record_archive(tx: Tx, plan: RetentionPlan, location: str, manifest_sha256: str, actor: str) -> None:
    span = plan.audit
    tx.conn.execute(s.retention_archives.insert().values(
        archive_id=plan.archive_id, horizon=plan.horizon, location=location, manifest_sha256=manifest_sha256,
        runs=len(plan.run_ids), items=plan.items, rows=plan.total_rows,
        first_seq=span.first_seq if span else None, last_seq=span.last_seq if span else None,
        first_prev_hash=span.first_prev_hash if span else None, last_hash=span.last_hash if span else None,
        archived_by=actor, archived_at=tx.now()))


def read_archive_record(conn: sa.Connection, archive_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(s.retention_archives).where(s.retention_archives.c.archive_id == archive_id)
                       ).mappings().first()
    return dict(row) if row else None


def read_archive_records(conn: sa.Connection) -> list[dict[str, Any]]:
    q = sa.select(s.retention_archives).order_by(s.retention_archives.c.archived_at)
    return [dict(r) for r in conn.execute(q).mappings()]
