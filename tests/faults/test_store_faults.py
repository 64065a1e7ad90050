"""Store faults: a write error inside a batch's transaction or at its commit, a corrupted or truncated
workspace file, a workspace from a newer schema. A batch is written whole or not at all, the error says so
plainly, recovery finishes the work; a file the engine cannot read is refused at open and left as it was.

The write errors run on both backends (tests/backends.py), each failing as its storage does: DuckDB's I/O
error, PostgreSQL's (a file the server cannot write, a full disk). DuckDB only: a damaged or empty file and
a newer schema found in a file are the file's own (PostgreSQL's newer schema: tests/test_postgres_processes.py)."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from invariants import assert_consistent

from store import items as item_store
from store.errors import SchemaTooNew, WorkspaceUnreadable, WriteFailed
from store.migrations import SCHEMA_VERSION
from store.workspace import Workspace
from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import make_engine_fixture, pg_server_fixture, pg_template_fixture  # noqa: F401
from tests.support import FailsTransiently, finding_definition, fire_one, items_of, run_of, scalar


def _outcomes(engine: Any, run_id: str) -> dict[str, str]:
    return {sid: i["outcome"] for sid, i in sorted(items_of(engine, run_id).items())}


class WriteFault:
    """Fails the batch write that sets the ``nth`` batch's outcomes, after its records, ledger entries and
    attempts were already written in the same transaction."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, nth: int, how: str, engine: Any) -> None:
        self.calls, self.nth, self.how, self.armed_commit = 0, nth, how, False
        real_apply = item_store.settle_item_outcomes
        dialect = engine.ws.engine.dialect
        real_commit = dialect.do_commit

        def settle_item_outcomes(tx: Any, updates: Any, *args: Any) -> None:
            self.calls += 1
            real_apply(tx, updates, *args)
            if self.calls != self.nth:
                return
            if self.how == "statement":  # a real I/O error of the database inside the transaction
                missing = f"{engine.ws.path}.missing" if engine.ws.is_duckdb else "/nonexistent-runledger"
                tx.conn.exec_driver_sql(f"COPY (SELECT 1) TO '{missing}/dir/out.csv'")  # PostgreSQL: the server's
            else:
                self.armed_commit = True

        def do_commit(dbapi_connection: Any) -> None:
            if self.armed_commit:  # the commit itself fails (a full disk): the transaction is rolled back
                self.armed_commit = False
                dbapi_connection.rollback()
                if engine.ws.is_duckdb:
                    raise duckdb.IOException('IO Error: Could not write to file "ws.duckdb.wal": No space left on '
                                             'device')
                raise psycopg.errors.DiskFull('could not extend file "base/16384/16411": No space left on device')
            real_commit(dbapi_connection)

        monkeypatch.setattr(item_store, "settle_item_outcomes", settle_item_outcomes)
        monkeypatch.setattr(dialect, "do_commit", do_commit)


@pytest.mark.parametrize("how", ["statement", "commit"])
def test_a_write_error_in_a_batch_leaves_it_unapplied_is_reported_and_recovery_finishes(
        make_engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, how: str) -> None:
    engine = make_engine({"d": finding_definition("d")}, accounts=5, batch_max=2)
    WriteFault(monkeypatch, 2, how, engine)
    shown = re.escape(engine.ws.shown)  # a file's path, or a server's URL with its password hidden
    with caplog.at_level(logging.ERROR, logger="runledger"), \
            pytest.raises(WriteFailed, match=rf"^The workspace {shown} could not be written \(") as raised:
        fire_one(engine)
    message = str(raised.value)
    assert "this change was rolled back and nothing of it was saved" in message
    [run_id] = [r["run_id"] for r in engine.ws.engine.connect().exec_driver_sql(
        "SELECT run_id FROM runs").mappings()]
    # The engine says which run and how many items, in a sentence, and that recovery finishes them.
    [logged] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert logged.getMessage().startswith(f"run {run_id}: the outcomes of 2 items could not be saved: {message}")
    assert "they stay in flight and the engine finishes them once the workspace can be written again" \
        in logged.getMessage()

    # The first batch is recorded whole; the second not at all (no record without its outcome, nor the
    # reverse); the rest were never claimed.
    assert _outcomes(engine, run_id) == {"ACC-001": "succeeded", "ACC-002": "succeeded", "ACC-003": "in-flight",
                                         "ACC-004": "in-flight", "ACC-005": "pending"}
    assert scalar(engine, "SELECT count(*) FROM findings") == 2
    assert scalar(engine, "SELECT count(*) FROM idempotency_records") == 2
    assert scalar(engine, "SELECT count(*) FROM item_attempts") == 2
    assert scalar(engine, "SELECT count(*) FROM audit_log WHERE event = 'item.succeeded'") == 2
    assert run_of(engine, run_id)["status"] == "running"
    assert_consistent(engine)

    # The store can be written again: recovery finishes the run, each item acted on and recorded once.
    assert engine.recover() == [run_id]
    assert set(_outcomes(engine, run_id).values()) == {"succeeded"}
    assert scalar(engine, "SELECT count(DISTINCT source_item_id) FROM findings") == 5
    assert scalar(engine, "SELECT max(attempts) FROM run_items") == 1
    assert run_of(engine, run_id)["status"] == "completed"
    assert_consistent(engine)


