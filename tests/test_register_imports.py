"""A register file import, the same on both backends (``tests/backends.py``: each test runs on DuckDB and on
PostgreSQL): a good file loaded with its evidence (the rows, one ``subject_changes`` row per subject, the
``register_imports`` row with the file's SHA-256, the audit entry); a re-import loads only its delta and
raises the declared change's event; ``--mode replace`` withdraws what the file no longer lists and a later
import restores it; every type, in every format, arrives as the same value; and the command line imports
into a PostgreSQL workspace as into a DuckDB file.

On PostgreSQL the file is read and checked by a private DuckDB and its rows streamed in by ``COPY``
(``store/imports_pg.py``): these tests prove that the values survive that trip exactly, and that nothing of
the private database is left behind. The refusals of bad files are proved on both backends in
``tests/bad_input/test_import_errors.py``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import polars as pl
import pytest
import sqlalchemy as sa

from engine.commands.refusals import CommandRefused
from engine.commands.registers import ImportReport, import_register
from engine.runtime import Engine
from tests.backends import backend_fixture, pg_server_fixture, workspace_db_fixture  # noqa: F401
from tests.support import DEMO_REGISTERS, actor, audit_of, build_engine

REPO = Path(__file__).resolve().parent.parent
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
      checked_at: timestamp
    required: [name]
    events:
      vendor.suspended: {field: status, becomes: suspended}
    """)
HEADER = "vendor_id,name,status,spend,seats,active,review_due,checked_at\n"
GOOD = HEADER + ("V1,Acme,active,10.5,3,true,2026-09-30,2026-09-30 14:00:00+00\n"
                 "V2,Beta,active,1,1,false,2026-10-01,\n")
UTC = dt.UTC


@pytest.fixture
def private_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary folder of this test alone, where a PostgreSQL import keeps its private database."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def engine(tmp_path: Path, workspace_db: str, private_temp: Path) -> Iterator[Engine]:
    registers = tmp_path / "registers"
    shutil.copytree(DEMO_REGISTERS, registers)
    (registers / "vendors.yaml").write_text(VENDORS)
    eng = build_engine(tmp_path, {}, registers_dir=registers, db=workspace_db)
    yield eng
    eng.shutdown()
    eng.ws.close()


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def load(engine: Engine, path: Path, **options: Any) -> ImportReport:
    return import_register(engine, actor(engine, "sigrid"), "vendors", path, **options)


def query(engine: Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.ws.read() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params)]


def changes(engine: Engine, import_id: str) -> dict[str, tuple[str, Any, Any]]:
    """subject → (change, before, after) of one import's evidence."""
    rows = query(engine, "SELECT subject_id, change, before, after FROM subject_changes WHERE import_id = :i",
                 i=import_id)
    return {s: (c, json.loads(b) if b else None, json.loads(a) if a else None) for s, c, b, a in rows}


def test_a_good_file_is_loaded_with_its_evidence(engine: Engine, tmp_path: Path, private_temp: Path) -> None:
    path = write(tmp_path, "vendors.csv", GOOD)
    report = load(engine, path)
    r = report.outcome.result
    assert r.counts() == {"rows": 2, "added": 2, "changed": 0, "unchanged": 0, "withdrawn": 0, "refused": 0,
                          "events": 0}
    assert query(engine, "SELECT vendor_id, name, status, spend, seats, active, review_due, checked_at "
                         "FROM vendors ORDER BY vendor_id") == [
        ("V1", "Acme", "active", 10.5, 3, True, dt.date(2026, 9, 30), dt.datetime(2026, 9, 30, 14, tzinfo=UTC)),
        ("V2", "Beta", "active", 1.0, 1, False, dt.date(2026, 10, 1), None)]
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    assert query(engine, "SELECT import_id, register_id, origin, source, format, bytes, sha256, mode, rows, added, "
                         "actor FROM register_imports WHERE register_id = 'vendors'") == [
        (r.import_id, "vendors", "file", "vendors.csv", "csv", path.stat().st_size, sha256, "upsert", 2, 2,
         "member:sigrid")]
    evidence = changes(engine, r.import_id)
    assert {s: c for s, (c, _, _) in evidence.items()} == {"V1": "added", "V2": "added"}
    assert evidence["V2"][2] == {"vendor_id": "V2", "name": "Beta", "status": "active", "spend": 1.0, "seats": 1,
                                 "active": False, "review_due": "2026-10-01", "checked_at": None}
    [entry] = audit_of(engine, "register.imported", "vendors")
    assert entry["payload"]["sha256"] == sha256 and entry["payload"]["added"] == 2
    assert engine.ws.verify_audit().intact
    assert list(private_temp.iterdir()) == []  # nothing of a private database is left behind


