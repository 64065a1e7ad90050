"""The Registers page with AppTest on the demo quarter: each declared register with its subjects, last import
and the automations over it; one register's fields, imports (with the file's SHA-256) and subjects, each
linked to the Records page's view of the run items that acted on it; an import run on the Run page."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import sqlalchemy as sa

from core.links import PAGES
from engine.scheduled_imports import run_scheduled_import
from tests.apptest_support import app_engine, open_app

REGISTERS, RUN = PAGES["registers"][0], PAGES["run"][0]


def sql(query: str) -> list[tuple]:
    with app_engine().ws.read() as conn:
        return [tuple(r) for r in conn.execute(sa.text(query))]


def test_the_list_shows_each_register_with_what_it_holds(app_workspace: str) -> None:
    at = open_app("viewer", page=REGISTERS)
    assert not at.exception
    frame = at.dataframe[0].value
    assert list(frame["Title"])[:2] == ["Member accounts", "AML monitor results"]
    accounts = frame[frame["Title"] == "Member accounts"].iloc[0]
    [(n,)] = sql("SELECT count(*) FROM accounts")
    assert accounts["Subjects"] == n and accounts["Used by"] == "kyc-weekly-review"
    assert accounts["Last import"].startswith("2026-") and "engine:demo" in accounts["Last import"]
    assert accounts["Register"].endswith("registers?id=accounts")


def test_one_register_shows_fields_imports_and_subjects(app_workspace: str) -> None:
    at = open_app("viewer", page=REGISTERS, params={"id": "accounts"})
    assert not at.exception
    assert at.title[0].value == "Member accounts"
    fields, imports, subjects = (at.dataframe[i].value for i in range(3))
    assert list(fields["Field"]) == ["account_id", "name", "manager", "status", "kyc_review_due", "risk_rating"]
    assert fields.set_index("Field").loc["status", "Raises"] == "account.deactivated"
    [(sha,)] = sql("SELECT sha256 FROM register_imports WHERE register_id = 'accounts' AND origin = 'file'")
    assert sha in set(imports["SHA-256"])
    first = subjects.iloc[0]
    assert first["account_id"].endswith("subject?kind=accounts&id=" + sql(
        "SELECT min(account_id) FROM accounts")[0][0])
    # A viewer may read, not import: the import controls are an operator's.
    assert not [e for e in at.get("expander") if "Import a file" in str(e.proto.label)]
    operator = open_app("sigrid", page=REGISTERS, params={"id": "accounts"})
    assert [e for e in operator.get("expander") if "Import a file" in str(e.proto.label)]


def test_an_import_run_shows_what_it_loaded(app_workspace: str, tmp_path: Path) -> None:
    engine = app_engine()
    folder = tmp_path / "registers"
    shutil.copytree(engine.registers_dir, folder)
    text = (folder / "suppliers.yaml").read_text()
    (folder / "suppliers.yaml").write_text(text + '\nsource: {file: suppliers-feed.csv, schedule: "0 4 * * *"}\n')
    (folder / "suppliers-feed.csv").write_text("supplier_id,name\nSUP-9001,Fresh Supplier\n")
    engine.registers_dir = folder
    assert not engine.load_registers(actor="member:admin").errors
    at_four = dt.datetime(2026, 10, 2, 4, tzinfo=dt.UTC)
    failed = run_scheduled_import(engine, "suppliers", at_four)
    at = open_app("viewer", page=RUN, params={"id": failed})
    assert not at.exception, at.exception
    assert [t.value for t in at.text] == ["import failed: suppliers-feed.csv has no column status, "
                                          "attestation_expires, which every row of suppliers must hold; add it. "
                                          "Nothing was loaded"]

    (folder / "suppliers-feed.csv").write_text("supplier_id,name,status,attestation_expires\n"
                                               "SUP-9001,Fresh Supplier,active,2027-03-31\n")
    loaded = run_scheduled_import(engine, "suppliers", at_four + dt.timedelta(days=1))
    at = open_app("viewer", page=RUN, params={"id": loaded})
    assert not at.exception, at.exception
    said = " ".join(m.value for m in at.markdown)
    assert "from file suppliers\\-feed\\.csv (upsert): 1 added" in said, said
    assert any("scheduled import" in i.value for i in at.info)
