"""Bad files for ``registers import``, through the command the CLI runs (``import_register``): each refused
with its exact message, naming the file, what is wrong and what to do; and nothing loaded or half-loaded —
the register's rows, the evidence of changes, the imports, the trigger events and the audit log are as they
were, but for the one audit entry that records the refusal (with the same message).

The register is this file's own (``vendors``), beside the demo organization's. Rows are numbered as the
file shows them: in a CSV or XLSX the header is row 1, so the first subject is row 2.

Every test runs on both backends (``tests/backends.py``): a DuckDB workspace reads the file itself; a
PostgreSQL one reads it through a private DuckDB and streams the rows in, and must refuse the same files
with the same words, and leave as little behind.
"""

from __future__ import annotations

import datetime as dt
import shutil
import textwrap
from pathlib import Path
from typing import Any
from unittest import mock

import openpyxl
import pytest
import sqlalchemy as sa

from engine.commands.refusals import CommandRefused
from engine.commands.registers import import_register
from engine.runtime import Engine
from tests.backends import backend_fixture, pg_server_fixture, workspace_db_fixture  # noqa: F401
from tests.support import DEMO_REGISTERS, actor, audit_of, build_engine

VENDORS = textwrap.dedent("""\
    id: vendors
    title: Vendors
    key: vendor_id
    label: name
    fields:
      vendor_id: string
      name: string
      status: string
      spend: number
      seats: integer
      active: boolean
      review_due: date
    required: [name]
    events:
      vendor.suspended: {field: status, becomes: suspended}
    """)
HEADER = "vendor_id,name,status,spend,seats,active,review_due\n"
GOOD = HEADER + "V1,Acme,active,10.5,3,true,2026-09-30\nV2,Beta,active,1,1,false,2026-10-01\n"
COUNTED = ("vendors", "subject_changes", "register_imports", "trigger_events", "runs")
FIX_OR_SKIP = "Nothing was loaded; correct the file, or pass --skip-bad-rows to load the other rows"


@pytest.fixture
def engine(tmp_path: Path, workspace_db: str) -> Any:
    """A workspace with the vendors register declared and two vendors imported (the state to keep)."""
    registers = tmp_path / "registers"
    shutil.copytree(DEMO_REGISTERS, registers)
    (registers / "vendors.yaml").write_text(VENDORS)
    eng = build_engine(tmp_path, {}, registers_dir=registers, db=workspace_db)
    import_register(eng, actor(eng, "sigrid"), "vendors", write(tmp_path, "vendors.csv", GOOD))
    yield eng
    eng.shutdown()
    eng.ws.close()


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def state(engine: Engine) -> dict[str, Any]:
    with engine.ws.read() as conn:
        out: dict[str, Any] = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in COUNTED}
        out["rows"] = [tuple(r) for r in conn.execute(sa.text("SELECT * FROM vendors ORDER BY vendor_id"))]
        if engine.ws.is_duckdb:  # lowered for an import, and restored after it
            out["memory_limit"] = conn.execute(sa.text("SELECT current_setting('memory_limit')")).scalar_one()
    out["audit"] = [(e["actor"], e["event"], e["entity_id"]) for e in audit_of(engine)]
    return out


def refused(engine: Engine, path: Path, message: str, **options: Any) -> None:
    """The import is refused with exactly ``message``, and nothing changed but the refusal's audit entry."""
    before = state(engine)
    with pytest.raises(CommandRefused) as caught:
        import_register(engine, actor(engine, "sigrid"), "vendors", path, **options)
    assert str(caught.value) == message
    after = state(engine)
    assert after["audit"][:-1] == before["audit"]
    assert after["audit"][-1] == ("member:sigrid", "register.import_refused", "vendors")
    assert audit_of(engine, "register.import_refused")[-1]["payload"] == {"file": path.name, "reason": message}
    assert {k: v for k, v in after.items() if k != "audit"} == {k: v for k, v in before.items() if k != "audit"}
    assert engine.ws.verify_audit().intact


# --- wrong values ---------------------------------------------------------------------------------------
BAD_TYPES = HEADER + ("V1,Acme,active,10.5,3,true,2026-09-30\n"
                      "V2,Beta,active,lots,1,false,2026-10-01\n"
                      "V3,Gamma,active,1,x,false,2026-13-01\n"
                      "V4,Delta,suspended,2,2,true,2026-11-01\n")


