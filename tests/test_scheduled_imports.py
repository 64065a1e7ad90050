"""A register's declared source, read on its schedule: each read is a run of kind ``import`` (seen on Runs),
loads through the one import path with its evidence, raises the declared events (whose automations run),
never reads the same minute twice, and a failure — a missing file, an unset variable, a query the database
refuses — is a failed run saying why, with nothing loaded. Each test runs on DuckDB and on PostgreSQL
(``tests/backends.py``)."""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from engine.runtime import Engine
from engine.scheduled_imports import import_definition_id, run_scheduled_import
from tests.backends import backend_fixture, pg_server_fixture, workspace_db_fixture  # noqa: F401
from tests.support import DEMO_REGISTERS, audit_of, build_engine, run_of, scalar

VENDORS = """\
id: vendors
title: Vendors
key: vendor_id
label: name
fields:
  vendor_id: string
  name: string
  status: string
  contract_ends: date
events:
  vendor.terminated: {field: status, becomes: terminated}
source:
  {where}
  schedule: "0 5 * * *"
"""
TERMINATED = """\
id: vendor-terminated
title: Terminated vendor finding
trigger: {kind: event, event: vendor.terminated}
condition:
  subject: vendors
  where:
    - {field: status, op: eq, value: terminated, reason: the vendor is no longer terminated}
actions:
  - actioner: findings.create
    params: {title: "Vendor {{ subject.name }} terminated", severity: low, owner: procurement}
"""
CSV = "vendor_id,name,status,contract_ends\nV-1,Acme,active,2027-01-31\nV-2,Globex,{v2},2026-12-31\n"


def _engine(tmp_path: Path, where: str, db: str) -> Engine:
    registers = tmp_path / "registers"
    shutil.copytree(DEMO_REGISTERS, registers)
    (registers / "vendors.yaml").write_text(VENDORS.replace("{where}", where))
    return build_engine(tmp_path, {"vendor-terminated": TERMINATED}, registers_dir=registers, db=db)


@pytest.fixture
def file_engine(tmp_path: Path, workspace_db: str) -> Any:
    engine = _engine(tmp_path, "file: vendors.csv", workspace_db)  # relative: beside the declaration
    yield engine
    engine.shutdown()
    engine.ws.close()


def test_a_file_source_is_read_as_a_run_of_its_own(file_engine: Engine) -> None:
    (file_engine.registers_dir / "vendors.csv").write_text(CSV.format(v2="active"))
    run_id = run_scheduled_import(file_engine, "vendors")
    assert run_id is not None
    run = run_of(file_engine, run_id)
    assert (run["definition_id"], run["trigger_kind"], run["status"], run["subjects_matched"]) == (
        import_definition_id("vendors"), "import", "completed", 2)
    [matched] = audit_of(file_engine, "run.matched", run_id)
    assert matched["payload"]["added"] == 2 and matched["payload"]["import_id"].startswith("IMP-")
    assert scalar(file_engine, "SELECT origin || ':' || source FROM register_imports "
                               "WHERE register_id = 'vendors'") == "file:vendors.csv"

    # The same minute again (a scheduler that fired twice) reads nothing; the next day's read loads the change.
    assert run_scheduled_import(file_engine, "vendors") is None
    (file_engine.registers_dir / "vendors.csv").write_text(CSV.format(v2="terminated"))
    file_engine.clock.advance_to(file_engine.clock.now() + dt.timedelta(days=1))
    second = run_scheduled_import(file_engine, "vendors")
    assert second is not None and run_of(file_engine, second)["status"] == "completed"
    started = scalar(file_engine, "SELECT run_id FROM runs WHERE definition_id = 'vendor-terminated'")
    assert run_of(file_engine, started)["status"] == "completed"
    assert scalar(file_engine, "SELECT title FROM findings") == "Vendor Globex terminated"


def test_a_missing_file_is_a_failed_run_that_says_why(file_engine: Engine) -> None:
    run_id = run_scheduled_import(file_engine, "vendors")
    assert run_id is not None
    run = run_of(file_engine, run_id)
    assert run["status"] == "failed"
    path = file_engine.registers_dir / "vendors.csv"
    assert run["failure_cause"] == (f"import failed: there is no file {path}; check the path and the file's name "
                                    "(nothing was loaded)")
    assert scalar(file_engine, "SELECT count(*) FROM vendors") == 0
    assert scalar(file_engine, "SELECT count(*) FROM register_imports WHERE register_id = 'vendors'") == 0
    [refused] = audit_of(file_engine, "register.import_refused")
    assert refused["payload"]["run_id"] == run_id


def _sqlite(path: Path) -> str:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE vendor_master (id TEXT, vendor_name TEXT, state TEXT, ends TEXT)")
    db.executemany("INSERT INTO vendor_master VALUES (?, ?, ?, ?)",
                   [("V-1", "Acme", "active", "2027-01-31"), ("V-3", "Initech", "active", "2027-06-30")])
    db.commit()
    db.close()
    return f"sqlite:///{path}"


def test_a_sql_source_reads_its_url_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          workspace_db: str) -> None:
    query = ("select id as vendor_id, vendor_name as name, state as status, ends as contract_ends "
             "from vendor_master")
    engine = _engine(tmp_path, "sql: {url_env: VENDOR_DB_URL, query: \"" + query + "\"}", workspace_db)
    try:
        monkeypatch.delenv("VENDOR_DB_URL", raising=False)
        failed = run_scheduled_import(engine, "vendors")
        assert failed is not None
        assert run_of(engine, failed)["failure_cause"] == (
            "import failed: the environment variable VENDOR_DB_URL is not set; set it to the database's "
            "SQLAlchemy URL (e.g. postgresql+psycopg://user@host/db) where the engine runs")

        monkeypatch.setenv("VENDOR_DB_URL", _sqlite(tmp_path / "vendors.sqlite"))
        engine.clock.advance_to(engine.clock.now() + dt.timedelta(minutes=1))
        loaded = run_scheduled_import(engine, "vendors")
        assert loaded is not None and run_of(engine, loaded)["status"] == "completed"
        assert scalar(engine, "SELECT string_agg(vendor_id || '=' || name, ',' ORDER BY vendor_id) FROM vendors") == \
            "V-1=Acme,V-3=Initech"
        assert scalar(engine, "SELECT origin FROM register_imports WHERE register_id = 'vendors'") == "sql"
        assert scalar(engine, "SELECT source FROM register_imports WHERE register_id = 'vendors'") == "$VENDOR_DB_URL"
    finally:
        engine.shutdown()
        engine.ws.close()


def test_a_query_the_database_refuses_fails_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    workspace_db: str) -> None:
    engine = _engine(tmp_path, 'sql: {url_env: VENDOR_DB_URL, query: "select * from no_such_table"}', workspace_db)
    try:
        monkeypatch.setenv("VENDOR_DB_URL", _sqlite(tmp_path / "vendors.sqlite"))
        run_id = run_scheduled_import(engine, "vendors")
        assert run_id is not None
        cause = run_of(engine, run_id)["failure_cause"]
        assert cause.startswith("import failed: the query of $VENDOR_DB_URL failed: OperationalError: ")
        assert "no such table: no_such_table" in cause
    finally:
        engine.shutdown()
        engine.ws.close()


def test_the_engine_schedules_each_declared_source(file_engine: Engine) -> None:
    file_engine.start()
    job = file_engine.scheduler.get_job(import_definition_id("vendors"))  # type: ignore[union-attr]
    assert job is not None and str(job.trigger) == "cron[month='*', day='*', day_of_week='*', hour='5', minute='0']"