def test_a_re_import_loads_its_delta_and_raises_the_declared_change(engine: Engine, tmp_path: Path) -> None:
    first = load(engine, write(tmp_path, "vendors.csv", GOOD)).outcome.result
    changed = HEADER + ("V1,Acme,suspended,10.5,3,true,2026-09-30,2026-09-30 14:00:00+00\n"
                        "V2,Beta,active,1,1,false,2026-10-01,\n"
                        "V3,Gamma,active,7.25,2,true,2026-11-01,2026-10-02T08:30:00+02:00\n")
    report = load(engine, write(tmp_path, "vendors-2.csv", changed))
    r = report.outcome.result
    assert (r.rows, r.added, r.changed, r.unchanged, r.withdrawn) == (3, 1, 1, 1, 0)
    assert [(name, subject) for _, name, subject in r.events] == [("vendor.suspended", "V1")]
    evidence = changes(engine, r.import_id)
    assert {s: c for s, (c, _, _) in evidence.items()} == {"V1": "changed", "V3": "added"}
    assert (evidence["V1"][1]["status"], evidence["V1"][2]["status"]) == ("active", "suspended")
    assert query(engine, "SELECT event_type, subject_id FROM trigger_events WHERE event_type = 'vendor.suspended'") \
        == [("vendor.suspended", "V1")]
    assert query(engine, "SELECT checked_at FROM vendors WHERE vendor_id = 'V3'") == [
        (dt.datetime(2026, 10, 2, 6, 30, tzinfo=UTC),)]
    assert query(engine, "SELECT import_id FROM register_imports WHERE register_id = 'vendors' ORDER BY 1") == [
        (first.import_id,), (r.import_id,)]
    again = load(engine, write(tmp_path, "vendors-3.csv", changed)).outcome.result  # the same file: no change
    assert (again.added, again.changed, again.unchanged, len(again.events)) == (0, 0, 3, 0)
    assert changes(engine, again.import_id) == {}


def test_replace_withdraws_what_the_file_no_longer_lists_and_an_import_restores_it(engine: Engine,
                                                                                    tmp_path: Path) -> None:
    load(engine, write(tmp_path, "vendors.csv", GOOD))
    only_v2 = HEADER + "V2,Beta,active,1,1,false,2026-10-01,\n"
    r = load(engine, write(tmp_path, "only-v2.csv", only_v2), mode="replace").outcome.result
    assert (r.unchanged, r.withdrawn) == (1, 1)
    assert changes(engine, r.import_id) == {"V1": ("withdrawn", None, None)}
    withdrawn = dict(query(engine, "SELECT vendor_id, _withdrawn_at IS NOT NULL FROM vendors"))
    assert withdrawn == {"V1": True, "V2": False}  # kept for history, never matched again
    assert query(engine, "SELECT mode, withdrawn FROM register_imports WHERE import_id = :i", i=r.import_id) == [
        ("replace", 1)]
    back = load(engine, write(tmp_path, "back.csv", GOOD)).outcome.result
    assert (back.changed, back.unchanged) == (1, 1)
    assert changes(engine, back.import_id)["V1"][0] == "restored"
    assert dict(query(engine, "SELECT vendor_id, _withdrawn_at IS NULL FROM vendors")) == {"V1": True, "V2": True}