def test_a_write_error_in_a_retry_batch_leaves_the_item_retryable(make_engine, monkeypatch) -> None:
    act = FailsTransiently({"ACC-001": 1})
    engine = make_engine({"d": finding_definition("d", retry="max_attempts: 3, backoff_seconds: 60")}, accounts=2,
                         actioners={"findings.create": act})
    run_id = fire_one(engine)
    WriteFault(monkeypatch, 1, "statement", engine)
    engine.clock.sleep(60)
    with pytest.raises(WriteFailed, match="nothing of it was saved"):
        engine.process_due_retries()
    item = items_of(engine, run_id)["ACC-001"]
    assert (item["outcome"], item["attempts"]) == ("in-flight", 1)  # claimed for attempt 2, nothing recorded
    assert_consistent(engine)
    monkeypatch.undo()
    engine.recover()
    item = items_of(engine, run_id)["ACC-001"]
    assert (item["outcome"], item["attempts"]) == ("succeeded", 2)
    assert run_of(engine, run_id)["status"] == "completed"
    assert_consistent(engine)


# --- resuming once the workspace can be written again ----------------------------------------------------
def _stopped_by_a_failed_write(make_engine: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    """An engine whose run stopped with its second batch in flight, its third never claimed."""
    engine = make_engine({"d": finding_definition("d")}, accounts=5, batch_max=2)
    WriteFault(monkeypatch, 2, "commit", engine)
    with pytest.raises(WriteFailed):
        fire_one(engine)
    [run_id] = [r for r, in engine.ws.engine.connect().exec_driver_sql("SELECT run_id FROM runs").all()]
    return engine, run_id


def test_a_live_engine_resumes_a_run_a_failed_write_stopped_once_it_can_write(make_engine, monkeypatch,
                                                                              caplog) -> None:
    engine, run_id = _stopped_by_a_failed_write(make_engine, monkeypatch)
    monkeypatch.undo()  # the disk has room again
    # Within the grace period the run may still be someone's work: left alone.
    assert engine.resume_interrupted() == []
    assert _outcomes(engine, run_id)["ACC-003"] == "in-flight"
    engine.clock.sleep(61)
    with caplog.at_level(logging.WARNING, logger="runledger"):
        assert engine.resume_interrupted() == [run_id]
    assert f"run {run_id}: resuming work that stopped unfinished" in caplog.text
    assert set(_outcomes(engine, run_id).values()) == {"succeeded"}
    assert scalar(engine, "SELECT count(DISTINCT source_item_id) FROM findings") == 5
    assert scalar(engine, "SELECT max(attempts) FROM run_items") == 1
    assert scalar(engine, "SELECT count(*) FROM audit_log WHERE event = 'run.resumed' AND actor = 'engine:resume' "
                          "AND entity_id = :r", r=run_id) == 1
    assert run_of(engine, run_id)["status"] == "completed"
    assert engine.resume_interrupted() == []  # nothing left to resume
    assert_consistent(engine)


def test_the_live_engine_resumes_on_its_own_schedule(make_engine, monkeypatch) -> None:
    monkeypatch.setenv("RUNLEDGER_INTAKE_PORT", "off")
    monkeypatch.setenv("RUNLEDGER_RESUME_SECONDS", "0.2")
    engine = make_engine({"d": finding_definition("d")}, accounts=5, batch_max=2)
    engine.start()
    try:
        assert engine.scheduler.get_job("resume-interrupted").trigger.interval.total_seconds() == 0.2
        with monkeypatch.context() as fault:
            WriteFault(fault, 2, "commit", engine)
            with pytest.raises(WriteFailed):
                fire_one(engine)
        [run_id] = [r for r, in engine.ws.engine.connect().exec_driver_sql("SELECT run_id FROM runs").all()]
        engine.clock.sleep(61)
        deadline = time.monotonic() + 15
        while run_of(engine, run_id)["status"] == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert run_of(engine, run_id)["status"] == "completed"
    finally:
        engine.shutdown()
    assert_consistent(engine)


def test_resuming_while_the_workspace_still_cannot_be_written_waits_for_the_next_round(
        make_engine, monkeypatch, caplog) -> None:
    engine, run_id = _stopped_by_a_failed_write(make_engine, monkeypatch)
    monkeypatch.undo()
    WriteFault(monkeypatch, 1, "commit", engine)  # the disk is still full when the first round comes
    engine.clock.sleep(61)
    with caplog.at_level(logging.ERROR, logger="runledger"):
        assert engine.resume_interrupted() == []  # said, not raised: a scheduler job has no one to tell
    assert f"run {run_id}: still cannot be resumed: The workspace" in caplog.text
    assert "It is tried again in 30 s." in caplog.text
    assert run_of(engine, run_id)["status"] == "running"
    assert_consistent(engine)
    monkeypatch.undo()
    assert engine.resume_interrupted() == [run_id]
    assert run_of(engine, run_id)["status"] == "completed"
    assert_consistent(engine)


def test_a_run_a_thread_of_this_process_holds_is_never_resumed(make_engine, monkeypatch) -> None:
    engine, run_id = _stopped_by_a_failed_write(make_engine, monkeypatch)
    monkeypatch.undo()
    engine.clock.sleep(61)
    engine.executor.work.hold([run_id])  # as a thread still acting on its items would
    assert engine.resume_interrupted() == []
    assert _outcomes(engine, run_id)["ACC-003"] == "in-flight"
    engine.executor.work.release([run_id])
    assert engine.resume_interrupted() == [run_id]


def test_a_run_between_its_creation_and_its_matching_is_held(make_engine, monkeypatch) -> None:
    """The dispatcher holds a run from its creation: the resume round must not match it a second time."""
    engine = make_engine({"d": finding_definition("d")}, accounts=2)
    seen: list[list[str]] = []
    real = engine._execute_started

    def execute_started(started: list[tuple[str, str]]) -> None:
        seen.append(engine.resume_interrupted())  # a resume round lands between creation and matching
        real(started)
    monkeypatch.setattr(engine, "_execute_started", execute_started)
    run_id = fire_one(engine)
    assert seen == [[]]
    assert run_of(engine, run_id)["status"] == "completed"
    assert not engine.executor.work.is_held(run_id)


# --- unreadable files ----------------------------------------------------------------------------------
@pytest.fixture
def real_workspace(make_engine, tmp_path: Path) -> Path:
    """A closed workspace file with a completed run in it."""
    engine = make_engine({"d": finding_definition("d")}, accounts=3, fresh=True)  # its blocks laid as new
    fire_one(engine)
    engine.shutdown()
    engine.ws.close()
    assert not Path(str(engine.ws.path) + ".wal").exists()
    copy = tmp_path / "copy.duckdb"
    shutil.copyfile(engine.ws.path, copy)
    return copy


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _garbage_header(data: bytes) -> bytes:
    return bytes(range(256)) * 16 + data[4096:]


def _garbage_body(data: bytes) -> bytes:
    return data[:12288] + b"\xde\xad\xbe\xef" * ((len(data) - 12288) // 4)


DAMAGE = {
    "truncated-to-half": lambda data: data[: len(data) // 2],
    "truncated-in-the-header": lambda data: data[:100],
    "garbage-header": _garbage_header,
    "garbage-after-the-header": _garbage_body,
    "not-a-database": lambda data: b"PK\x03\x04 this is a zip file, not a workspace\n" * 50,
}


@pytest.mark.parametrize("backend", ["duckdb"])  # a file's own damage
@pytest.mark.parametrize("read_only", [False, True], ids=["read-write", "read-only"])
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_workspace_is_refused_at_open_and_left_untouched(real_workspace: Path, damage: str,
                                                                  read_only: bool) -> None:
    real_workspace.write_bytes(DAMAGE[damage](real_workspace.read_bytes()))
    before = _digest(real_workspace)
    with pytest.raises(WorkspaceUnreadable) as raised:
        ws = Workspace(str(real_workspace), read_only=read_only)
        # A file whose header survived may open: then reading what it holds must fail the same way.
        try:
            ws.verify_audit()
        finally:
            ws.close()
    message = str(raised.value)
    assert message.startswith(f"The workspace {real_workspace} cannot be read: ")
    assert "Nothing was overwritten." in message and "Restore it from a backup" in message
    assert _digest(real_workspace) == before
    assert sorted(p.name for p in real_workspace.parent.iterdir() if p.name.startswith("copy")) == ["copy.duckdb"]


def test_an_empty_workspace_file_is_refused_not_initialised(tmp_path: Path) -> None:
    empty = tmp_path / "empty.duckdb"
    empty.write_bytes(b"")
    with pytest.raises(WorkspaceUnreadable, match=f"^The workspace {empty} cannot be read: .*Nothing was "
                                                  "overwritten"):
        Workspace(str(empty))
    assert empty.read_bytes() == b""


# --- a newer schema ------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["duckdb"])  # the file, untouched and let go
@pytest.mark.parametrize("read_only", [False, True], ids=["read-write", "read-only"])
def test_a_workspace_from_a_newer_schema_is_refused_and_left_untouched(real_workspace: Path, read_only: bool) -> None:
    con = duckdb.connect(str(real_workspace))
    con.execute("UPDATE schema_meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 3)])
    con.close()
    before = _digest(real_workspace)
    with pytest.raises(SchemaTooNew) as raised:
        Workspace(str(real_workspace), read_only=read_only)
    assert str(raised.value) == (
        f"This workspace was written by a newer Runledger (schema {SCHEMA_VERSION + 3}; this one knows up to "
        f"{SCHEMA_VERSION}). Nothing was changed. Upgrade Runledger to open it.")
    assert _digest(real_workspace) == before
    # Refused means let go: another process can open the file at once.
    probe = subprocess.run([sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
                            "print(c.execute(\"SELECT value FROM schema_meta\").fetchone()[0])", str(real_workspace)],
                           capture_output=True, text=True, timeout=60, env=os.environ | {"PYTHONPATH": ""})
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == str(SCHEMA_VERSION + 3)
