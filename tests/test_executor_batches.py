"""Large batches: the column-wise settlement and the bulk writes it uses.

bench/bench_executor.py measures the executor at 100,000 items; these hold what the throughput work relies
on: a batch written as columns (``same`` constants included) stores exactly what row-by-row writes store,
a run of many items of every outcome settles each item once with its attempt, ledger entry and audit
entry, and the engine never loads pandas or pyarrow (~95 MB of a large run's peak memory).

The writes and runs are checked on both backends (tests/backends.py: DuckDB's array scan, PostgreSQL's
``COPY`` and ``unnest``). DuckDB only: the engine without pandas or pyarrow, since the DuckDB array scan is
the path that could bring them in (PostgreSQL's ``COPY`` takes plain rows through psycopg).
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import psycopg
import pytest
import sqlalchemy as sa

from engine.batching import GC_PAUSE_MIN_ITEMS, gc_paused
from store import audit
from store import items as item_store
from store import runs as run_store
from store.bulk import Same, append_columns, same, update_columns
from store.schema import item_attempts, members, run_items
from store.subjects import load_rows, record_trigger_event
from store.workspace import Workspace
from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import (  # noqa: F401
    make_engine_fixture,
    pg_server_fixture,
    pg_template_fixture,
    workspace_db_fixture,
)
from tests.support import FailsDeterministically, FailsTransiently, finding_definition, fire_one, run_of, scalar

UTC = dt.UTC
END = dt.datetime(2026, 7, 6, 7, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]


def _attempt_columns(n: int, tag: str) -> dict[str, object]:
    at = dt.datetime(2026, 7, 6, 6, 0, 0, 123456, tzinfo=UTC)
    oslo = dt.datetime(2026, 7, 6, 8, 0, 1, tzinfo=ZoneInfo("Europe/Oslo"))
    return {"item_id": [f"{tag}-{i:04d}" for i in range(n)], "attempt": [i % 3 + 1 for i in range(n)],
            "run_id": same("RUN-ÅØ"), "actor": same("member:sigrid"),
            "started_at": [at if i % 2 else oslo for i in range(n)],
            "finished_at": [at if i % 5 else dt.datetime(2026, 7, 6, 6, 0) for i in range(n)],  # naive: UTC
            "outcome": ["succeeded" if i % 2 else "failed" for i in range(n)],
            "failure_cause": [None if i % 2 else f"cause ü {i}" for i in range(n)],
            "failure_class": same(None), "record_ref": [f"findings:FND-{i}" if i % 2 else None for i in range(n)]}


def _rows(ws: Workspace, tag: str) -> list[tuple[object, ...]]:
    with ws.read() as conn:
        rows = conn.execute(sa.select(item_attempts).where(item_attempts.c.item_id.like(f"{tag}-%"))
                            .order_by(item_attempts.c.item_id)).all()
    return [tuple(v.astimezone(UTC) if isinstance(v, dt.datetime) else v for v in r[1:]) for r in rows]


@pytest.mark.parametrize("n", [5, 31, 32, 300])
def test_columns_written_in_bulk_store_what_row_by_row_inserts_store(workspace_db: str, n: int) -> None:
    """Below 32 rows the columns go through executemany, from 32 on through DuckDB's array scan or
    PostgreSQL's ``COPY``."""
    ws = Workspace(workspace_db)
    bulk, plain = _attempt_columns(n, "bulk"), _attempt_columns(n, "plain")
    with ws.transaction() as tx:
        append_columns(tx, item_attempts, bulk)
        names = list(plain)
        full = {c: ([v.value] * n if isinstance(v, Same) else v) for c, v in plain.items()}
        for i in range(n):
            row = {c: full[c][i] for c in names}
            if isinstance(row["finished_at"], dt.datetime):
                row["finished_at"] = row["finished_at"].replace(tzinfo=UTC)
            tx.conn.execute(item_attempts.insert().values(**row))
    assert _rows(ws, "bulk") == _rows(ws, "plain") and len(_rows(ws, "bulk")) == n
    ws.close()


def test_a_column_update_sets_each_row_from_its_key(workspace_db: str) -> None:
    ws = Workspace(workspace_db)
    n = 100
    with ws.transaction() as tx:
        append_columns(tx, item_attempts, _attempt_columns(n, "u"))
        update_columns(tx, item_attempts, "item_id", {
            "item_id": [f"u-{i:04d}" for i in range(0, n, 2)], "outcome": same("skipped"),
            "failure_cause": [f"now {i}" for i in range(0, n, 2)], "finished_at": same(END)})
        # a boolean column, through a table that has one
        append_columns(tx, members, {"member_id": [f"m{i}" for i in range(40)], "display_name": same("M"),
                                     "password_hash": same("x"), "roles": same("viewer"),
                                     "active": [i % 2 == 0 for i in range(40)], "created_at": same(tx.now())})
    with ws.read() as conn:
        got = {r.item_id: r for r in conn.execute(sa.select(item_attempts)).all()}
        active = dict(conn.execute(sa.select(members.c.member_id, members.c.active)
                                   .where(members.c.member_id.like("m%"))).all())
    for i in range(n):
        r = got[f"u-{i:04d}"]
        if i % 2 == 0:
            assert (r.outcome, r.failure_cause, r.finished_at) == ("skipped", f"now {i}", END)
        else:
            assert r.outcome == "succeeded" and r.failure_cause is None
    assert all(active[f"m{i}"] is (i % 2 == 0) for i in range(40))
    ws.close()


