"""A register's declared ``source`` read on its schedule: each read is a run of its own kind (``trigger_kind
= import``, automation ``import:<register>``) so a failed sync is seen where failures are seen — on Runs,
as a failed run with its cause — and a good one leaves the import's evidence (file hash, counts, events).

The load is one transaction with its run: the run completes with the rows it loaded, or the load is rolled
back whole and the run is recorded as failed, saying why. A SQL source is read before that transaction
(into a temporary Parquet file): the workspace is never held while another database answers.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

import polars as pl
import sqlalchemy as sa

from core.registers import SourceSpec
from core.states import IMPORT
from engine.status import settle_run_status
from store import runs as run_store
from store.imports import ImportRefused, import_file
from store.registers import Register, read_registers
from store.subjects import record_trigger_event
from store.tx import Tx
from store.workspace import Workspace

log = logging.getLogger("runledger.imports")
ACTOR = "engine:import"


class Importer(Protocol):
    """What a scheduled import needs of the engine (the runtime schedules it, so it cannot import it)."""

    ws: Workspace
    registers_dir: Path

    @property
    def clock(self) -> Any: ...

    def dispatch_events(self, background: bool = False) -> list[str]: ...


class SourceUnavailable(RuntimeError):
    """The source could not be read (a missing variable, an unreachable database, a missing file)."""


def import_definition_id(register_id: str) -> str:
    return f"import:{register_id}"


def import_event_id(register_id: str, at: dt.datetime) -> str:
    """One event per register and fire minute: a scheduler that fires twice does not import twice."""
    return f"IMPORT-{register_id}-{at:%Y%m%dT%H%M}"


def source_file(source: SourceSpec, registers_dir: Path) -> Path:
    """A relative ``file`` is read from the registers folder, where its declaration lives."""
    path = Path(source.file or "")
    return path if path.is_absolute() else registers_dir / path


def read_sql_source(source: SourceSpec, register_id: str, folder: Path) -> Path:
    """Run the source's query against the database its environment variable names; the rows as Parquet."""
    url = os.environ.get(source.url_env or "")
    if not url:
        raise SourceUnavailable(f"the environment variable {source.url_env} is not set; set it to the "
                                "database's SQLAlchemy URL (e.g. postgresql+psycopg://user@host/db) where the "
                                "engine runs")
    try:
        db = sa.create_engine(url)
        try:
            with db.connect() as conn:
                frame = pl.read_database(source.query or "", conn)
        finally:
            db.dispose()
    except Exception as exc:  # any driver's error: said as it is, the run fails, nothing is loaded
        raise SourceUnavailable(f"the query of ${source.url_env} failed: {type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:300]}") from exc
    path = folder / f"{register_id}-query.parquet"
    frame.write_parquet(path)
    return path


def run_scheduled_import(engine: Importer, register_id: str, at: dt.datetime | None = None) -> str | None:
    """Read the register's source now; returns the import's run (None: this minute was already read)."""
    at = (at or engine.clock.now()).replace(second=0, microsecond=0)
    with engine.ws.read() as conn:
        reg = read_registers(conn)[register_id]
        if run_store.read_event(conn, import_event_id(register_id, at)) is not None:
            return None
    source = reg.spec.source
    if source is None:
        raise ValueError(f"{register_id} declares no source to read")
    with tempfile.TemporaryDirectory(prefix="runledger-import-") as folder:
        try:
            path = (source_file(source, engine.registers_dir) if source.file
                    else read_sql_source(source, register_id, Path(folder)))
            with engine.ws.transaction() as tx:
                run_id = _open_run(tx, reg, source, at)
                outcome = import_file(tx, reg, path, actor=ACTOR, fmt="parquet" if source.url_env else source.format,
                                      mode=source.mode, origin="sql" if source.url_env else "file",
                                      source=f"${source.url_env}" if source.url_env else None)
                run_store.write_run_fields(tx, run_id, subjects_matched=outcome.result.rows,
                                           started_at=engine.clock.now())
                tx.audit(ACTOR, "run.matched", "run", run_id,
                         {"import_id": outcome.result.import_id, **outcome.result.counts()})
                settle_run_status(tx, run_id, ACTOR)
        except (ImportRefused, SourceUnavailable) as exc:
            with engine.ws.transaction() as tx:  # nothing of the source was loaded; the run says why
                run_id = _open_run(tx, reg, source, at)
                tx.audit(ACTOR, "register.import_refused", "register", register_id,
                         {"source": source.described, "reason": str(exc), "run_id": run_id})
                run_store.write_run_fields(tx, run_id, failure_cause=f"import failed: {exc}",
                                           started_at=engine.clock.now())
                settle_run_status(tx, run_id, ACTOR)
            log.warning("scheduled import of %s failed: %s", register_id, exc)
    engine.dispatch_events()  # the changes it loaded may start automations
    return run_id


def _open_run(tx: Tx, reg: Register, source: SourceSpec, at: dt.datetime) -> str:
    event_id = record_trigger_event(tx, kind=IMPORT, event_type="register.import_scheduled", source="scheduler",
                                    occurred_at=at, definition_id=import_definition_id(reg.kind),
                                    payload={"register": reg.kind, "source": source.described},
                                    event_id=import_event_id(reg.kind, at))
    run_store.claim_event(tx, event_id)  # its run is this one; no automation listens to it
    event: dict[str, Any] = {"event_id": event_id, "kind": IMPORT, "source": "scheduler", "occurred_at": at}
    run_id = run_store.create_run(tx, definition_id=import_definition_id(reg.kind), definition_version=reg.version,
                                  event=event, actor=ACTOR)
    if run_id is None:  # the event was just recorded (a second read of the minute fails on its key): no run yet
        raise RuntimeError(f"{event_id} already had a run")
    return run_id


def sourced_registers(engine: Importer) -> list[tuple[Register, SourceSpec]]:
    """The registers that declare a scheduled source, with it."""
    with engine.ws.read() as conn:
        return [(r, r.spec.source) for r in read_registers(conn).values() if r.declared and r.spec.source]