# --- every type, in every format ------------------------------------------------------------------------
ODD = 'Acme, "Inc"\nsecond line'  # a delimiter, quotes and a line break in one value
# Numbers a 32-bit float holds exactly: DuckDB stores a register's ``number`` as FLOAT (32 bits), PostgreSQL
# as double precision (both from ``sa.Float``), so only these arrive as the same value on both; and in 15
# significant digits, all an XLSX cell keeps.
EXPECTED = [  # vendor_id, name, status, spend, seats, active, review_due, checked_at
    ("V1", ODD, "", 1.5 * 2.0 ** 40, -9_000_000_000_000, True, dt.date(1999, 12, 31),
     dt.datetime(2026, 9, 30, 14, tzinfo=UTC)),
    ("V2", "\\.", None, 2.0 ** -15, 0, False, dt.date(2026, 2, 28), None),
    ("V3", "  spaced  ", "naïve ✓", -1234.5, 42, None, None, dt.datetime(2026, 1, 1, 23, 59, 59, tzinfo=UTC)),
]


def _csv(folder: Path) -> Path:
    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, str):
            return '"' + v.replace('"', '""') + '"'
        return {True: "true", False: "false"}.get(v, str(v)) if isinstance(v, bool) else str(v)
    return write(folder, "vendors.csv", HEADER + "".join(",".join(cell(v) for v in r) + "\n" for r in EXPECTED))


def _frame() -> pl.DataFrame:
    names = HEADER.strip().split(",")
    return pl.DataFrame([dict(zip(names, r, strict=True)) for r in EXPECTED],
                        schema={"vendor_id": pl.String, "name": pl.String, "status": pl.String, "spend": pl.Float64,
                                "seats": pl.Int64, "active": pl.Boolean, "review_due": pl.Date,
                                "checked_at": pl.Datetime("us", "UTC")})


def _parquet(folder: Path) -> Path:
    _frame().write_parquet(folder / "vendors.parquet")
    return folder / "vendors.parquet"


def _jsonl(folder: Path) -> Path:
    _frame().write_ndjson(folder / "vendors.jsonl")
    return folder / "vendors.jsonl"


def _xlsx(folder: Path) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(HEADER.strip().split(","))
    for r in EXPECTED:  # a spreadsheet holds no time zones: the time as text, with its offset
        sheet.append([*r[:6], dt.datetime.combine(r[6], dt.time()) if r[6] else None,
                      r[7].isoformat(sep=" ") if r[7] else None])
    book.save(folder / "vendors.xlsx")
    return folder / "vendors.xlsx"


@pytest.mark.parametrize("make", [_csv, _parquet, _jsonl, _xlsx], ids=["csv", "parquet", "jsonl", "xlsx"])
def test_every_type_arrives_as_the_same_value_in_every_format(engine: Engine, tmp_path: Path, make: Any) -> None:
    path = make(tmp_path)
    assert load(engine, path).outcome.result.added == 3
    got = query(engine, "SELECT vendor_id, name, status, spend, seats, active, review_due, checked_at FROM vendors "
                        "ORDER BY vendor_id")
    # A CSV value or a spreadsheet cell that is empty is nothing (NULL), even quoted; Parquet and JSON lines
    # tell an empty string from nothing.
    expected = [(*r[:2], None if r[2] == "" and path.suffix in (".csv", ".xlsx") else r[2], *r[3:])
                for r in EXPECTED]
    assert got == expected


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_nul_character_postgresql_cannot_store_is_refused_naming_its_row(engine: Engine, tmp_path: Path,
                                                                           private_temp: Path) -> None:
    # Beyond the first 4 KiB, which are read to tell the file's format (a NUL there is a binary file).
    filler = "".join(f"F{i:03d},Filler {i},active,1,1,true,2026-10-01,\n" for i in range(120))
    path = write(tmp_path, "nul.csv", GOOD + filler + "V3,Gam\x00ma,active,1,1,true,2026-10-01,\n")
    with pytest.raises(CommandRefused) as caught:
        load(engine, path)
    assert str(caught.value) == (
        "nul.csv: row 124: field 'name' holds a NUL character (byte 0), which the workspace's database cannot store; "
        "remove it from the value. Nothing was loaded; correct the file, or pass --skip-bad-rows to load the other "
        "rows")
    assert query(engine, "SELECT count(*) FROM vendors") == [(0,)]
    assert list(private_temp.iterdir()) == []
    assert load(engine, path, skip_bad_rows=True).outcome.result.added == 122