def test_a_bulk_write_that_breaks_a_constraint_raises_that_constraint(workspace_db: str, backend: str) -> None:
    """Not "the transaction is aborted", which unregistering the rows raised over it (DuckDB's array scan).
    Each backend's native path raises its driver's own error, as DuckDB's does: PostgreSQL's ``COPY``
    names the constraint and the key."""
    ws = Workspace(workspace_db)
    rows = _attempt_columns(40, "dup")
    with ws.transaction() as tx:
        append_columns(tx, item_attempts, rows)
    refused: tuple[type[BaseException], str] = (
        (duckdb.ConstraintException, "violates primary key") if backend == "duckdb"
        else (psycopg.errors.UniqueViolation, r'violates unique constraint "item_attempts_pkey"'))
    with pytest.raises(refused[0], match=refused[1]), ws.transaction() as tx:
        append_columns(tx, item_attempts, rows)  # the same (item, attempt) keys again
    assert len(_rows(ws, "dup")) == 40
    ws.close()


def test_audit_many_records_what_audit_records(workspace_db: str) -> None:
    ws = Workspace(workspace_db)
    at = dt.datetime(2026, 7, 6, 6, 0, tzinfo=UTC)
    with ws.transaction() as tx:
        tx.audit("a", "item.skipped", "run_item", "I-1", {"reason": "x"}, occurred_at=at)
        tx.audit("a", "item.succeeded", "run_item", "I-2", None, occurred_at=at)
        one_by_one = list(tx.entries)
        tx.entries.clear()
        tx.audit_many("a", "run_item", [("item.skipped", "I-1", {"reason": "x"}), ("item.succeeded", "I-2", {})],
                      occurred_at=at)
        assert tx.entries == one_by_one
    ws.close()


class DeactivatesLaterAccounts(FailsDeterministically):
    """On its first call, the register marks some accounts inactive: their items, in a later batch, are
    skipped at the re-check, with their new snapshot."""

    def __init__(self, failing: set[str], inactive: list[str], inner: object) -> None:
        super().__init__(failing, inner)
        self.inactive, self.engine = inactive, None

    def before(self, req, ctx) -> None:  # noqa: ANN001
        if self.inactive and self.engine is not None:
            with self.engine.ws.transaction() as tx:
                load_rows(tx, "accounts", [{"account_id": a, "status": "inactive"} for a in self.inactive],
                          origin="test", source="core-banking", actor="test")
            self.inactive = []
        super().before(req, ctx)


def test_a_run_of_every_outcome_settles_each_item_once(make_engine) -> None:  # noqa: ANN001
    """Enough items for the adaptive batches to grow past the bulk threshold (16, 32, … 512 items);
    failures of both classes, and subjects that no longer qualify when their batch comes up."""
    n = 700
    failing = {f"ACC-{i:03d}" for i in range(1, 600, 7)}
    flaky = {f"ACC-{i:03d}": 1 for i in range(3, 600, 11)} | {f"ACC-{i:03d}": 1 for i in range(600, 640)}
    inactive = [f"ACC-{i:03d}" for i in range(650, n + 1)]
    actioner = DeactivatesLaterAccounts(failing, inactive, FailsTransiently(flaky))
    engine = make_engine({"d": finding_definition("d", retry="max_attempts: 3")}, accounts=n,
                         actioners={"findings.create": actioner})
    actioner.engine = engine
    run_id = fire_one(engine)
    transient = {s for s in flaky if s not in failing}
    succeeded = n - len(failing) - len(transient) - len(inactive)
    outcomes = dict(rows_of(engine, "SELECT outcome, count(*) FROM run_items WHERE run_id = :r GROUP BY 1",
                            r=run_id))
    assert outcomes == {"succeeded": succeeded, "failed": len(failing) + len(transient), "skipped": len(inactive)}
    acted = n - len(inactive)
    assert scalar(engine, "SELECT count(*) FROM findings") == succeeded
    assert scalar(engine, "SELECT count(*) FROM idempotency_records") == succeeded
    assert scalar(engine, "SELECT count(*) FROM item_attempts WHERE run_id = :r", r=run_id) == acted
    assert scalar(engine, "SELECT count(*) FROM audit_log WHERE entity_kind = 'run_item'") == n
    assert scalar(engine, "SELECT count(*) FROM run_items WHERE retry_due_at IS NOT NULL") == len(transient)
    skipped = rows_of(engine, "SELECT skip_reason, subject_snapshot FROM run_items WHERE outcome = 'skipped'")
    assert {r for r, _ in skipped} == {"the account is no longer active"}
    assert all(json.loads(snap)["status"] == "inactive" for _, snap in skipped)
    assert all(json.loads(snap)["status"] == "active" for (snap,) in rows_of(
        engine, "SELECT subject_snapshot FROM run_items WHERE outcome <> 'skipped'"))
    with engine.ws.read() as conn:
        facts = run_store.read_run_facts(conn, run_of(engine, run_id))
    assert facts.outcome_counts == outcomes and facts.retries_scheduled == len(transient)
    assert run_of(engine, run_id)["status"] == "running"  # retries are due
    engine.clock.advance_to(engine.clock.now() + dt.timedelta(hours=2))
    assert engine.process_due_retries() == len(transient)
    assert run_of(engine, run_id)["status"] == "completed-with-failures"
    assert scalar(engine, "SELECT count(*) FROM findings") == succeeded + len(transient)
    assert engine.ws.verify_audit().intact