def test_a_wrong_type_names_the_row_the_field_and_the_value_and_refuses_the_whole_file(engine: Engine,
                                                                                         tmp_path: Path) -> None:
    refused(engine, write(tmp_path, "bad.csv", BAD_TYPES),
            f"bad.csv: row 3: field 'spend' must be a number, not 'lots' (and 2 more problems). {FIX_OR_SKIP}")


def test_skip_bad_rows_loads_the_rest_and_lists_the_refused_rows(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "bad.csv", BAD_TYPES)
    report = import_register(engine, actor(engine, "sigrid"), "vendors", path, skip_bad_rows=True)
    r, f = report.outcome.result, report.outcome.file
    assert report.lines() == [
        f"{r.import_id} into vendors: 2 rows — 1 added, 0 changed, 1 unchanged, 0 withdrawn, 2 refused; "
        "1 event raised",
        f"  file: bad.csv ({f.bytes:,} bytes, sha256 {f.sha256})",
        "  refused: row 3: field 'spend' must be a number, not 'lots'",
        "  refused: row 4: field 'review_due' must be a date like 2026-09-30, not '2026-13-01'",
        "  refused: row 4: field 'seats' must be a whole number, not 'x'",
        "  event vendor.suspended: 1",
        "runs started: none"]
    with engine.ws.read() as conn:
        rows = dict(conn.execute(sa.text("SELECT vendor_id, spend FROM vendors ORDER BY 1")).all())
    assert rows == {"V1": 10.5, "V2": 1.0, "V4": 2.0}  # V2 kept its loaded value; V3 never arrived
    [entry] = audit_of(engine, "register.imported")[-1:]
    assert entry["payload"]["refused"] == 2
    assert entry["payload"]["refused_rows"] == [line.removeprefix("  refused: ") for line in report.lines()[2:5]]


def test_skip_bad_rows_in_replace_mode_does_not_withdraw_a_refused_rows_key(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "replace.csv", HEADER + "V1,Acme,active,10.5,3,true,2026-09-30\n"
                                                   "V2,Beta,active,lots,1,false,2026-10-01\n")
    result = import_register(engine, actor(engine, "sigrid"), "vendors", path, mode="replace",
                             skip_bad_rows=True).outcome.result
    assert (result.unchanged, result.refused, result.withdrawn) == (1, 1, 0)


def test_an_empty_key_and_an_empty_required_field(engine: Engine, tmp_path: Path) -> None:
    refused(engine, write(tmp_path, "nokey.csv", HEADER + " ,Acme,active,1,1,true,2026-09-30\n"),
            f"nokey.csv: row 2: no vendor_id (the key of vendors; every row needs one). {FIX_OR_SKIP}")
    refused(engine, write(tmp_path, "noname.csv", HEADER + "V9,,active,1,1,true,2026-09-30\n"),
            f"noname.csv: row 2: field 'name' is empty; every row of vendors must hold it. {FIX_OR_SKIP}")


def test_every_row_refused_loads_nothing_even_when_skipping(engine: Engine, tmp_path: Path) -> None:
    refused(engine, write(tmp_path, "allbad.csv", HEADER + "V1,Acme,active,lots,1,true,2026-09-30\n"),
            "allbad.csv: every row was refused (1); the first: row 2: field 'spend' must be a number, not 'lots'. "
            "Nothing was loaded; correct the file", skip_bad_rows=True)


def test_a_duplicated_key_names_every_row_that_holds_it(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "dup.csv", HEADER + "V1,Acme,active,1,1,true,2026-09-30\n"
                                               "V5,Epsilon,active,1,1,true,2026-09-30\n"
                                               "V1,Acme Two,active,1,1,true,2026-09-30\n")
    refused(engine, path, "dup.csv: row 2: key 'V1' appears in rows 2 and 4; each vendors key may appear once "
                          f"(and 1 more problem). {FIX_OR_SKIP}")
    report = import_register(engine, actor(engine, "sigrid"), "vendors", path, skip_bad_rows=True)
    assert report.outcome.refused_rows == [  # which of them is right cannot be told: both are refused
        "row 2: key 'V1' appears in rows 2 and 4; each vendors key may appear once",
        "row 4: key 'V1' appears in rows 2 and 4; each vendors key may appear once"]
    assert (report.outcome.result.added, report.outcome.result.refused) == (1, 2)