# --- the command line -------------------------------------------------------------------------------------
def test_the_command_line_imports_a_file_and_refuses_a_bad_one(workspace_db: str, tmp_path: Path) -> None:
    for sub in ("registers", "definitions", "integrations"):
        (tmp_path / sub).mkdir()
    (tmp_path / "registers" / "vendors.yaml").write_text(VENDORS)
    (tmp_path / "ada.pw").write_text("ada-correct-horse-battery\n")

    def cli(*args: str, code: int = 0) -> str:
        done = subprocess.run([sys.executable, "-m", "engine", "--db", workspace_db, "--definitions",
                               str(tmp_path / "definitions"), "--registers", str(tmp_path / "registers"),
                               "--integrations", str(tmp_path / "integrations"), *args],
                              cwd=REPO, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "RUNLEDGER_DB": ""})
        assert done.returncode == code, (args, done.stdout, done.stderr)
        return done.stdout

    cli("init", "--admin", "ada", "--password-file", str(tmp_path / "ada.pw"))
    path = write(tmp_path, "vendors.csv", GOOD)
    out = cli("registers", "import", "vendors", str(path), "--as", "ada").splitlines()
    assert out[0].endswith("into vendors: 2 rows — 2 added, 0 changed, 0 unchanged, 0 withdrawn, 0 refused; "
                           "0 events raised")
    assert out[1] == f"  file: vendors.csv ({path.stat().st_size:,} bytes, sha256 " \
                     f"{hashlib.sha256(path.read_bytes()).hexdigest()})"
    bad = write(tmp_path, "bad.csv", GOOD.replace("V2,Beta,active,1,", "V2,Beta,suspended,lots,"))
    said = cli("registers", "import", "vendors", str(bad), "--as", "ada", code=1)
    assert "bad.csv: row 3: field 'spend' must be a number, not 'lots'. Nothing was loaded" in said
    shown = cli("registers", "show", "vendors")
    assert "subjects: 2" in shown
    assert cli("verify-audit").startswith("audit chain intact:")


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_refusal_kept_in_the_audit_log_never_holds_the_databases_password(
        tmp_path: Path, workspace_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write the database refused is explained naming the workspace, and an import's refusal is kept in
    the audit log for good: a PostgreSQL URL's password was in both."""
    with_password = sa.make_url(workspace_db).set(password="s3cret-pw").render_as_string(hide_password=False)
    registers = tmp_path / "registers"
    shutil.copytree(DEMO_REGISTERS, registers)
    (registers / "vendors.yaml").write_text(VENDORS)
    engine = build_engine(tmp_path, {}, registers_dir=registers, db=with_password)  # the test server trusts all
    try:
        rows = "".join(f"W{i:07d},Vendor {i},active,1.5,1,true,2026-09-30,\n" for i in range(300_000))
        monkeypatch.setattr("store.imports.IMPORT_MEMORY", "4MB")
        with pytest.raises(CommandRefused) as caught:
            load(engine, write(tmp_path, "many.csv", HEADER + rows))
        said = str(caught.value)
        assert "ran out of the memory allowed to it" in said and "s3cret-pw" not in said
        assert sa.make_url(with_password).render_as_string(hide_password=True) in said
        assert "s3cret-pw" not in json.dumps(audit_of(engine), default=str)
    finally:
        engine.shutdown()
        engine.ws.close()