def rows_of(engine, sql: str, **params: object) -> list[tuple[object, ...]]:  # noqa: ANN001
    with engine.ws.read() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params).all()]


def test_a_claim_past_settled_items_takes_the_next_pending_ones(make_engine) -> None:  # noqa: ANN001
    engine = make_engine({"d": finding_definition("d")}, accounts=30)
    with engine.ws.transaction() as tx:
        record_trigger_event(tx, kind="manual", event_type="run.requested", source="t",
                             occurred_at=engine.clock.now(), definition_id="d")
    with engine.ws.read() as conn:
        [event] = run_store.read_undispatched_events(conn)
    with engine.ws.transaction() as tx:
        run_id = run_store.create_run(tx, definition_id="d", definition_version=1, event=event, actor="t")
        run_store.claim_event(tx, event["event_id"])
    engine.executor.match_run(run_id, "t")
    with engine.ws.transaction() as tx:  # three items among the first were settled already
        tx.conn.execute(run_items.update().where(run_items.c.position.in_([3, 4, 9])).values(outcome="skipped"))
        taken = item_store.claim_pending_item_columns(tx, run_id, 8)
        again = item_store.claim_pending_item_columns(tx, run_id, 8, after_position=taken["position"][-1])
    assert taken["position"] == [1, 2, 5, 6, 7, 8, 10, 11]
    assert again["position"] == list(range(12, 20))
    assert list(taken) == list(item_store.CLAIM_COLUMNS)
    assert scalar(engine, "SELECT count(*) FROM run_items WHERE outcome = 'in-flight'") == 16
    assert engine.recover() == [run_id]
    assert scalar(engine, "SELECT count(*) FROM findings") == 27


def test_the_gc_pause_nests_spans_threads_and_keeps_an_application_choice() -> None:
    big = GC_PAUSE_MIN_ITEMS
    assert gc.isenabled()
    with gc_paused(big - 1):  # a small batch (maybe one slow item) leaves the process's GC alone
        assert gc.isenabled()
    with gc_paused(big):
        assert not gc.isenabled()
        done = threading.Event()

        def other() -> None:
            with gc_paused(big):
                pass
            done.set()
        threading.Thread(target=other).start()
        assert done.wait(5) and not gc.isenabled()  # the other batch ended; this one still holds it
        with gc_paused(big):
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused(big):
            pass
        assert not gc.isenabled()  # off before, off after
    finally:
        gc.enable()
    with pytest.raises(RuntimeError), gc_paused(big):
        raise RuntimeError("a failed batch")
    assert gc.isenabled()


@pytest.mark.parametrize("options", [
    {}, {"sort_keys": True}, {"sort_keys": True, "default": str},
    {"sort_keys": True, "separators": (",", ":"), "default": str, "ensure_ascii": False}])
def test_a_prebuilt_encoder_spells_as_json_dumps(options: dict[str, object]) -> None:
    encode = audit.json_encoder(**options)  # type: ignore[arg-type]
    values = [{"b": 1, "a": [1.5, None, True, -0.0, 1e300], "ü": "ß€\n\"", "n": {"z": 1, "y": [{}]}}, "x", 7, None,
              [], 2.5, float("inf")]
    if options.get("default"):
        values.append({"d": dt.date(2026, 7, 1), "t": dt.datetime(2026, 7, 1, tzinfo=UTC)})
    for v in values:
        assert encode(v) == json.dumps(v, **options)  # type: ignore[arg-type]
    if not options.get("default"):
        with pytest.raises(TypeError, match="is not JSON serializable"):
            encode({"d": dt.date(2026, 7, 1)})


def test_the_engine_runs_without_loading_pandas_or_pyarrow(tmp_path: Path) -> None:
    """pyarrow's array builder imports pandas (~43 MB) and pyarrow itself weighs ~52 MB: the engine's
    bulk writes go through NumPy arrays instead."""
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]
        from pathlib import Path
        from tests.support import build_engine, fire_one, scalar
        engine = build_engine(Path({str(tmp_path)!r}), accounts=300)
        run_id = fire_one(engine)
        assert scalar(engine, "SELECT count(*) FROM findings") == 300
        print(sorted(m for m in ("pandas", "pyarrow") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