def test_an_xlsx_row_is_numbered_as_the_spreadsheet_shows_it(engine: Engine, tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(HEADER.strip().split(","))
    sheet.append(["V6", "Sheet", "active", 2.5, 3, True, dt.datetime(2026, 9, 30)])
    sheet.append(["V7", "Bad", "active", 1, 2.5, False, dt.datetime(2026, 9, 30)])
    book.save(tmp_path / "vendors.xlsx")
    refused(engine, tmp_path / "vendors.xlsx",
            f"vendors.xlsx: row 3: field 'seats' must be a whole number, not '2.5'. {FIX_OR_SKIP}")


# --- wrong columns --------------------------------------------------------------------------------------
def test_a_missing_key_column(engine: Engine, tmp_path: Path) -> None:
    refused(engine, write(tmp_path, "nokeycol.csv", "name,status\nAcme,active\n"),
            "nokeycol.csv has no column 'vendor_id', the key of vendors; its columns are name, status. Add the "
            "column, or name the one that holds each subject's key 'vendor_id'. Nothing was loaded")


def test_a_missing_required_column(engine: Engine, tmp_path: Path) -> None:
    refused(engine, write(tmp_path, "noname.csv", "vendor_id,status\nV1,active\n"),
            "noname.csv has no column name, which every row of vendors must hold; add it. Nothing was loaded")


def test_an_unknown_column_is_refused_unless_extra_columns_are_ignored(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path, "extra.csv", "vendor_id,name,colour\nV1,Acme,red\nV8,Eta,blue\n")
    refused(engine, path, "extra.csv has column(s) colour that vendors does not declare (its fields: vendor_id, "
                          "name, status, spend, seats, active, review_due); declare them in the register's file, or "
                          "pass --ignore-extra-columns to load the rest. Nothing was loaded")
    result = import_register(engine, actor(engine, "sigrid"), "vendors", path,
                             ignore_extra_columns=True).outcome.result
    assert (result.added, result.unchanged, result.refused) == (1, 1, 0)
    with engine.ws.read() as conn:  # the other fields of V1 are untouched: the file does not name them
        assert conn.execute(sa.text("SELECT name, status, spend FROM vendors WHERE vendor_id = 'V1'")).one() \
            == ("Acme", "active", 10.5)


def test_a_header_that_names_a_column_twice(engine: Engine, tmp_path: Path) -> None:
    refused(engine, write(tmp_path, "twice.csv", "vendor_id,name,name\nV1,A,B\n"),
            "twice.csv: column 'name' appears twice in the header; each column may appear once")


def test_a_row_with_too_few_values(engine: Engine, tmp_path: Path) -> None:
    refused(engine, write(tmp_path, "ragged.csv", HEADER + "V1,Acme,active,1,1,true,2026-09-30\nV2,Beta,active\n"),
            "ragged.csv: row 3 has 3 values, but the header names 7 columns; every row needs one value per column "
            "(leave it empty between the delimiters if it is unknown). Nothing was loaded")


def test_a_quote_that_never_closes(engine: Engine, tmp_path: Path) -> None:
    refused(engine, write(tmp_path, "quote.csv", HEADER + 'V1,"Acme, Inc,active,1,1,true,2026-09-30\n'),
            "quote.csv: row 2 opens a quoted value that never closes; close the quote (a quote inside a value is "
            "written twice). Nothing was loaded")


# --- the wrong file -------------------------------------------------------------------------------------
def test_a_parquet_file_that_is_really_text(engine: Engine, tmp_path: Path) -> None:
    refused(engine, write(tmp_path, "vendors.parquet", GOOD),
            "vendors.parquet is not a Parquet file: it holds text that looks like CSV; rename it .csv or pass "
            "--format csv. Nothing was loaded")


def test_an_xlsx_file_that_is_a_csv(engine: Engine, tmp_path: Path) -> None:
    refused(engine, write(tmp_path, "vendors.xlsx", GOOD),
            "vendors.xlsx is not an XLSX workbook: it holds text that looks like CSV; rename it .csv or pass "
            "--format csv. Nothing was loaded")


def test_a_csv_that_is_a_parquet_file_or_binary(engine: Engine, tmp_path: Path) -> None:
    refused(engine, write(tmp_path, "vendors.csv", b"PAR1" + bytes(64)),
            "vendors.csv is not a CSV file: it is a Parquet file; rename it .parquet or pass --format parquet. "
            "Nothing was loaded")
    refused(engine, write(tmp_path, "vendors.csv", bytes(range(256))),
            "vendors.csv is not a CSV file: it holds binary data; export it again as CSV (UTF-8), Parquet, XLSX "
            "or JSON lines. Nothing was loaded")


def test_a_json_lines_file_with_a_line_that_is_not_json(engine: Engine, tmp_path: Path) -> None:
    refused(engine, write(tmp_path, "vendors.jsonl", '{"vendor_id": "V1", "name": "Acme"}\nnot json\n'),
            'vendors.jsonl: line 2 is not a JSON object; each line must hold one object, like '
            '{"id": "V-1", "name": "Acme"}. Nothing was loaded')


def test_an_unknown_extension(engine: Engine, tmp_path: Path) -> None:
    refused(engine, write(tmp_path, "vendors.txt", GOOD),
            "vendors.txt: cannot tell the format from the extension '.txt'; name the file .csv, .parquet, .xlsx "
            "or .jsonl, or pass --format (csv, jsonl, parquet, xlsx)")


def test_an_empty_file(engine: Engine, tmp_path: Path) -> None:
    refused(engine, write(tmp_path, "empty.csv", ""),
            "empty.csv is empty (0 bytes); nothing was loaded. Export it again: the file needs a header row naming "
            "the columns, then one row per subject")


def test_a_header_only_file_even_in_replace_mode(engine: Engine, tmp_path: Path) -> None:
    message = ("header.csv has a header but no rows; nothing was loaded. Export it again with its rows (a file "
               "with no rows never withdraws a register's subjects)")
    refused(engine, write(tmp_path, "header.csv", HEADER), message)
    refused(engine, tmp_path / "header.csv", message, mode="replace")


def test_a_file_that_does_not_exist(engine: Engine, tmp_path: Path) -> None:
    refused(engine, tmp_path / "nowhere.csv",
            f"there is no file {tmp_path / 'nowhere.csv'}; check the path and the file's name (nothing was loaded)")
    refused(engine, tmp_path, f"{tmp_path} is a folder, not a file; name the file to import")


# --- nothing half-loaded ----------------------------------------------------------------------------------
def test_a_failure_after_the_writes_began_leaves_nothing_behind(engine: Engine, tmp_path: Path) -> None:
    """The load is one transaction: a failure after its evidence was written rolls all of it back, and the
    database's memory limit, lowered for the import, is as it was."""
    path = write(tmp_path, "changed.csv", HEADER + "V1,Acme,suspended,10.5,3,true,2026-09-30\n"
                                                   "V9,Iota,active,1,1,true,2026-09-30\n")
    before = state(engine)
    with mock.patch("store.subjects._write_events", side_effect=RuntimeError("disk gone")), \
            pytest.raises(RuntimeError, match="disk gone"):
        import_register(engine, actor(engine, "sigrid"), "vendors", path)
    assert state(engine) == before
    assert engine.ws.verify_audit().intact
    result = import_register(engine, actor(engine, "sigrid"), "vendors", path).outcome.result  # and it still works
    assert (result.added, result.changed, len(result.events)) == (1, 1, 1)


def test_an_import_the_database_has_not_the_memory_for_is_refused_whole_saying_what_to_raise(
        engine: Engine, tmp_path: Path) -> None:
    """Before, the command raised the store's error as it was ("Free disk space or repair the storage"), and
    the Registers page, which shows refusals, had no answer for it."""
    rows = "".join(f"W{i:07d},Vendor {i},active,{i % 1000}.5,{i % 50},true,2026-09-30\n" for i in range(300_000))
    path = write(tmp_path, "many.csv", HEADER + rows)
    before = state(engine)
    with mock.patch("store.imports.IMPORT_MEMORY", "4MB"), pytest.raises(CommandRefused) as caught:
        import_register(engine, actor(engine, "sigrid"), "vendors", path)
    said = str(caught.value)
    assert "could not be written: the database ran out of the memory allowed to it (Out of Memory Error" in said
    assert said.endswith("this change was rolled back and nothing of it was saved. For a large import, raise "
                         "RUNLEDGER_IMPORT_MEMORY (default 256MB, e.g. 1GB); otherwise free memory, then try again.")
    after = state(engine)
    assert after["audit"][-1] == ("member:sigrid", "register.import_refused", "vendors")
    assert {k: v for k, v in after.items() if k != "audit"} == {k: v for k, v in before.items() if k != "audit"}
